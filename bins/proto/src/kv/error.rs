//! Why a KV client call failed.

use thiserror::Error;

use super::types::GatewayError;

/// gRPC's code for "unavailable", which etcd uses for "no leader" and "stopped".
const UNAVAILABLE: i32 = 14;

/// Why a call to the KV cluster failed.
#[derive(Debug, Error)]
pub enum KvClientError {
    /// The client was given no endpoint, or one that is not `http://host:port`.
    #[error("bad endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// No endpoint could be reached; the last reason is given.
    #[error("no endpoint of {endpoints:?} answered: {last}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// The last failure.
        last: String,
    },
    /// A write was sent but the connection broke before the answer: it may or may not have
    /// been applied.
    #[error("the request to {endpoint} may or may not have been applied: {reason}")]
    Ambiguous {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The cluster refused the request (etcd's error body).
    #[error("{endpoint}: {}", .error.error)]
    Server {
        /// The endpoint that answered.
        endpoint: String,
        /// etcd's error.
        error: GatewayError,
    },
    /// An HTTP error without etcd's error body.
    #[error("{endpoint} answered HTTP {status}: {body}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// The status.
        status: u16,
        /// The body.
        body: String,
    },
    /// The answer was not the JSON expected.
    #[error("cannot decode the answer from {endpoint}: {reason}")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A watch's start revision was compacted away.
    #[error("watch from revision {requested}: compacted, the oldest revision kept is {compact_revision}")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision still available.
        compact_revision: i64,
    },
}

impl KvClientError {
    /// Whether another member may well serve the request: the cluster said it is
    /// unavailable here (no leader, stopping).
    pub(super) fn try_elsewhere(&self) -> bool {
        matches!(self, Self::Server { error, .. } if error.code == UNAVAILABLE)
            || matches!(self, Self::Http { status, .. } if *status == 503)
    }

    /// Whether the cluster said a write's fate is unknown: it was proposed, and may yet be
    /// applied (a timeout, a leader change), so sending it again could apply it twice.
    pub(super) fn in_doubt(&self) -> bool {
        matches!(self, Self::Server { error, .. }
            if error.error.starts_with("etcdserver: request timed out")
                || error.error == "etcdserver: leader changed")
    }

    /// etcd's error text, when the cluster refused the request.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Self::Server { error, .. } => Some(&error.error),
            _ => None,
        }
    }
}
