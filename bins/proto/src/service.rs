//! Supervised services: what to run, and what the agent reports about them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::termination::Termination;

/// A long-running program the agent keeps running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Unique name: letters, digits, `-`, `_`, `.` and `@`, not starting with `.`, at most
    /// 64 characters. It names the log file `<name>.log`.
    pub name: String,
    /// Program and arguments. A program without a `/` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Variables added to (or replacing those of) the agent's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What to do when the program exits by itself.
    #[serde(default)]
    pub restart: RestartPolicy,
}

impl ServiceSpec {
    /// A spec for `name` running `argv`, with no extra environment and [`RestartPolicy::OnFailure`].
    pub fn new<I, S>(name: impl Into<String>, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            restart: RestartPolicy::default(),
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Sets the restart policy.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }
}

/// When the agent restarts a service whose program exited by itself. Restarts back off
/// exponentially from 100 ms to 30 s; the delay resets once the program stayed up for 10 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never; the service stays exited.
    Never,
    /// Only if it exited with a non-zero code or was killed by a signal.
    #[default]
    OnFailure,
    /// Whatever the exit status.
    Always,
}

/// Where a service is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    /// The program is running.
    Running {
        /// Its process id (also its process group id).
        pid: u32,
        /// When it was started, by the agent machine's clock.
        since: SystemTime,
    },
    /// The program exited and its policy says not to restart it.
    Exited {
        /// How it ended.
        termination: Termination,
    },
    /// The program exited and will be started again.
    Restarting {
        /// How the last run ended.
        last: Termination,
        /// How long until the next attempt, as of this report.
        retry_in: Duration,
    },
    /// The program could not be started (not found, not executable, ...).
    Failed {
        /// Why.
        error: String,
    },
    /// Stopped on request.
    Stopped,
}

impl ServiceState {
    /// Whether the agent is keeping this service going (running or about to restart).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            ServiceState::Running { .. } | ServiceState::Restarting { .. }
        )
    }
}

/// A report on one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The spec it was started with.
    pub spec: ServiceSpec,
    /// Where it is now.
    pub state: ServiceState,
    /// How many times the agent restarted it since it was last started on request.
    pub restarts: u32,
}
