//! Responses the agent sends, and the values they carry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::facts::Facts;
use crate::remote_error::RemoteError;
use crate::service::ServiceStatus;
use crate::termination::Termination;

/// The control message that ends the agent's answer to a [`crate::Request`] (or, for `Put`,
/// the one that tells the client whether to send data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Exec: the program ended.
    Exited(ExitStatus),
    /// Put: the file already has this digest and mode; send no data.
    Unchanged,
    /// Put: send the data now.
    Ready,
    /// Put: the data was verified, synced and renamed into place.
    Stored {
        /// Digest of the stored file.
        sha256: Sha256Digest,
    },
    /// Get: all data was sent; this describes it.
    File(FileInfo),
    /// Stat: what is at the path, if anything.
    Stat {
        /// `None` if nothing exists at the path.
        stat: Option<FileStat>,
    },
    /// Facts.
    Facts(Facts),
    /// ServiceStart and ServiceStop: whether anything changed, and where the service is now.
    Service {
        /// `false` if the service was already in the requested state.
        changed: bool,
        /// The service after the request.
        status: ServiceStatus,
    },
    /// ServiceStatus.
    ServiceStatus(ServiceStatus),
    /// ServiceList, sorted by name.
    Services {
        /// Every known service.
        services: Vec<ServiceStatus>,
    },
    /// ServiceLogs, oldest line first, without line terminators.
    Logs {
        /// The lines.
        lines: Vec<String>,
    },
    /// Poweroff: acknowledged; the machine is going down.
    PoweringOff,
    /// The request failed. The connection stays usable unless the error was about the
    /// connection itself.
    Error(RemoteError),
}

/// The end of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// How the program ended.
    pub termination: Termination,
    /// Wall-clock time from start to end.
    pub duration: Duration,
    /// Whether the agent killed it because the request's timeout passed.
    pub timed_out: bool,
}

impl ExitStatus {
    /// Whether it exited with code 0 within its time limit.
    pub fn success(&self) -> bool {
        self.termination.success() && !self.timed_out
    }

    /// The exit code, if it exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        match self.termination {
            Termination::Exited { code } => Some(code),
            Termination::Signaled { .. } => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    /// E.g. `exited with code 3 after 1.25s`, `killed by signal 9 after 300ms (timed out)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duration =
            Duration::from_millis(u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX));
        write!(f, "{} after {duration:?}", self.termination)?;
        if self.timed_out {
            f.write_str(" (timed out)")?;
        }
        Ok(())
    }
}

/// A regular file that was read out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Digest of the contents.
    pub sha256: Sha256Digest,
}

/// What is at a path (symbolic links are followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, e.g. `0o755`.
    pub mode: u32,
    /// Whether it is a regular file.
    pub is_file: bool,
    /// Digest of the contents, for regular files.
    pub sha256: Option<Sha256Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_error::ErrorKind;

    #[test]
    fn responses_round_trip() {
        let responses = [
            Response::Exited(ExitStatus {
                termination: Termination::Signaled { signal: 9 },
                duration: Duration::from_millis(1500),
                timed_out: true,
            }),
            Response::Unchanged,
            Response::Stat { stat: None },
            Response::Error(RemoteError::new(ErrorKind::NotFound, "no such file: /x")),
        ];
        for response in responses {
            let json = serde_json::to_string(&response).unwrap();
            assert_eq!(
                serde_json::from_str::<Response>(&json).unwrap(),
                response,
                "{json}"
            );
        }
    }

    #[test]
    fn exit_status_helpers() {
        let status = ExitStatus {
            termination: Termination::Exited { code: 3 },
            duration: Duration::ZERO,
            timed_out: false,
        };
        assert_eq!(status.code(), Some(3));
        assert!(!status.success());
        assert_eq!(status.termination.to_string(), "exited with code 3");
        let timed_out = ExitStatus {
            termination: Termination::Signaled { signal: 9 },
            duration: Duration::from_micros(300_400),
            timed_out: true,
        };
        assert_eq!(
            timed_out.to_string(),
            "killed by signal 9 after 300ms (timed out)"
        );
    }
}
