//! The supervising process: owns the container's cgroup, network and log, relays output,
//! forwards SIGTERM/SIGINT to the container's init, escalates to SIGKILL after the grace
//! period, and records the exit. A single poll loop on a signalfd and the output pipes, no
//! async runtime: start-to-exit time is the product.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How the relayed output is shown besides the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Also copy to the supervisor's stdout/stderr.
    Terminal,
    /// Log only (detached containers).
    LogOnly,
}

/// A supervision error.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// A syscall of the supervision loop failed.
    #[error("{what}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
}

fn os(what: &'static str) -> impl FnOnce(nix::Error) -> SuperviseError {
    move |source| SuperviseError::Os { what, source }
}

/// Signals the supervisor handles through its signalfd.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

/// Blocks the handled signals and opens a signalfd for them. Done before the clone so no
/// SIGCHLD can be missed; the child unblocks them before exec.
pub fn signal_fd() -> Result<SignalFd, SuperviseError> {
    let set = handled_signals();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(os("blocking signals"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(os("creating a signalfd"))
}

/// How the container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128+N for signal N.
    pub code: i32,
    /// Signal that killed it, if any.
    pub signal: Option<Signal>,
}

/// Pipes carrying the container's output.
#[derive(Debug)]
pub struct Output {
    /// Read end of the stdout pipe.
    pub stdout: OwnedFd,
    /// Read end of the stderr pipe.
    pub stderr: OwnedFd,
}

/// Relays output and signals until `pid` exits and its output is drained.
pub fn supervise(
    pid: Pid,
    signals: &SignalFd,
    output: Output,
    log: &mut File,
    echo: Echo,
    stop_timeout: Duration,
) -> Result<Exit, SuperviseError> {
    let mut streams = [Some(output.stdout), Some(output.stderr)];
    let mut exit = None;
    let mut kill_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    while exit.is_none() || streams.iter().any(Option::is_some) {
        let timeout = match kill_at {
            Some(at) => PollTimeout::try_from(at.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let open: Vec<usize> = (0..2).filter(|i| streams[*i].is_some()).collect();
        for i in &open {
            if let Some(fd) = &streams[*i] {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        match nix::poll::poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(os("polling")(e)),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        for (slot, i) in open.iter().enumerate() {
            if ready[slot + 1] {
                relay(&mut streams[*i], *i, &mut buf, log, echo);
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                let signo = info.ssi_signo.cast_signed();
                if signo == Signal::SIGCHLD as i32 {
                    exit = exit.or(reap(pid)?);
                } else if exit.is_none() {
                    let sig = Signal::try_from(signo).unwrap_or(Signal::SIGTERM);
                    tracing::info!(signal = %sig, %pid, "forwarding to the container");
                    let _ = nix::sys::signal::kill(pid, sig);
                    kill_at.get_or_insert_with(|| Instant::now() + stop_timeout);
                }
            }
        }
        if exit.is_none() && kill_at.is_some_and(|at| Instant::now() >= at) {
            tracing::warn!(%pid, "grace period over; sending SIGKILL");
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            kill_at = None;
        }
    }
    exit.ok_or(SuperviseError::Os {
        what: "waiting for the container",
        source: nix::Error::ECHILD,
    })
}

/// Copies what is available on stream `index` (0 stdout, 1 stderr); closes it at EOF.
fn relay(stream: &mut Option<OwnedFd>, index: usize, buf: &mut [u8], log: &mut File, echo: Echo) {
    let Some(fd) = stream else { return };
    match nix::unistd::read(fd.as_fd(), buf) {
        Ok(0) | Err(_) => *stream = None,
        Ok(n) => {
            let data = &buf[..n];
            // The log and terminal are best effort: a full disk must not kill the container.
            let _ = log.write_all(data);
            if echo == Echo::Terminal {
                let _ = if index == 0 {
                    std::io::stdout().lock().write_all(data)
                } else {
                    std::io::stderr().lock().write_all(data)
                };
            }
        }
    }
}

/// Reaps `pid` if it has exited.
fn reap(pid: Pid) -> Result<Option<Exit>, SuperviseError> {
    match nix::sys::wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(Exit { code, signal: None })),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(Exit {
            code: 128 + sig as i32,
            signal: Some(sig),
        })),
        Ok(_) => Ok(None),
        Err(e) => Err(os("waiting for the container")(e)),
    }
}
