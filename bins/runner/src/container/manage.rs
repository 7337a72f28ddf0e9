//! Operations on existing containers: detached start, stop, removal.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

use super::state::{ContainerDir, State, StateError, Status};
use super::{run, RunError, RunOptions};

/// How often waits poll the supervisor lock.
const POLL: Duration = Duration::from_millis(10);
/// How long `stop` waits for the supervisor to record the end after SIGKILL.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Managing a container failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// Reading the state.
    #[error(transparent)]
    State(#[from] StateError),
    /// `rm` of a running container without `--force`.
    #[error("container {0} is running; stop it first or use --force")]
    Running(String),
    /// The supervisor did not let go after SIGKILL.
    #[error("container {0} did not stop")]
    Stuck(String),
    /// Removing its directory.
    #[error("removing {path}")]
    Remove {
        /// The directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Forking the supervisor.
    #[error("starting the detached supervisor")]
    Fork(#[source] nix::Error),
    /// The detached supervisor reported a failure.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The detached supervisor failed to start the container.
    #[error("{0}")]
    Detached(String),
}

/// Starts the container under a daemonized supervisor and returns once the program has
/// been executed (or failed to start). The supervisor keeps the container's lock while it
/// runs and records the exit in its state. The caller must be single-threaded.
pub fn run_detached(state_dir: &Path, opts: &RunOptions) -> Result<State, ManageError> {
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ManageError::Fork)?;
    // SAFETY: the process is single-threaded here; the child only continues Rust code that
    // does not depend on other threads and ends with _exit.
    match unsafe { nix::unistd::fork() }.map_err(ManageError::Fork)? {
        ForkResult::Child => {
            drop(report_r);
            let code = supervise_detached(state_dir, opts, report_w);
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { .. } => {
            drop(report_w);
            let mut report = String::new();
            std::fs::File::from(report_r)
                .read_to_string(&mut report)
                .map_err(|e| {
                    ManageError::Detached(format!("reading the supervisor's report: {e}"))
                })?;
            if report != "started" {
                return Err(ManageError::Detached(if report.is_empty() {
                    "the detached supervisor exited before starting the container".to_string()
                } else {
                    report
                }));
            }
            Ok(ContainerDir::new(state_dir, &opts.id).read()?)
        }
    }
}

fn supervise_detached(state_dir: &Path, opts: &RunOptions, report: OwnedFd) -> i32 {
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: replacing the standard descriptors of this process with /dev/null.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut report = Some(std::fs::File::from(report));
    let result = run(state_dir, opts, |_| {
        if let Some(mut r) = report.take() {
            let _ = r.write_all(b"started");
        }
    });
    match result {
        Ok(state) => state.exit_code.unwrap_or(0),
        Err(e) => {
            if let Some(mut r) = report.take() {
                let _ = r.write_all(sinew_support::error_chain(&e).as_bytes());
            }
            125
        }
    }
}

/// Stops a running container: SIGTERM to its supervisor (which forwards it to the
/// container's init), then SIGKILL to the init after `timeout`. Returns the final state.
pub fn stop(state_dir: &Path, id: &str, timeout: Duration) -> Result<State, ManageError> {
    let dir = ContainerDir::find(state_dir, id)?;
    let state = dir.current()?;
    if state.status != Status::Running {
        return Ok(state);
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(state.supervisor_pid), Signal::SIGTERM);
    if !wait_unlocked(&dir, timeout) {
        if let Some(pid) = state.pid {
            tracing::info!(id = %state.id, pid, "grace period over; sending SIGKILL");
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !wait_unlocked(&dir, AFTER_KILL) {
            return Err(ManageError::Stuck(state.id));
        }
    }
    Ok(dir.current()?)
}

fn wait_unlocked(dir: &ContainerDir, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !dir.is_locked() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Removes a container's directory; a running one only with `force` (it is killed).
pub fn remove(state_dir: &Path, id: &str, force: bool) -> Result<String, ManageError> {
    let dir = ContainerDir::find(state_dir, id)?;
    let state = dir.current()?;
    if state.status == Status::Running {
        if !force {
            return Err(ManageError::Running(state.id));
        }
        stop(state_dir, &state.id, Duration::ZERO)?;
    }
    std::fs::remove_dir_all(dir.path()).map_err(|source| ManageError::Remove {
        path: dir.path().display().to_string(),
        source,
    })?;
    Ok(state.id)
}

/// Current states of all containers, oldest first.
pub fn list(state_dir: &Path) -> Result<Vec<State>, ManageError> {
    let mut states = super::state::list_ids(state_dir)?
        .iter()
        .map(|id| ContainerDir::new(state_dir, id).current())
        .collect::<Result<Vec<_>, _>>()?;
    states.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(states)
}
