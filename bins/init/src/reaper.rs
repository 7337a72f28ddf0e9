//! The one place that waits for child processes.
//!
//! As PID 1 every orphan in the system becomes our child, so a single SIGCHLD-driven
//! `waitpid(-1, WNOHANG)` loop reaps everything. Exit statuses of processes we spawned are
//! handed to whoever waits on that pid; the rest are dropped. Nothing else may wait: tokio's
//! process module is not used, and children are spawned only through [`ProcessTable::spawn`].
//!
//! `std::process::Command::spawn` itself calls `waitpid(pid)` when `exec` fails in the child,
//! and panics if someone else reaped it first. Spawns therefore hold a shared lock that the
//! reaper takes exclusively around its `waitpid` loop, and register the new pid before
//! releasing it, so the reaper never sees a pid it cannot hand over.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sinew_proto::Termination;
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};

/// Why the reaper could not start or a status could not be had.
#[derive(Debug, Error)]
pub enum ReaperError {
    /// The reaper thread, its runtime or its SIGCHLD handler could not be set up.
    #[error("cannot start the child reaper: {0}")]
    Start(#[source] io::Error),
    /// The reaper stopped before the process exited.
    #[error("process {0} was not reaped: the reaper has stopped")]
    ReaperGone(u32),
}

#[derive(Debug)]
struct Shared {
    /// Held shared while spawning, exclusively while reaping.
    spawn_gate: RwLock<()>,
    waiters: Mutex<HashMap<i32, oneshot::Sender<Termination>>>,
    no_children: watch::Sender<bool>,
}

/// Spawns children and delivers their exit statuses. There is one per process (a second
/// `waitpid(-1)` loop would steal statuses); [`ProcessTable::get`] hands out clones.
#[derive(Debug, Clone)]
pub struct ProcessTable {
    shared: Arc<Shared>,
}

/// A spawned child: its pid, its pipes, and a future exit status.
#[derive(Debug)]
pub struct Child {
    /// Process id; also its process group id (children lead their own group).
    pub pid: u32,
    /// Its standard input, if piped.
    pub stdin: Option<ChildStdin>,
    /// Its standard output, if piped.
    pub stdout: Option<ChildStdout>,
    /// Its standard error, if piped.
    pub stderr: Option<ChildStderr>,
    exit: oneshot::Receiver<Termination>,
}

impl Child {
    /// Waits until the child has exited and been reaped.
    pub async fn wait(&mut self) -> Result<Termination, ReaperError> {
        (&mut self.exit)
            .await
            .map_err(|_| ReaperError::ReaperGone(self.pid))
    }

    /// Sends `signal` to the child's process group. A group that is already gone is fine.
    pub fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // ESRCH (already gone) is the only expected failure and needs no action.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }
}

static TABLE: Mutex<Option<ProcessTable>> = Mutex::new(None);

impl ProcessTable {
    /// The process's table, starting the reaper on first use. It runs on a thread of its own
    /// so that it outlives any one tokio runtime.
    pub fn get() -> Result<Self, ReaperError> {
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(table) = &*table {
            return Ok(table.clone());
        }
        let shared = Arc::new(Shared {
            spawn_gate: RwLock::new(()),
            waiters: Mutex::new(HashMap::new()),
            no_children: watch::Sender::new(false),
        });
        start_reaper(Arc::clone(&shared))?;
        let started = Self { shared };
        *table = Some(started.clone());
        Ok(started)
    }

    /// Spawns `command` as the leader of a new process group and registers it for its exit
    /// status. Use this, never `Command::spawn` directly.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        command.process_group(0);
        let _gate = self
            .shared
            .spawn_gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut child = command.spawn()?;
        let pid = child.id();
        let (tx, exit) = oneshot::channel();
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid.cast_signed(), tx);
        self.shared.no_children.send_replace(false);
        Ok(Child {
            pid,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            exit,
        })
    }

    /// Waits until the reaper finds no children left, or `limit` passes. Returns whether
    /// none are left.
    pub async fn wait_for_no_children(&self, limit: Duration) -> bool {
        let mut no_children = self.shared.no_children.subscribe();
        tokio::time::timeout(limit, no_children.wait_for(|none| *none))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }
}

/// Starts the reaper thread and returns once its SIGCHLD handler is installed.
fn start_reaper(shared: Arc<Shared>) -> Result<(), ReaperError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let setup = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    let sigchld = runtime.block_on(async { signal(SignalKind::child()) })?;
                    Ok((runtime, sigchld))
                });
            let (runtime, mut sigchld) = match setup {
                Ok(setup) => {
                    let _ = ready_tx.send(Ok(()));
                    setup
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async {
                loop {
                    let none_left = reap_all(&shared);
                    shared.no_children.send_replace(none_left);
                    if sigchld.recv().await.is_none() {
                        break;
                    }
                }
            });
        })
        .map_err(ReaperError::Start)?;
    match ready_rx.recv() {
        Ok(result) => result.map_err(ReaperError::Start),
        Err(_) => Err(ReaperError::Start(io::Error::other(
            "reaper thread died during setup",
        ))),
    }
}

/// Reaps every child that has exited. Returns whether no children are left at all.
fn reap_all(shared: &Shared) -> bool {
    let _gate = shared
        .spawn_gate
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid only writes through the pointer, which is valid for the call.
        // libc is called directly because nix's `waitpid` fails on real-time signals *after*
        // reaping, which would lose the status.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        let termination = match pid {
            0 => return false,
            -1 => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return true,
                error => {
                    tracing::error!(%error, "waitpid failed");
                    return false;
                }
            },
            _ if libc::WIFEXITED(status) => Termination::Exited {
                code: libc::WEXITSTATUS(status),
            },
            _ if libc::WIFSIGNALED(status) => Termination::Signaled {
                signal: libc::WTERMSIG(status),
            },
            // Stops and continues of traced children: they have not ended.
            _ => continue,
        };
        let waiter = shared
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&pid);
        match waiter {
            // The waiter may have given up (e.g. a dropped exec); the status is then unwanted.
            Some(waiter) => drop(waiter.send(termination)),
            None => tracing::debug!(pid, %termination, "reaped orphan"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[tokio::test]
    async fn statuses_reach_their_waiters() {
        let table = ProcessTable::get().unwrap();
        let mut ok = table
            .spawn(Command::new("true").stdin(Stdio::null()))
            .unwrap();
        let mut failed = table
            .spawn(Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        let mut killed = table.spawn(Command::new("sleep").arg("10")).unwrap();
        killed.signal_group(Signal::SIGKILL);
        assert_eq!(ok.wait().await.unwrap(), Termination::Exited { code: 0 });
        assert_eq!(
            failed.wait().await.unwrap(),
            Termination::Exited { code: 7 }
        );
        assert_eq!(
            killed.wait().await.unwrap(),
            Termination::Signaled { signal: 9 }
        );
    }

    #[tokio::test]
    async fn failed_exec_does_not_race_the_reaper() {
        let table = ProcessTable::get().unwrap();
        for _ in 0..50 {
            let error = table
                .spawn(&mut Command::new("/nonexistent/program"))
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::NotFound);
            let mut child = table.spawn(&mut Command::new("true")).unwrap();
            child.wait().await.unwrap();
        }
    }
}
