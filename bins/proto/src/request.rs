//! Requests a client sends to the agent, one at a time on a connection.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::service::ServiceSpec;

/// A request, sent as a JSON control frame. The agent answers each with the frames described
/// on its variant, ending with one [`crate::Response`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Run a program. The agent streams `Stdout`/`Stderr` frames as output is produced, then
    /// answers [`crate::Response::Exited`] (or an error if it could not start).
    ///
    /// The program leads its own process group. Once it has exited, output from background
    /// processes that inherited its pipes is collected for at most 250 ms more. If the
    /// connection breaks while it runs, its process group is killed.
    Exec(ExecRequest),
    /// Store a file. The agent answers [`crate::Response::Unchanged`] if the file already has
    /// this digest and mode; otherwise [`crate::Response::Ready`], after which the client sends
    /// exactly `size` bytes in `Data` frames and the agent answers
    /// [`crate::Response::Stored`].
    Put(PutRequest),
    /// Read a file. The agent streams `Data` frames, then answers [`crate::Response::File`].
    Get {
        /// Absolute path on the agent's machine.
        path: String,
    },
    /// Describe a path without reading it out. Answered by [`crate::Response::Stat`].
    Stat {
        /// Absolute path on the agent's machine.
        path: String,
    },
    /// Describe the machine. Answered by [`crate::Response::Facts`].
    Facts,
    /// Start a supervised service, or leave it alone if it already runs with this spec.
    /// Answered by [`crate::Response::Service`].
    ServiceStart(ServiceSpec),
    /// Stop a service: SIGTERM to its process group, SIGKILL after a grace period.
    /// Answered by [`crate::Response::Service`].
    ServiceStop {
        /// The service's name.
        name: String,
    },
    /// Report one service. Answered by [`crate::Response::ServiceStatus`].
    ServiceStatus {
        /// The service's name.
        name: String,
    },
    /// Report every service the agent knows. Answered by [`crate::Response::Services`].
    ServiceList,
    /// The last lines a service wrote (stdout and stderr interleaved). Answered by
    /// [`crate::Response::Logs`].
    ServiceLogs {
        /// The service's name.
        name: String,
        /// How many lines, counted from the end.
        tail: usize,
    },
    /// Stop services and power the machine off. Answered by [`crate::Response::PoweringOff`]
    /// before anything is stopped.
    Poweroff,
}

/// A program to run on the agent's machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments. A program without a `/` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Variables added to (or replacing those of) the agent's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; `/` if not given.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Bytes fed to standard input, which is then closed. Standard input is `/dev/null` if
    /// not given.
    #[serde(default, with = "base64_bytes")]
    pub stdin: Option<Vec<u8>>,
    /// Kill the program (and its process group) with SIGKILL after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    /// A request to run `argv` with no extra environment, in `/`, without input or timeout.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
            stdin: None,
            timeout: None,
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets the bytes fed to standard input.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

/// A file to store on the agent's machine; its contents follow in `Data` frames if the agent
/// answers [`crate::Response::Ready`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// Absolute path; missing parent directories are created.
    pub path: String,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Exact number of bytes that will follow.
    pub size: u64,
    /// Digest of those bytes.
    pub sha256: Sha256Digest,
}

/// Standard input travels base64-encoded inside the JSON request: it is usually small, and
/// keeping it in the request keeps exec a single round trip.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_some(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_request_json_shape() {
        let request = Request::Exec(
            ExecRequest::new(["cat"])
                .stdin(b"hi".to_vec())
                .env("A", "1")
                .timeout(Duration::from_secs(2)),
        );
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["op"], "exec");
        assert_eq!(json["stdin"], "aGk=");
        assert_eq!(json["env"]["A"], "1");
        let back: Request = serde_json::from_value(json).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn optional_exec_fields_may_be_omitted() {
        let request: Request = serde_json::from_str(r#"{"op":"exec","argv":["true"]}"#).unwrap();
        assert_eq!(request, Request::Exec(ExecRequest::new(["true"])));
    }

    #[test]
    fn unit_requests_are_just_an_op() {
        assert_eq!(
            serde_json::to_string(&Request::Facts).unwrap(),
            r#"{"op":"facts"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"service_logs","name":"web","tail":5}"#)
                .unwrap(),
            Request::ServiceLogs {
                name: "web".into(),
                tail: 5
            }
        );
    }
}
