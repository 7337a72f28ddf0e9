//! Which cgroup hierarchy to use, decided with `statfs` on the conventional mount points
//! (as runc and systemd do: reading the mount table costs milliseconds per run here) and
//! the controllers the unified hierarchy actually holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sandbox::{FsKind, Sys};

/// Where every systemd host and sinew guest mounts the cgroup hierarchies.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup hierarchy limits go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// cgroup v2 mounted at `root`, holding the memory and pids controllers.
    Unified {
        /// Mount point of the cgroup2 filesystem.
        root: PathBuf,
    },
    /// cgroup v1: controller name to mount point.
    Legacy {
        /// Mounted v1 controllers.
        controllers: BTreeMap<String, PathBuf>,
    },
    /// No usable hierarchy: containers run without a cgroup, and limits are refused.
    None,
}

impl Mode {
    /// Short name shown by `status` and `list`.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Unified { .. } => "v2",
            Mode::Legacy { .. } => "v1",
            Mode::None => "none",
        }
    }
}

/// Controllers a v2 hierarchy must offer to be preferred over v1.
const REQUIRED_V2: [&str; 2] = ["memory", "pids"];
/// v1 controllers containers are placed in.
const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Decides under `root` (normally [`CGROUP_ROOT`]). A cgroup2 mount wins when it holds
/// the required controllers: `root` itself on unified hosts and sinew guests, or
/// `root/unified` on a hybrid host that gave it controllers. Otherwise the v1 controller
/// mounts `root/<controller>` are used (legacy and hybrid hosts).
pub fn detect(sys: &dyn Sys, root: &Path) -> Mode {
    for candidate in [root.to_path_buf(), root.join("unified")] {
        if sys.fs_kind(&candidate) == Some(FsKind::Cgroup2) && holds_required(sys, &candidate) {
            return Mode::Unified { root: candidate };
        }
    }
    let controllers: BTreeMap<String, PathBuf> = V1_CONTROLLERS
        .iter()
        .map(|c| (c.to_string(), root.join(c)))
        .filter(|(_, path)| sys.fs_kind(path) == Some(FsKind::Cgroup1))
        .collect();
    if controllers.is_empty() {
        Mode::None
    } else {
        Mode::Legacy { controllers }
    }
}

fn holds_required(sys: &dyn Sys, root: &Path) -> bool {
    let Ok(available) = sys.read_file(&root.join("cgroup.controllers")) else {
        return false;
    };
    REQUIRED_V2
        .iter()
        .all(|c| available.split_whitespace().any(|a| a == *c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fake::FakeSys;

    fn fake(filesystems: &[(&str, FsKind)], files: &[(&str, &str)]) -> FakeSys {
        let mut sys = FakeSys::with_files(files);
        sys.filesystems = filesystems
            .iter()
            .map(|(p, k)| (PathBuf::from(p), *k))
            .collect();
        sys
    }

    const HYBRID: [(&str, FsKind); 5] = [
        ("/cg", FsKind::Other),
        ("/cg/memory", FsKind::Cgroup1),
        ("/cg/pids", FsKind::Cgroup1),
        ("/cg/cpu", FsKind::Cgroup1),
        ("/cg/unified", FsKind::Cgroup2),
    ];

    #[test]
    fn hybrid_host_with_an_empty_unified_mount_uses_v1() {
        let sys = fake(&HYBRID, &[("/cg/unified/cgroup.controllers", "hugetlb\n")]);
        let Mode::Legacy { controllers } = detect(&sys, Path::new("/cg")) else {
            panic!("expected v1")
        };
        assert_eq!(controllers.len(), 3);
        assert_eq!(controllers["memory"], PathBuf::from("/cg/memory"));
        assert_eq!(controllers["cpu"], PathBuf::from("/cg/cpu"));
    }

    #[test]
    fn unified_host_with_controllers_uses_v2() {
        let sys = fake(
            &[("/cg", FsKind::Cgroup2)],
            &[("/cg/cgroup.controllers", "cpuset cpu io memory pids\n")],
        );
        assert_eq!(
            detect(&sys, Path::new("/cg")),
            Mode::Unified {
                root: PathBuf::from("/cg")
            }
        );
    }

    #[test]
    fn hybrid_host_whose_unified_mount_holds_the_controllers_uses_v2() {
        let sys = fake(
            &HYBRID,
            &[("/cg/unified/cgroup.controllers", "memory pids\n")],
        );
        assert_eq!(
            detect(&sys, Path::new("/cg")),
            Mode::Unified {
                root: PathBuf::from("/cg/unified")
            }
        );
    }

    #[test]
    fn a_v2_root_without_controllers_and_no_v1_means_none() {
        let sys = fake(
            &[("/cg", FsKind::Cgroup2)],
            &[("/cg/cgroup.controllers", "\n")],
        );
        assert_eq!(detect(&sys, Path::new("/cg")), Mode::None);
        assert_eq!(detect(&FakeSys::default(), Path::new("/cg")), Mode::None);
    }
}
