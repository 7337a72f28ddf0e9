//! What Raft replicates for the v2 API: one write with the time its leader chose.

use serde::{Deserialize, Serialize};

/// A change to the v2 store, replicated through the Raft log and applied by every node with
/// [`crate::v2::Store::apply`]. `now` is the proposing leader's clock (unix time in
/// milliseconds): TTLs count from it and expiry compares against it, so applying never
/// reads a clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unix time in milliseconds, chosen by the proposer.
    pub now: u64,
    /// The change.
    pub op: Op,
}

/// The v2 writes, as etcd's applier tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `PUT` without conditions: replaces a key (not a directory) or creates it.
    Set(Set),
    /// `PUT` with `prevExist=false`, or `POST` (an in-order key under a directory).
    Create(Create),
    /// `PUT` with `prevExist=true` and no other condition.
    Update(Update),
    /// `PUT` with `prevValue` or `prevIndex`.
    CompareAndSwap(CompareAndSwap),
    /// `DELETE` without conditions.
    Delete(Delete),
    /// `DELETE` with `prevValue` or `prevIndex`.
    CompareAndDelete(CompareAndDelete),
    /// Removes every node whose TTL ran out by `now` (etcd's `SYNC`), recording an
    /// `expire` event for each; the leader proposes it periodically.
    Expire,
}

/// What a write does with a node's TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ttl {
    /// Seconds to live from the command's `now`; `None` makes the node permanent.
    pub seconds: Option<u64>,
    /// Only reset the TTL: keep the value and do not notify watchers.
    pub refresh: bool,
}

/// Sets a key, or makes a directory (see [`Op::Set`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Set {
    /// The key path.
    pub key: String,
    /// The value (ignored for a directory or a refresh).
    pub value: String,
    /// Make a directory instead of a key.
    pub dir: bool,
    /// TTL handling.
    pub ttl: Ttl,
}

/// Creates a key or directory that must not exist (see [`Op::Create`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Create {
    /// The key path; with `in_order`, the directory to create a key in.
    pub key: String,
    /// The value (ignored for a directory).
    pub value: String,
    /// Make a directory instead of a key.
    pub dir: bool,
    /// Create `<key>/<20-digit zero-padded index>` (etcd's `POST`).
    pub in_order: bool,
    /// Seconds to live, or `None` for a permanent node.
    pub ttl: Option<u64>,
}

/// Changes an existing key's value, or an existing directory's TTL (see [`Op::Update`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Update {
    /// The key path.
    pub key: String,
    /// The new value; must be empty for a directory.
    pub value: String,
    /// TTL handling.
    pub ttl: Ttl,
}

/// Changes a key if it still has the expected value and/or index (see
/// [`Op::CompareAndSwap`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareAndSwap {
    /// The key path.
    pub key: String,
    /// The new value.
    pub value: String,
    /// The value the key must hold; empty for no check.
    pub prev_value: String,
    /// The modified index the key must have; 0 for no check.
    pub prev_index: u64,
    /// TTL handling.
    pub ttl: Ttl,
}

/// Deletes a key, or a directory (see [`Op::Delete`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delete {
    /// The key path.
    pub key: String,
    /// Allow deleting an empty directory.
    pub dir: bool,
    /// Allow deleting a directory and everything under it (implies `dir`).
    pub recursive: bool,
}

/// Deletes a key if it still has the expected value and/or index (see
/// [`Op::CompareAndDelete`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareAndDelete {
    /// The key path.
    pub key: String,
    /// The value the key must hold; empty for no check.
    pub prev_value: String,
    /// The modified index the key must have; 0 for no check.
    pub prev_index: u64,
}
