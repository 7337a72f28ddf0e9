//! Resource limits through cgroups: v2 where the hierarchy is unified and holds the
//! controllers, the v1 controllers on legacy and hybrid hosts (a cgroup2 mount with no
//! controllers, as systemd's hybrid layout leaves it, is not enough).

mod detect;
mod limits;

use std::path::{Path, PathBuf};

use crate::sandbox::{Sys, SysError};

pub use detect::{detect, Mode, CGROUP_ROOT};
pub use limits::{Limits, LimitsError};

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Limits were asked for, but no usable cgroup hierarchy is mounted.
    #[error("resource limits need cgroups, but neither a cgroup2 hierarchy with the memory and pids controllers nor cgroup v1 controllers are mounted")]
    Unavailable,
    /// A v1 controller needed for a limit is not mounted.
    #[error("the cgroup v1 {0} controller is not mounted")]
    MissingController(&'static str),
    /// A control file could not be written or read.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// Directory under each hierarchy root holding the containers' cgroups.
const PARENT: &str = "sinew-run";
/// Controllers a container's cgroup is made in.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Control files written only where the kernel provides them.
const OPTIONAL_FILES: [&str; 2] = ["memory.memsw.limit_in_bytes", "memory.swap.max"];

/// One container's cgroup, in one directory (v2) or one per controller (v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    mode: Mode,
    /// (controller, directory); v2 has a single entry named "unified".
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    /// Creates the container's cgroup `name` and applies `limits`.
    pub fn create(
        sys: &dyn Sys,
        mode: &Mode,
        name: &str,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        let dirs = match mode {
            Mode::Unified { root } => {
                enable_controllers(sys, root)?;
                let dir = root.join(PARENT).join(name);
                sys.mkdir_all(&dir)?;
                vec![("unified", dir)]
            }
            Mode::Legacy { controllers } => {
                let mut dirs = Vec::new();
                for controller in CONTROLLERS {
                    let Some(root) = controllers.get(controller) else {
                        if limits.needs(controller) {
                            return Err(CgroupError::MissingController(controller));
                        }
                        continue;
                    };
                    let dir = root.join(PARENT).join(name);
                    sys.mkdir_all(&dir)?;
                    dirs.push((controller, dir));
                }
                dirs
            }
            Mode::None => {
                if limits.is_empty() {
                    return Ok(Cgroup {
                        mode: Mode::None,
                        dirs: Vec::new(),
                    });
                }
                return Err(CgroupError::Unavailable);
            }
        };
        let cgroup = Cgroup {
            mode: mode.clone(),
            dirs,
        };
        for (controller, dir) in &cgroup.dirs {
            for (file, value) in limits.files(&cgroup.mode, controller) {
                let path = dir.join(file);
                // Swap accounting is a kernel option; without it there is no swap to limit.
                if OPTIONAL_FILES.contains(&file) && !sys.exists(&path) {
                    continue;
                }
                if let Err(e) = sys.write_file(&path, &value) {
                    let _ = cgroup.remove(sys);
                    return Err(e.into());
                }
            }
        }
        Ok(cgroup)
    }

    /// The hierarchy used, for `status`.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Files the container's init writes "0" into to join the cgroup itself, before it
    /// executes the program: v1 `tasks` files. A thread moving itself through `tasks` skips
    /// the kernel's global threadgroup lock, whose every acquisition waits for an RCU grace
    /// period (milliseconds, the largest single cost of starting a container otherwise).
    pub fn self_join_files(&self) -> Vec<PathBuf> {
        match self.mode {
            Mode::Legacy { .. } => self.dirs.iter().map(|(_, dir)| dir.join("tasks")).collect(),
            Mode::Unified { .. } | Mode::None => Vec::new(),
        }
    }

    /// Moves process `pid` into the cgroup where it cannot join itself (v2 `cgroup.procs`).
    pub fn add(&self, sys: &dyn Sys, pid: i32) -> Result<(), CgroupError> {
        if let Mode::Unified { .. } = self.mode {
            for (_, dir) in &self.dirs {
                sys.write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
            }
        }
        Ok(())
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self, sys: &dyn Sys) -> bool {
        let file = match self.mode {
            Mode::Unified { .. } => "memory.events",
            Mode::Legacy { .. } => "memory.oom_control",
            Mode::None => return false,
        };
        self.dirs
            .iter()
            .filter(|(c, _)| *c == "memory" || *c == "unified")
            .filter_map(|(_, dir)| sys.read_file(&dir.join(file)).ok())
            .any(|text| counter(&text, "oom_kill").is_some_and(|n| n > 0))
    }

    /// Removes the cgroup directories. The kernel refuses while exiting tasks are still
    /// being torn down, so each removal is retried briefly.
    pub fn remove(&self, sys: &dyn Sys) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            remove_dir(sys, dir)?;
        }
        Ok(())
    }
}

fn remove_dir(sys: &dyn Sys, dir: &Path) -> Result<(), SysError> {
    let mut attempts = 0;
    loop {
        match sys.rmdir(dir) {
            Err(e) if e.errno() == Some(libc::EBUSY) && attempts < 200 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(()),
            other => return other,
        }
    }
}

/// v2 controllers must be enabled in every ancestor's subtree_control.
fn enable_controllers(sys: &dyn Sys, root: &Path) -> Result<(), SysError> {
    let available = sys.read_file(&root.join("cgroup.controllers"))?;
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    let parent = root.join(PARENT);
    sys.mkdir_all(&parent)?;
    for dir in [root, parent.as_path()] {
        let enabled = sys
            .read_file(&dir.join("cgroup.subtree_control"))
            .unwrap_or_default();
        let missing: Vec<&str> = wanted
            .iter()
            .map(String::as_str)
            .filter(|w| !enabled.split_whitespace().any(|e| e == &w[1..]))
            .collect();
        if !missing.is_empty() {
            sys.write_file(&dir.join("cgroup.subtree_control"), &missing.join(" "))?;
        }
    }
    Ok(())
}

/// The value of `key N` in a flat-keyed cgroup file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fake::FakeSys;
    use std::collections::BTreeMap;

    fn legacy() -> Mode {
        let controllers: BTreeMap<String, PathBuf> = ["memory", "pids", "cpu"]
            .iter()
            .map(|c| (c.to_string(), PathBuf::from(format!("/cg/{c}"))))
            .collect();
        Mode::Legacy { controllers }
    }

    fn limits() -> Limits {
        Limits::parse(Some("64M"), Some("0.5"), Some(64)).unwrap()
    }

    #[test]
    fn legacy_writes_v1_files_per_controller() {
        let sys = FakeSys::default();
        let cg = Cgroup::create(&sys, &legacy(), "c1", &limits()).unwrap();
        cg.add(&sys, 42).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                "mkdir /cg/memory/sinew-run/c1",
                "mkdir /cg/pids/sinew-run/c1",
                "mkdir /cg/cpu/sinew-run/c1",
                "write /cg/memory/sinew-run/c1/memory.limit_in_bytes 67108864",
                "write /cg/pids/sinew-run/c1/pids.max 64",
                "write /cg/cpu/sinew-run/c1/cpu.cfs_period_us 100000",
                "write /cg/cpu/sinew-run/c1/cpu.cfs_quota_us 50000",
            ]
        );
        assert_eq!(
            cg.self_join_files(),
            vec![
                PathBuf::from("/cg/memory/sinew-run/c1/tasks"),
                PathBuf::from("/cg/pids/sinew-run/c1/tasks"),
                PathBuf::from("/cg/cpu/sinew-run/c1/tasks"),
            ]
        );
    }

    #[test]
    fn legacy_limits_swap_too_when_the_kernel_accounts_it() {
        let sys =
            FakeSys::with_files(&[("/cg/memory/sinew-run/c1/memory.memsw.limit_in_bytes", "")]);
        Cgroup::create(&sys, &legacy(), "c1", &limits()).unwrap();
        let calls = sys.calls();
        let mem = calls
            .iter()
            .position(|c| c.ends_with("memory.limit_in_bytes 67108864"))
            .unwrap();
        let memsw = calls
            .iter()
            .position(|c| c.ends_with("memory.memsw.limit_in_bytes 67108864"))
            .unwrap();
        assert!(memsw > mem, "memsw must follow the memory limit: {calls:?}");
    }

    #[test]
    fn unified_enables_controllers_then_writes_v2_files() {
        let sys = FakeSys::with_files(&[
            ("/cg/cgroup.controllers", "cpuset cpu io memory pids\n"),
            ("/cg/sinew-run/c1/memory.swap.max", "max\n"),
        ]);
        let mode = Mode::Unified {
            root: PathBuf::from("/cg"),
        };
        let cg = Cgroup::create(&sys, &mode, "c1", &limits()).unwrap();
        cg.add(&sys, 7).unwrap();
        assert!(cg.self_join_files().is_empty(), "v2 joins by pid");
        assert_eq!(
            sys.calls(),
            vec![
                "mkdir /cg/sinew-run",
                "write /cg/cgroup.subtree_control +memory +pids +cpu",
                "write /cg/sinew-run/cgroup.subtree_control +memory +pids +cpu",
                "mkdir /cg/sinew-run/c1",
                "write /cg/sinew-run/c1/memory.max 67108864",
                "write /cg/sinew-run/c1/memory.swap.max 0",
                "write /cg/sinew-run/c1/pids.max 64",
                "write /cg/sinew-run/c1/cpu.max 50000 100000",
                "write /cg/sinew-run/c1/cgroup.procs 7",
            ]
        );
    }

    #[test]
    fn no_hierarchy_is_fine_without_limits_and_an_error_with_them() {
        let sys = FakeSys::default();
        let cg = Cgroup::create(&sys, &Mode::None, "c1", &Limits::default()).unwrap();
        cg.add(&sys, 1).unwrap();
        assert!(sys.calls().is_empty());
        assert!(matches!(
            Cgroup::create(&sys, &Mode::None, "c1", &limits()),
            Err(CgroupError::Unavailable)
        ));
    }

    #[test]
    fn a_missing_v1_controller_fails_only_when_its_limit_is_asked_for() {
        let Mode::Legacy { mut controllers } = legacy() else {
            unreachable!()
        };
        controllers.remove("pids");
        let mode = Mode::Legacy { controllers };
        let sys = FakeSys::default();
        assert!(Cgroup::create(
            &sys,
            &mode,
            "c1",
            &Limits::parse(Some("1M"), None, None).unwrap()
        )
        .is_ok());
        assert!(matches!(
            Cgroup::create(
                &sys,
                &mode,
                "c1",
                &Limits::parse(None, None, Some(3)).unwrap()
            ),
            Err(CgroupError::MissingController("pids"))
        ));
    }

    #[test]
    fn oom_kills_are_read_from_the_right_file() {
        let sys = FakeSys::with_files(&[(
            "/cg/memory/sinew-run/c1/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )]);
        let cg = Cgroup::create(&sys, &legacy(), "c1", &Limits::default()).unwrap();
        assert!(cg.oom_killed(&sys));
        let sys = FakeSys::with_files(&[(
            "/cg/sinew-run/c1/memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        )]);
        let unified = Cgroup {
            mode: Mode::Unified { root: "/cg".into() },
            dirs: vec![("unified", "/cg/sinew-run/c1".into())],
        };
        assert!(!unified.oom_killed(&sys));
    }
}
