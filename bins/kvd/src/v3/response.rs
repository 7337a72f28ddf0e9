//! What applying a command or serving a read returns, with etcd's field names, and the
//! changes an applied command publishes to watchers.

use serde::{Deserialize, Serialize};

use crate::v3::kv::{Event, KeyValue};

/// The part of every response that describes the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHeader {
    /// The store's revision once the request was applied.
    pub revision: i64,
}

/// The answer to a range (etcd's `RangeResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Store revision.
    pub header: ResponseHeader,
    /// The selected pairs (empty with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// Whether `limit` held back pairs that matched the filters.
    pub more: bool,
    /// How many keys the range holds at the read revision, before filters and limit.
    pub count: i64,
}

/// The answer to a put (etcd's `PutResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// Store revision.
    pub header: ResponseHeader,
    /// The pair before the put, if asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// The answer to a delete (etcd's `DeleteRangeResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// Store revision.
    pub header: ResponseHeader,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted pairs, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// The answer to one transaction operation (etcd's `ResponseOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResponse {
    /// A range's answer.
    Range(RangeResponse),
    /// A put's answer.
    Put(PutResponse),
    /// A delete's answer.
    DeleteRange(DeleteRangeResponse),
    /// A nested transaction's answer.
    Txn(TxnResponse),
}

/// The answer to a transaction (etcd's `TxnResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Store revision after the whole transaction.
    pub header: ResponseHeader,
    /// Whether every comparison held (so `success` ran).
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

/// The answer to a compaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactResponse {
    /// Store revision (compaction does not change it).
    pub header: ResponseHeader,
}

/// A hash of the store's history (etcd's `HashKVResponse`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvHash {
    /// The hash.
    pub hash: u32,
    /// The store's current revision.
    pub revision: i64,
    /// The last compaction's revision, or -1 if there was none.
    pub compact_revision: i64,
}

/// The answer to a lease grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// Store revision (a grant does not change it).
    pub header: ResponseHeader,
    /// The lease id, chosen by the store if the request said 0.
    pub id: i64,
    /// The granted TTL.
    pub ttl: i64,
}

/// The answer to a lease revocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// Store revision after the attached keys were deleted.
    pub header: ResponseHeader,
}

/// The answer to a [`crate::v3::Command`], one variant per command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// For [`crate::v3::Command::Put`].
    Put(PutResponse),
    /// For [`crate::v3::Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// For [`crate::v3::Command::Txn`].
    Txn(TxnResponse),
    /// For [`crate::v3::Command::Compact`].
    Compact(CompactResponse),
    /// For [`crate::v3::Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// For [`crate::v3::Command::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
}

/// What applying a command produced: its answer and the changes it made, in order, each as
/// the event a watcher receives (with `prev_kv` always filled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The answer to the command.
    pub response: Response,
    /// The changes; empty when the revision did not move.
    pub events: Vec<Event>,
}

/// The changes one applied command made, published to watchers in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// The store revision the command left.
    pub revision: i64,
    /// The changes, as [`Applied::events`] holds them.
    pub events: Vec<Event>,
}
