//! How a program ended, as exec results and service reports tell it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Termination {
    /// It exited with this code.
    Exited {
        /// The exit code, 0 to 255.
        code: i32,
    },
    /// It was killed by this signal.
    Signaled {
        /// The signal number, e.g. 9 for SIGKILL.
        signal: i32,
    },
}

impl Termination {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, Termination::Exited { code: 0 })
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::Exited { code } => write!(f, "exited with code {code}"),
            Termination::Signaled { signal } => write!(f, "killed by signal {signal}"),
        }
    }
}
