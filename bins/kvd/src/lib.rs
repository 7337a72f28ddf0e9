//! kvd's replicated state machine: an in-memory multi-version key-value store with etcd v3
//! semantics.
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
//! Snapshots ([`Store::snapshot`], [`Store::restore`]) hold the whole state, history
//! included, so Raft can compact its log and install state on a lagging follower.
//!
//! [`raft`] holds the Raft side so far: openraft's type configuration for kvd and the durable
//! Raft log ([`raft::LogStore`]), kept in a redb file in the node's data directory.
//!
//! ```
//! use sinew_kvd::{Command, PutRequest, RangeRequest, Response, Store};
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
//! assert_eq!(response.header.revision, 2);
//!
//! let read = store
//!     .range(&RangeRequest { key: b"greeting".to_vec(), ..RangeRequest::default() })
//!     .expect("range");
//! assert_eq!(read.kvs[0].value, b"hello");
//! assert_eq!((read.kvs[0].create_revision, read.kvs[0].version), (2, 1));
//! ```

#![warn(missing_docs)]

mod base64_bytes;
pub mod client_api;
pub mod command;
pub mod compare;
pub mod error;
pub mod gateway;
mod history;
pub mod http_server;
pub mod key_range;
pub mod kv;
pub mod lease;
pub mod node;
pub mod raft;
pub mod response;
pub mod snapshot;
pub mod store;
mod txn;
pub mod v2;
mod writer;

pub use command::{
    Command, CompactRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, Op,
    PutRequest, RangeRequest, SortOrder, SortTarget, TxnRequest, MAX_LEASE_TTL, MAX_TXN_OPS,
};
pub use compare::{Compare, CompareResult, CompareTarget};
pub use error::KvError;
pub use key_range::prefix_end;
pub use kv::{Event, EventKind, KeyValue};
pub use lease::{Lease, LeaseInfo};
pub use response::{
    Applied, CompactResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse,
    OpResponse, PutResponse, RangeResponse, Response, ResponseHeader, TxnResponse,
};
pub use snapshot::SnapshotError;
pub use store::Store;
