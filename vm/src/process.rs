//! The QEMU child process, shared by a machine and its console: both wait on it, and
//! whichever notices first reaps it.

use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The QEMU child, shared between a [`crate::Vm`] and its [`crate::Console`].
#[derive(Debug, Clone)]
pub(crate) struct Process(Arc<Mutex<ProcessState>>);

#[derive(Debug)]
struct ProcessState {
    child: Child,
    status: Option<ExitStatus>,
}

impl Process {
    pub(crate) fn new(child: Child) -> Process {
        Process(Arc::new(Mutex::new(ProcessState {
            child,
            status: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, ProcessState> {
        // The state stays consistent even if a holder panicked: it is only a
        // child handle and a cached status.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.lock().child.id()
    }

    fn try_wait(&self) -> std::io::Result<Option<ExitStatus>> {
        let mut state = self.lock();
        if state.status.is_none() {
            state.status = state.child.try_wait()?;
        }
        Ok(state.status)
    }

    /// The exit status if QEMU has exited. A failing `waitpid` (only possible if
    /// someone else reaps our children) counts as still running and is logged.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.try_wait().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "waitpid on QEMU failed");
            None
        })
    }

    /// SIGKILLs QEMU's process group unless it already exited, and reaps it.
    /// Returns the status and whether a signal was sent.
    pub(crate) fn kill(&self) -> std::io::Result<(ExitStatus, bool)> {
        let mut state = self.lock();
        if let Some(status) = state.status {
            return Ok((status, false));
        }
        if let Some(status) = state.child.try_wait()? {
            state.status = Some(status);
            return Ok((status, false));
        }
        // Not reaped yet, so neither its pid nor its group id can have been reused.
        // The group catches anything QEMU started; the pid itself is signalled too
        // in case it never became a group leader.
        let pid = Pid::from_raw(i32::try_from(state.child.id()).unwrap_or(i32::MAX));
        for result in [killpg(pid, Signal::SIGKILL), kill(pid, Signal::SIGKILL)] {
            match result {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let status = state.child.wait()?;
        state.status = Some(status);
        Ok((status, true))
    }
}
