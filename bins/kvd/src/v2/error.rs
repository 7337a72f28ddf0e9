//! etcd's v2 errors: a numeric code with a fixed message, a cause naming what failed, and the
//! store index when it failed, answered as `{"errorCode":..,"message":..,"cause":..,"index":..}`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// etcd's v2 error codes, with the HTTP status and message etcd pairs with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// 100: the key, or a directory on its path, does not exist.
    KeyNotFound,
    /// 101: `prevValue` or `prevIndex` did not match.
    TestFailed,
    /// 102: a value operation on a directory.
    NotFile,
    /// 104: a path goes through a key that is not a directory.
    NotDir,
    /// 105: a create on a key that exists.
    NodeExist,
    /// 107: a change to `/`.
    RootReadOnly,
    /// 108: a non-recursive delete of a directory with children.
    DirNotEmpty,
    /// 201: `prevValue` given but empty.
    PrevValueRequired,
    /// 202: `ttl` is not a non-negative integer.
    TtlNaN,
    /// 203: `prevIndex` or `waitIndex` is not a non-negative integer.
    IndexNaN,
    /// 209: a flag that is not a boolean, or a flag used where it cannot be.
    InvalidField,
    /// 210: the request or its form cannot be parsed.
    InvalidForm,
    /// 211: `refresh=true` with a value.
    RefreshValue,
    /// 212: `refresh=true` without a TTL.
    RefreshTtlRequired,
    /// 300: the request could not go through Raft.
    RaftInternal,
    /// 301: no leader to serve the request.
    LeaderElect,
    /// 401: a watch from an index older than the event history.
    EventIndexCleared,
}

impl Code {
    /// etcd's number for the code.
    pub fn number(self) -> u32 {
        match self {
            Self::KeyNotFound => 100,
            Self::TestFailed => 101,
            Self::NotFile => 102,
            Self::NotDir => 104,
            Self::NodeExist => 105,
            Self::RootReadOnly => 107,
            Self::DirNotEmpty => 108,
            Self::PrevValueRequired => 201,
            Self::TtlNaN => 202,
            Self::IndexNaN => 203,
            Self::InvalidField => 209,
            Self::InvalidForm => 210,
            Self::RefreshValue => 211,
            Self::RefreshTtlRequired => 212,
            Self::RaftInternal => 300,
            Self::LeaderElect => 301,
            Self::EventIndexCleared => 401,
        }
    }

    /// etcd's fixed message for the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::KeyNotFound => "Key not found",
            Self::TestFailed => "Compare failed",
            Self::NotFile => "Not a file",
            Self::NotDir => "Not a directory",
            Self::NodeExist => "Key already exists",
            Self::RootReadOnly => "Root is read only",
            Self::DirNotEmpty => "Directory not empty",
            Self::PrevValueRequired => "PrevValue is Required in POST form",
            Self::TtlNaN => "The given TTL in POST form is not a number",
            Self::IndexNaN => "The given index in POST form is not a number",
            Self::InvalidField => "Invalid field",
            Self::InvalidForm => "Invalid POST form",
            Self::RefreshValue => "Value provided on refresh",
            Self::RefreshTtlRequired => "A TTL must be provided on refresh",
            Self::RaftInternal => "Raft Internal Error",
            Self::LeaderElect => "During Leader Election",
            Self::EventIndexCleared => "The event in requested index is outdated and cleared",
        }
    }

    /// The HTTP status etcd answers the code with.
    pub fn status(self) -> u16 {
        match self {
            Self::KeyNotFound => 404,
            Self::NotFile | Self::DirNotEmpty => 403,
            Self::TestFailed | Self::NodeExist => 412,
            Self::RaftInternal | Self::LeaderElect => 500,
            _ => 400,
        }
    }
}

/// A refused v2 request or command, as etcd reports it. Serialisable, so Raft can hand a
/// refusal back to the node that proposed the command.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("{}: {} ({cause}) [{index}]", code.number(), code.message())]
pub struct Error {
    /// What went wrong.
    pub code: Code,
    /// What it went wrong on: a key, or the detail of a request error.
    pub cause: String,
    /// The store index when it happened; 0 for requests refused before reaching the store.
    pub index: u64,
}

impl Error {
    /// An error about the store at `index`.
    pub fn new(code: Code, cause: impl Into<String>, index: u64) -> Self {
        Self {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// A malformed request, refused before it reaches the store (etcd reports index 0).
    pub fn request(code: Code, cause: impl Into<String>) -> Self {
        Self::new(code, cause, 0)
    }

    /// A failure to replicate or read through Raft.
    pub fn raft(cause: impl Into<String>) -> Self {
        Self::new(Code::RaftInternal, cause, 0)
    }

    /// The JSON body etcd answers with, fields in etcd's order.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error_code: self.code.number(),
            message: self.code.message(),
            cause: &self.cause,
            index: self.index,
        };
        // A struct of strings and integers always serialises.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    error_code: u32,
    message: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cause: &'a str,
    index: u64,
}
