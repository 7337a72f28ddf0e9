//! Supervised services: started on request, restarted by policy, stopped gracefully.

mod log;
mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use sinew_proto::{ErrorKind, RemoteError, ServiceSpec, ServiceStatus};
use thiserror::Error;

use self::log::ServiceLog;
use self::supervisor::Supervised;
use crate::exec::{ExecError, Launcher};

/// Why a service request failed.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// No service has this name.
    #[error("unknown service: {0}")]
    Unknown(String),
    /// The name cannot be used.
    #[error("invalid service name {0:?}: use 1-64 letters, digits, '-', '_', '.' or '@', not starting with '.'")]
    BadName(String),
    /// The program could not be started.
    #[error("cannot start service {name}: {source}")]
    Start {
        /// The service.
        name: String,
        /// Why.
        source: ExecError,
    },
    /// The machine is going down; no new services.
    #[error("cannot start service {0}: the agent is shutting down")]
    ShuttingDown(String),
}

impl From<ServiceError> for RemoteError {
    fn from(error: ServiceError) -> Self {
        let kind = match &error {
            ServiceError::Unknown(_) => ErrorKind::UnknownService,
            ServiceError::BadName(_) | ServiceError::ShuttingDown(_) => ErrorKind::BadRequest,
            ServiceError::Start { source, .. } => match source {
                ExecError::BadRequest(_) => ErrorKind::BadRequest,
                ExecError::NoWorkingDirectory(_) => ErrorKind::NotFound,
                _ => ErrorKind::ExecFailed,
            },
        };
        RemoteError::new(kind, error.to_string())
    }
}

/// Every service of this agent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    launcher: Launcher,
    log_dir: PathBuf,
    table: Mutex<BTreeMap<String, Arc<Supervised>>>,
    /// Held through each start and stop (they may wait for a program to exit), so they
    /// happen one at a time; `true` once the agent is shutting down.
    shutting_down: tokio::sync::Mutex<bool>,
}

impl Services {
    /// No services yet; their logs will go to `<log_dir>/<name>.log`.
    pub fn new(launcher: Launcher, log_dir: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                launcher,
                log_dir,
                table: Mutex::new(BTreeMap::new()),
                shutting_down: tokio::sync::Mutex::new(false),
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Supervised>>> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, name: &str) -> Result<Arc<Supervised>, ServiceError> {
        self.table()
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::Unknown(name.to_owned()))
    }

    /// Starts a service. Returns `false` (changed nothing) if it already runs with this very
    /// spec; a service running with another spec is stopped first.
    pub async fn start(&self, spec: ServiceSpec) -> Result<(bool, ServiceStatus), ServiceError> {
        if !valid_name(&spec.name) {
            return Err(ServiceError::BadName(spec.name));
        }
        let shutting_down = self.inner.shutting_down.lock().await;
        if *shutting_down {
            return Err(ServiceError::ShuttingDown(spec.name));
        }
        let existing = self.table().get(&spec.name).cloned();
        let log = match &existing {
            Some(service) if service.spec() == &spec && service.status().state.is_active() => {
                return Ok((false, service.status()));
            }
            Some(service) => {
                service.stop().await;
                Arc::clone(service.log())
            }
            None => Arc::new(ServiceLog::open(&self.inner.log_dir, &spec.name)),
        };
        let name = spec.name.clone();
        match Supervised::start(spec.clone(), Arc::clone(&log), &self.inner.launcher) {
            Ok(service) => {
                let status = service.status();
                self.table().insert(name, Arc::new(service));
                Ok((true, status))
            }
            Err(source) => {
                self.table().insert(
                    name.clone(),
                    Arc::new(Supervised::failed(spec, log, &source)),
                );
                Err(ServiceError::Start { name, source })
            }
        }
    }

    /// Stops a service and waits until it is gone. Returns `false` if it was not running.
    pub async fn stop(&self, name: &str) -> Result<(bool, ServiceStatus), ServiceError> {
        let _one_at_a_time = self.inner.shutting_down.lock().await;
        let service = self.find(name)?;
        if !service.status().state.is_active() {
            return Ok((false, service.status()));
        }
        service.stop().await;
        Ok((true, service.status()))
    }

    /// Reports one service.
    pub fn status(&self, name: &str) -> Result<ServiceStatus, ServiceError> {
        Ok(self.find(name)?.status())
    }

    /// Reports every service, sorted by name.
    pub fn list(&self) -> Vec<ServiceStatus> {
        self.table()
            .values()
            .map(|service| service.status())
            .collect()
    }

    /// The last `tail` lines of a service's output.
    pub fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>, ServiceError> {
        Ok(self.find(name)?.log().tail(tail))
    }

    /// Stops every service at once and refuses new ones from now on.
    pub async fn shut_down(&self) {
        let mut shutting_down = self.inner.shutting_down.lock().await;
        *shutting_down = true;
        let services: Vec<_> = self.table().values().cloned().collect();
        futures::future::join_all(services.iter().map(|service| service.stop())).await;
    }
}

/// Names become file names, so only a safe alphabet is allowed.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for good in ["web", "kvd@1", "overlay.d", "a-b_c"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "sp ace", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
