//! Errors as etcd reports them: a gRPC status code and message (etcd's `rpctypes`), which the
//! gateway turns into an HTTP status and a JSON body as etcd 3.4's grpc-gateway does.

use hyper::StatusCode;
use serde::Serialize;
use thiserror::Error;

use crate::v3::KvError;

/// Why a [`crate::gateway::Backend`] refused or failed a request. Messages are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// The state machine refused the command or read.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// No leader is known.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// This member is not the leader and cannot forward the request.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The leader changed while the request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request was not committed in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The member cannot serve for another reason, given as the message.
    #[error("{0}")]
    Unavailable(String),
    /// Too many proposals are waiting to be applied.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// The member id names no member.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member with that id already exists.
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    /// A member already uses one of the peer URLs.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// The peer URLs are not valid URLs.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// Promotion of a member that is not a learner.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promotion of a learner whose log is behind the leader's.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Adding a learner beyond the allowed number.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// Removing or adding would leave too few started members for a quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// The lead cannot move to that member: it is not a voter.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// The lead did not move in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
}

/// gRPC status codes, the ones etcd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An error with no better code (etcd's gateway reports stream decoding errors so).
    Unknown = 2,
    /// A malformed or contradictory request.
    InvalidArgument = 3,
    /// The named lease or member does not exist.
    NotFound = 5,
    /// A limit was exceeded.
    ResourceExhausted = 8,
    /// The state does not allow the request.
    FailedPrecondition = 9,
    /// A revision or TTL outside the allowed range.
    OutOfRange = 11,
    /// A bug on our side.
    Internal = 13,
    /// The member cannot serve now; retry, maybe elsewhere.
    Unavailable = 14,
    /// Data is lost or corrupt.
    DataLoss = 15,
}

impl Code {
    /// The HTTP status grpc-gateway v1 (etcd 3.4) answers a code with.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Unknown | Self::Internal | Self::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidArgument | Self::OutOfRange => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A failed request as the client sees it: a gRPC code and etcd's message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (code {code:?})")]
pub struct Status {
    /// The gRPC code.
    pub code: Code,
    /// The message, as etcd words it.
    pub message: String,
}

impl Status {
    /// A status with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A request that could not be decoded or makes no sense.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// An answer of the wrong kind from the backend to `call`: a bug, reported rather
    /// than panicking.
    pub fn unexpected(call: &str) -> Self {
        Self::new(
            Code::Internal,
            format!("kvd: the node answered a {call} with another call's answer"),
        )
    }

    /// The JSON body etcd's gateway answers a failed unary call with.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            error: &'a str,
            message: &'a str,
            code: i32,
        }
        let body = ErrorBody {
            error: &self.message,
            message: &self.message,
            code: self.code as i32,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The chunk etcd's gateway writes when a stream fails after its first message.
    pub fn stream_chunk(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct StreamError<'a> {
            grpc_code: i32,
            http_code: u16,
            message: &'a str,
            http_status: &'a str,
        }
        #[derive(Serialize)]
        struct Chunk<'a> {
            error: StreamError<'a>,
        }
        let status = self.code.http_status();
        let chunk = Chunk {
            error: StreamError {
                grpc_code: self.code as i32,
                http_code: status.as_u16(),
                message: &self.message,
                http_status: status.canonical_reason().unwrap_or_default(),
            },
        };
        let mut bytes = serde_json::to_vec(&chunk).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

impl From<KvError> for Status {
    fn from(error: KvError) -> Self {
        let code = match error {
            KvError::Compacted | KvError::FutureRevision | KvError::LeaseTtlTooLarge => {
                Code::OutOfRange
            }
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::DuplicateKey
            | KvError::TooManyOps => Code::InvalidArgument,
            KvError::LeaseNotFound => Code::NotFound,
            KvError::LeaseExists => Code::FailedPrecondition,
            KvError::NoSpace => Code::ResourceExhausted,
            KvError::Corrupt => Code::DataLoss,
        };
        // The state machine words mvcc errors as etcd's mvcc package; its API prefixes them.
        let message = match error {
            KvError::Compacted | KvError::FutureRevision => format!("etcdserver: {error}"),
            _ => error.to_string(),
        };
        Self { code, message }
    }
}

impl From<BackendError> for Status {
    fn from(error: BackendError) -> Self {
        let code = match &error {
            BackendError::Kv(kv) => return Self::from(*kv),
            BackendError::NoLeader
            | BackendError::LeaderChanged
            | BackendError::Timeout
            | BackendError::Stopped
            | BackendError::Unavailable(_) => Code::Unavailable,
            BackendError::TooManyRequests => Code::ResourceExhausted,
            BackendError::MemberNotFound | BackendError::LeaseNotFound => Code::NotFound,
            BackendError::MemberBadUrls => Code::InvalidArgument,
            // etcd's rpctypes has no code for it, so gRPC reports it as unknown.
            BackendError::LeaderTransferTimeout => Code::Unknown,
            BackendError::NotLeader
            | BackendError::BadLeaderTransferee
            | BackendError::MemberExists
            | BackendError::PeerUrlExists
            | BackendError::MemberNotLearner
            | BackendError::LearnerNotReady
            | BackendError::TooManyLearners
            | BackendError::NotEnoughStartedMembers => Code::FailedPrecondition,
        };
        Self {
            code,
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_errors_get_etcds_codes_and_messages() {
        let status = Status::from(KvError::Compacted);
        assert_eq!(status.code, Code::OutOfRange);
        assert_eq!(
            status.message,
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(
            String::from_utf8(Status::from(KvError::EmptyKey).body()).unwrap(),
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
        );
        let lease = Status::from(BackendError::Kv(KvError::LeaseExists));
        assert_eq!(lease.code.http_status(), StatusCode::PRECONDITION_FAILED);
    }

    #[test]
    fn backend_errors_map_to_grpc_codes() {
        let status = Status::from(BackendError::NoLeader);
        assert_eq!(
            (status.code, status.message.as_str()),
            (Code::Unavailable, "etcdserver: no leader")
        );
        assert_eq!(
            Status::from(BackendError::MemberNotFound)
                .code
                .http_status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Status::from(BackendError::TooManyRequests)
                .code
                .http_status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        for (error, message) in [
            (BackendError::NotLeader, "etcdserver: not leader"),
            (
                BackendError::BadLeaderTransferee,
                "etcdserver: bad leader transferee",
            ),
        ] {
            let status = Status::from(error);
            assert_eq!(
                (status.code, status.message.as_str()),
                (Code::FailedPrecondition, message)
            );
        }
    }
}
