//! Cleans up after a run that is interrupted: Ctrl-C or SIGTERM kill every guest the run
//! started and remove its private directories, then exit 130 or 143.
//!
//! Ordinary endings (return, `?`, panic) clean up through `Drop`; this is for signals,
//! where no destructor runs. Guests also die with the process through `PR_SET_PDEATHSIG`,
//! so even SIGKILL of the playbook leaves no QEMU behind (only its private directory).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// What must go if the run is interrupted.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    groups: BTreeMap<u64, i32>,
    dirs: BTreeMap<u64, PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    groups: BTreeMap::new(),
    dirs: BTreeMap::new(),
});

/// Removes its entry from the registry when dropped (the owner cleaned up itself).
#[derive(Debug)]
pub(crate) struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut reg = lock();
        reg.groups.remove(&self.0);
        reg.dirs.remove(&self.0);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a process group (a guest's QEMU) to kill on interruption.
pub(crate) fn process_group(pgid: i32) -> Registration {
    let mut reg = lock();
    reg.next += 1;
    let id = reg.next;
    reg.groups.insert(id, pgid);
    Registration(id)
}

/// Registers a directory to remove on interruption.
pub(crate) fn directory(path: PathBuf) -> Registration {
    let mut reg = lock();
    reg.next += 1;
    let id = reg.next;
    reg.dirs.insert(id, path);
    Registration(id)
}

/// Kills what is registered and removes the directories; returns how many guests it killed.
pub(crate) fn sweep() -> usize {
    let mut reg = lock();
    let killed = reg.groups.len();
    for pgid in std::mem::take(&mut reg.groups).into_values() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    for dir in std::mem::take(&mut reg.dirs).into_values() {
        let _ = std::fs::remove_dir_all(dir);
    }
    killed
}
