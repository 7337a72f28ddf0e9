//! etcd's v3 key-value store: an in-memory multi-version store ([`Store`]) replicated with
//! [`Command`]s, with etcd v3's revisions, ranges, transactions, compaction and leases.
//!
//! Requests, answers, key-values and events are etcd's own protobuf messages
//! (`sinew_etcd_api`, re-exported here): the one model kvd's gRPC services, its JSON gateway,
//! its client and its Raft log share.
//!
//! Raft replicates [`Command`]s; every node applies each committed command, in log order, with
//! [`Store::apply`]. Application is deterministic: it never reads a clock, a random source or
//! anything but the store and the command, so every replica reaches the same state and
//! returns the same [`Response`] or [`KvError`]. Reads ([`Store::range`],
//! [`Store::events_since`], [`Store::lease_info`]) do not change the store.
//!
//! # Revisions, as in etcd
//!
//! * A new store is at revision 1. Every command that changes at least one key (a put, a
//!   delete that found keys, a transaction with such operations, a lease revocation that
//!   deleted keys) advances the revision by exactly one; its changes share that main
//!   revision and are ordered by a sub-revision.
//! * A key's `create_revision` is the revision that created it, `mod_revision` the revision
//!   of its last change, and `version` counts its puts since creation; a delete resets it.
//! * Earlier revisions stay readable until [`Command::Compact`] drops them.
//!
//! Snapshots ([`Store::into_snapshot`], [`Store::restore`]) hold the whole state, history
//! included, so Raft can compact its log and install state on a lagging follower.
//!
//! Module map: `command` (what Raft replicates and the checks before proposing), `compare`
//! (judging transaction conditions), `response` (what applying returns), `error`
//! ([`KvError`]), `lease`, `key_range` (etcd's `key`/`range_end` convention), `store` (the state and its
//! reads), `writer` (one revision's writes), `txn` (transactions), `history` (one key's
//! versions), `snapshot`.
//!
//! ```
//! use sinew_kvd::v3::{AtRevision, Command, PutRequest, RangeRequest, Response, Store};
//!
//! let mut store = Store::new();
//! let put = Command::Put(PutRequest {
//!     key: b"greeting".to_vec(),
//!     value: b"hello".to_vec(),
//!     ..PutRequest::default()
//! });
//! // Raft carries commands as JSON; every replica applies the decoded command.
//! let entry = serde_json::to_vec(&put).expect("encode");
//! let committed: Command = serde_json::from_slice(&entry).expect("decode");
//! let Ok(Response::Put(response)) = store.apply(&committed) else { panic!("put failed") };
//! assert_eq!(response.revision(), 2);
//!
//! let read = store
//!     .range(&RangeRequest { key: b"greeting".to_vec(), ..RangeRequest::default() })
//!     .expect("range");
//! assert_eq!(read.kvs[0].value, b"hello");
//! assert_eq!((read.kvs[0].create_revision, read.kvs[0].version), (2, 1));
//! ```

mod command;
mod compare;
mod error;
mod history;
mod key_range;
mod lease;
mod response;
mod snapshot;
mod store;
mod txn;
mod writer;

pub use command::{validate_range, Command, MAX_LEASE_TTL, MAX_TXN_OPS};
pub use error::KvError;
pub use key_range::prefix_end;
pub use lease::{Lease, LeaseInfo};
pub use response::{Applied, KvHash, Response, WatchBatch};
pub use sinew_etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
pub use sinew_etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
pub use sinew_etcd_api::etcdserverpb::{request_op, response_op};
pub use sinew_etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
pub use sinew_etcd_api::mvccpb::event::EventType;
pub use sinew_etcd_api::mvccpb::{Event, KeyValue};
pub use sinew_etcd_api::AtRevision;
pub use snapshot::SnapshotError;
pub use store::Store;
