//! Which cgroup hierarchy to use, decided from the mount table and the controllers the
//! unified hierarchy actually holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sandbox::Sys;

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

/// Decides from `/proc/self/mountinfo` text. A cgroup2 mount wins when its root lists the
/// required controllers (a unified host, or a sinew guest); otherwise the v1 controller
/// mounts are used (legacy and hybrid hosts, where controllers are bound to v1).
pub fn detect(sys: &dyn Sys, mountinfo: &str) -> Mode {
    let mut v2_roots = Vec::new();
    let mut controllers = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (fstype, super_options) = (right.next(), right.nth(1).unwrap_or(""));
        let mount_point = PathBuf::from(unescape(mount_point));
        match fstype {
            Some("cgroup2") => v2_roots.push(mount_point),
            Some("cgroup") => {
                for option in super_options.split(',') {
                    if matches!(option, "memory" | "pids" | "cpu") {
                        controllers
                            .entry(option.to_string())
                            .or_insert_with(|| mount_point.clone());
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(root) = v2_roots.into_iter().find(|root| holds_required(sys, root)) {
        return Mode::Unified { root };
    }
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

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fake::FakeSys;

    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 29 0:25 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 29 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 29 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 29 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 29 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
29 23 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn hybrid_host_with_an_empty_unified_mount_uses_v1() {
        let sys = FakeSys::with_files(&[("/sys/fs/cgroup/unified/cgroup.controllers", "\n")]);
        let Mode::Legacy { controllers } = detect(&sys, HYBRID) else {
            panic!("expected v1")
        };
        assert_eq!(controllers.len(), 3);
        assert_eq!(
            controllers["memory"],
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(controllers["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
    }

    #[test]
    fn unified_host_with_controllers_uses_v2() {
        let sys = FakeSys::with_files(&[(
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids\n",
        )]);
        assert_eq!(
            detect(&sys, UNIFIED),
            Mode::Unified {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn hybrid_host_whose_unified_mount_holds_the_controllers_uses_v2() {
        let sys =
            FakeSys::with_files(&[("/sys/fs/cgroup/unified/cgroup.controllers", "memory pids\n")]);
        assert_eq!(
            detect(&sys, HYBRID),
            Mode::Unified {
                root: PathBuf::from("/sys/fs/cgroup/unified")
            }
        );
    }

    #[test]
    fn no_cgroup_mounts_means_none() {
        assert_eq!(
            detect(
                &FakeSys::default(),
                "22 27 0:21 / /proc rw - proc proc rw\n"
            ),
            Mode::None
        );
    }
}
