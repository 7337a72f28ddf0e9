//! kvd's Raft plumbing on openraft 0.9: the type configuration, the durable log store and the
//! state machine with its snapshots.
//!
//! [`LogStore`] keeps the Raft log, the vote, the committed log id and the last purged log id
//! in one redb file in the node's data directory and implements openraft's
//! [`RaftLogStorage`](openraft::storage::RaftLogStorage) (storage v2) on top of it.

use std::io::Cursor;

use crate::{Applied, Command, KvError};

mod log_storage;
pub mod log_store;
mod member;
pub mod network;
pub mod snapshot_file;
pub mod state_machine;
pub mod transport;

pub use log_store::{LogStore, LogStoreError};
pub use member::Member;
pub use network::PeerNetwork;
pub use snapshot_file::{SnapshotFile, SnapshotFileError};
pub use state_machine::StateMachine;
pub use transport::{Transport, TransportError};

/// A Raft node's id.
pub type NodeId = u64;

/// What applying one log entry answers: `None` for entries that carry no [`Command`] (blank
/// entries a new leader appends, membership changes), else the store's answer or refusal.
pub type Reply = Option<Result<Applied, KvError>>;

openraft::declare_raft_types!(
    /// openraft's type configuration for kvd: entries carry [`Command`]s, nodes are
    /// [`Member`]s (a name and URLs) named by a [`NodeId`], snapshots are bytes.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A Raft log entry of kvd.
pub type Entry = openraft::Entry<TypeConfig>;

/// A log entry's id: its index and the leader that proposed it.
pub type LogId = openraft::LogId<NodeId>;

/// A snapshot's description: the last log id and membership it covers.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;

/// The membership a state machine last applied, with the log id that carried it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;

/// The vote a node persisted: the term and the candidate or leader it stands for.
pub type Vote = openraft::Vote<NodeId>;
