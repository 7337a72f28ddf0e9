//! Errors the agent reports to clients.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The class of a [`RemoteError`], for programs that react to specific failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The client did not prove it knows the lab secret.
    Unauthorized,
    /// Client and agent speak different protocol versions.
    VersionMismatch,
    /// The request was malformed or not valid in this state.
    BadRequest,
    /// A path named by the request does not exist.
    NotFound,
    /// The agent lacks permission for the operation.
    PermissionDenied,
    /// A program could not be started (not found, not executable, wrong machine).
    ExecFailed,
    /// Uploaded data did not match the announced digest or size.
    DigestMismatch,
    /// The request named a service the agent does not know.
    UnknownService,
    /// Any other operating-system error.
    Io,
    /// A failure inside the agent itself.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::VersionMismatch => "version mismatch",
            ErrorKind::BadRequest => "bad request",
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::ExecFailed => "exec failed",
            ErrorKind::DigestMismatch => "digest mismatch",
            ErrorKind::UnknownService => "unknown service",
            ErrorKind::Io => "i/o error",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(name)
    }
}

/// An error reported by the agent: a class and a message meant for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// The class of error.
    pub kind: ErrorKind,
    /// What went wrong, naming the path, program or service concerned.
    pub message: String,
}

impl RemoteError {
    /// Makes an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
