//! kvd's Raft plumbing on openraft 0.9: the type configuration ([`TypeConfig`]: entries carry
//! a v3 or v2 command or an alarm request, a [`Request`]), the log, the state machine and the
//! network.
//!
//! * Log: [`durable_log`] keeps the log, the vote and the committed and purged log ids in one
//!   redb file ([`LogStore`]); `log_traits` implements openraft's storage-v2 log traits on it.
//!
//! Appended entries reach the disk in the background (openraft is told they are written as
//! soon as they are staged, so a leader replicates while it writes), and nothing that depends
//! on an entry leaves a member or is applied before the entry is on disk ([`Persisted`]):
//!   - a follower answers AppendEntries only once the entries it reports holding are;
//!   - a leader tells followers a commit index only up to what it holds on disk;
//!   - the state machine applies an entry only once it is on disk.
//!
//! So an entry counts as committed in openraft while the leader may still be writing it, but
//! no member applies it, and no client hears of it, until a quorum holds it on disk.
//! * State machine: [`state_machine`] applies entries to both stores in memory and takes
//!   snapshots, keeping the [`crate::alarm`]s beside the stores; `snapshot_data` is a
//!   snapshot's bytes (both stores' snapshots and the alarms), and
//!   [`snapshot_file`] keeps the last snapshot on disk.
//! * Network: [`network`] sends Raft's messages to the other members over [`transport`]
//!   (HTTP/1.1), which also carries the requests a follower forwards; [`wire`] is how Raft's
//!   messages and entries are written as bytes; `member` is what membership records of a
//!   member.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::alarm::{Alarm, AlarmRequest};
use crate::v2;
use crate::v3::{Applied, Command, KvError};

pub mod durable_log;
mod journal;
mod log_traits;
mod member;
pub mod network;
mod snapshot_data;
pub mod snapshot_file;
pub mod state_machine;
pub mod transport;
pub mod wire;

pub use durable_log::{LogStore, LogStoreError, PersistError, Persisted};
pub use log_traits::APPEND_ENTRIES_BYTES;
pub use member::Member;
pub use network::PeerNetwork;
pub use snapshot_data::RestoreError;
pub use snapshot_file::{SnapshotFile, SnapshotFileError};
pub use state_machine::StateMachine;
pub use transport::{Transport, TransportError};

/// A Raft node's id.
pub type NodeId = u64;

/// What a log entry carries: a change to the v3 store or to the v2 store, which etcd keeps
/// apart and so does kvd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A v3 command.
    V3(Command),
    /// A v2 command.
    V2(v2::Command),
    /// Listing, raising or clearing alarms.
    Alarm(AlarmRequest),
    /// Requests proposed together, applied one after the other in this order (group commit:
    /// one entry, so one log write, for many writes).
    Batch(Vec<Request>),
}

/// What applying one log entry answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Entries that carry no request: blank entries a new leader appends, membership changes.
    None,
    /// The v3 store's answer or refusal.
    V3(Result<Applied, KvError>),
    /// The v2 store's events or refusal.
    V2(Result<Vec<v2::Event>, v2::Error>),
    /// What an [`AlarmRequest`] answers.
    Alarm(Vec<Alarm>),
    /// A [`Request::Batch`]'s replies, one per request, in its order.
    Batch(Vec<Reply>),
}

openraft::declare_raft_types!(
    /// openraft's type configuration for kvd: entries carry [`Request`]s, nodes are
    /// [`Member`]s (a name and URLs) named by a [`NodeId`], snapshots are bytes.
    pub TypeConfig:
        D = Request,
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
