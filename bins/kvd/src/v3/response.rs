//! What applying a command returns besides etcd's answer messages, and the changes an
//! applied command publishes to watchers.

use serde::{Deserialize, Serialize};
use sinew_etcd_api::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    ResponseHeader, TxnResponse,
};
use sinew_etcd_api::mvccpb::Event;

/// A header with only the store's revision: the store knows nothing else of it (the API
/// layer adds the cluster, member and term).
pub(crate) fn revision_header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
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

/// The answer to a [`crate::v3::Command`], one variant per command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// For [`crate::v3::Command::Put`].
    Put(PutResponse),
    /// For [`crate::v3::Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// For [`crate::v3::Command::Txn`].
    Txn(TxnResponse),
    /// For [`crate::v3::Command::Compact`].
    Compact(CompactionResponse),
    /// For [`crate::v3::Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// For [`crate::v3::Command::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
}

/// What applying a command produced: its answer and the changes it made, in order, each as
/// the event a watcher receives (with `prev_kv` always filled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The answer to the command.
    pub response: Response,
    /// The changes; empty when the revision did not move.
    pub events: Vec<Event>,
}

/// The changes one applied command made, published to watchers in revision order.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    /// The store revision the command left.
    pub revision: i64,
    /// The changes, as [`Applied::events`] holds them.
    pub events: Vec<Event>,
}
