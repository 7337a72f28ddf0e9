//! Keeping one service running according to its restart policy.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use sinew_proto::{RestartPolicy, ServiceSpec, ServiceState, ServiceStatus, Termination};
use tokio::sync::watch;
use tokio::time::Instant;

use super::log::ServiceLog;
use crate::exec::{ExecError, Launcher};
use crate::reaper::Child;
use sinew_support::backoff::{Backoff, STABLE_AFTER};

/// How long a service has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where a service is, as the supervisor records it.
#[derive(Debug, Clone)]
enum Phase {
    Running { pid: u32, since: SystemTime },
    Exited(Termination),
    Restarting { last: Termination, at: Instant },
    Failed(String),
    Stopped,
}

#[derive(Debug)]
struct Tracker {
    phase: Phase,
    restarts: u32,
}

/// A service with its supervising task (if it is still going).
#[derive(Debug)]
pub struct Supervised {
    spec: ServiceSpec,
    log: Arc<ServiceLog>,
    tracker: Arc<Mutex<Tracker>>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl Supervised {
    /// Starts the program of `spec` now and supervises it from then on. Fails if the program
    /// cannot be started.
    pub fn start(
        spec: ServiceSpec,
        log: Arc<ServiceLog>,
        launcher: &Launcher,
    ) -> Result<Self, ExecError> {
        let child = launch(&spec, &log, launcher)?;
        tracing::info!(service = %spec.name, pid = child.pid, "service started");
        let tracker = Arc::new(Mutex::new(Tracker {
            phase: Phase::Running {
                pid: child.pid,
                since: SystemTime::now(),
            },
            restarts: 0,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let run = Run {
            spec: spec.clone(),
            log: Arc::clone(&log),
            tracker: Arc::clone(&tracker),
            launcher: launcher.clone(),
        };
        tokio::spawn(async move {
            run.supervise(child, stop_rx).await;
            done_tx.send_replace(true);
        });
        Ok(Self {
            spec,
            log,
            tracker,
            stop,
            done,
        })
    }

    /// A record of a service whose program could not be started.
    pub fn failed(spec: ServiceSpec, log: Arc<ServiceLog>, error: &ExecError) -> Self {
        let (stop, _) = watch::channel(true);
        let (_, done) = watch::channel(true);
        Self {
            spec,
            log,
            tracker: Arc::new(Mutex::new(Tracker {
                phase: Phase::Failed(error.to_string()),
                restarts: 0,
            })),
            stop,
            done,
        }
    }

    /// The spec it was started with.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// Its log, kept across restarts and re-starts.
    pub fn log(&self) -> &Arc<ServiceLog> {
        &self.log
    }

    /// A report as of now.
    pub fn status(&self) -> ServiceStatus {
        let tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        let state = match &tracker.phase {
            Phase::Running { pid, since } => ServiceState::Running {
                pid: *pid,
                since: *since,
            },
            Phase::Exited(termination) => ServiceState::Exited {
                termination: *termination,
            },
            Phase::Restarting { last, at } => ServiceState::Restarting {
                last: *last,
                retry_in: at.saturating_duration_since(Instant::now()),
            },
            Phase::Failed(error) => ServiceState::Failed {
                error: error.clone(),
            },
            Phase::Stopped => ServiceState::Stopped,
        };
        ServiceStatus {
            spec: self.spec.clone(),
            state,
            restarts: tracker.restarts,
        }
    }

    /// Stops the service if it is going, and waits until its supervisor has finished.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let mut done = self.done.clone();
        // An error means the supervisor is gone, which is what we wait for.
        let _ = done.wait_for(|done| *done).await;
    }
}

/// Starts one run of the service, its output going to the log.
fn launch(
    spec: &ServiceSpec,
    log: &Arc<ServiceLog>,
    launcher: &Launcher,
) -> Result<Child, ExecError> {
    let mut child = launcher.launch(&spec.argv, &spec.env, "/", false)?;
    let pipes = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ];
    log.attach(pipes.into_iter().flatten());
    Ok(child)
}

/// What the supervising task works with.
struct Run {
    spec: ServiceSpec,
    log: Arc<ServiceLog>,
    tracker: Arc<Mutex<Tracker>>,
    launcher: Launcher,
}

impl Run {
    fn set(&self, phase: Phase) {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .phase = phase;
    }

    async fn supervise(&self, mut child: Child, mut stop: watch::Receiver<bool>) {
        let name = &self.spec.name;
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let ended = tokio::select! {
                ended = child.wait() => ended,
                () = stop_requested(&mut stop) => {
                    terminate(&mut child).await;
                    tracing::info!(service = %name, "service stopped");
                    self.set(Phase::Stopped);
                    return;
                }
            };
            let termination = match ended {
                Ok(termination) => termination,
                Err(error) => {
                    self.set(Phase::Failed(error.to_string()));
                    return;
                }
            };
            if !should_restart(self.spec.restart, termination) {
                tracing::info!(service = %name, %termination, "service ended");
                self.set(Phase::Exited(termination));
                return;
            }
            if started.elapsed() >= STABLE_AFTER {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(service = %name, %termination, ?delay, "service ended; restarting");
            self.set(Phase::Restarting {
                last: termination,
                at: Instant::now() + delay,
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop_requested(&mut stop) => {
                    self.set(Phase::Stopped);
                    return;
                }
            }
            child = match launch(&self.spec, &self.log, &self.launcher) {
                Ok(child) => child,
                Err(error) => {
                    tracing::error!(service = %name, %error, "cannot restart service");
                    self.set(Phase::Failed(error.to_string()));
                    return;
                }
            };
            tracing::info!(service = %name, pid = child.pid, "service restarted");
            let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
            tracker.restarts += 1;
            tracker.phase = Phase::Running {
                pid: child.pid,
                since: SystemTime::now(),
            };
            drop(tracker);
        }
    }
}

/// Resolves once a stop is requested (or the service's record is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means: stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

fn should_restart(policy: RestartPolicy, termination: Termination) -> bool {
    match policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => !termination.success(),
        RestartPolicy::Always => true,
    }
}

/// SIGTERM to the process group, SIGKILL if it is still there after the grace period.
async fn terminate(child: &mut Child) {
    child.signal_group(Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid = child.pid, "service ignored SIGTERM; killing it");
        child.signal_group(Signal::SIGKILL);
        // The only error is a vanished reaper, and then there is nothing left to wait for.
        let _ = child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        let ok = Termination::Exited { code: 0 };
        let failed = Termination::Exited { code: 1 };
        let killed = Termination::Signaled { signal: 9 };
        assert!(!should_restart(RestartPolicy::Never, failed));
        assert!(!should_restart(RestartPolicy::OnFailure, ok));
        assert!(should_restart(RestartPolicy::OnFailure, failed));
        assert!(should_restart(RestartPolicy::OnFailure, killed));
        assert!(should_restart(RestartPolicy::Always, ok));
    }
}
