//! What the gateway needs from a kvd node: the [`Backend`] trait and the plain data it
//! answers with. The Raft node implements it; tests implement it over a bare [`Store`].

use std::future::Future;

use tokio::sync::broadcast;

use crate::alarm::{Alarm, AlarmRequest};
use crate::gateway::error::BackendError;
pub use sinew_etcd_api::etcdserverpb::{Member, StatusResponse};

use crate::v3::{Applied, Command, Event, KvHash, RangeRequest, RangeResponse, Store, WatchBatch};

/// Who answers a request, for the header of every response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The Raft term this member knows.
    pub raft_term: u64,
}

/// Where a new watcher starts: the changes it must first receive, read at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchHistory {
    /// The store revision the history was read at; published batches at or below it are
    /// already covered.
    pub revision: i64,
    /// The last compaction's revision when the requested start lies below it (the watch is
    /// then cancelled, as etcd does), else 0.
    pub compact_revision: i64,
    /// The changes to the watched keys from the start revision up to `revision`.
    pub events: Vec<Event>,
}

impl WatchHistory {
    /// Reads a watcher's history from a store: changes to `key`..`range_end` made at or after
    /// `start` (0: none, the watcher only wants what comes next).
    pub fn from_store(store: &Store, start: i64, key: &[u8], range_end: &[u8]) -> Self {
        let revision = store.revision();
        if start <= 0 || start > revision {
            return Self {
                revision,
                ..Self::default()
            };
        }
        match store.events_since(start, key, range_end) {
            Ok(events) => Self {
                revision,
                compact_revision: 0,
                events,
            },
            Err(_) => Self {
                revision,
                compact_revision: store.compacted_revision(),
                events: Vec::new(),
            },
        }
    }
}

/// A member's whole state as `maintenance/snapshot` streams it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The store revision the copy was taken at.
    pub revision: i64,
    /// The state, in the member's own snapshot format.
    pub data: Vec<u8>,
}

/// A lease's remaining time, as a keep-alive answers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseKeepAlive {
    /// The store revision, for the header.
    pub revision: i64,
    /// Seconds the lease now has left; 0 if it does not exist (etcd answers so).
    pub ttl: i64,
}

/// A lease's remaining and granted time (etcd's `LeaseTimeToLiveResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    /// The store revision, for the header.
    pub revision: i64,
    /// Seconds left, or -1 if the lease does not exist.
    pub ttl: i64,
    /// The TTL it was granted with (0 if it does not exist).
    pub granted_ttl: i64,
    /// The attached keys, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// Every live lease (etcd's `LeaseLeasesResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseList {
    /// The store revision, for the header.
    pub revision: i64,
    /// The lease ids.
    pub ids: Vec<i64>,
}

/// The answer to adding a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAdded {
    /// The new member.
    pub member: Member,
    /// Every member, the new one included.
    pub members: Vec<Member>,
}

/// A kvd node as the HTTP gateway sees it. Every method may be called concurrently.
pub trait Backend: Send + Sync + 'static {
    /// Who answers, for response headers.
    fn identity(&self) -> NodeIdentity;

    /// Whether this member knows a leader (etcd's `hasleader` check).
    fn has_leader(&self) -> bool;

    /// Replicates a command and answers with what applying it gave. The node may adjust a
    /// [`Command::LeaseGrant`] before proposing it (etcd raises TTLs below its minimum).
    fn propose(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Applied, BackendError>> + Send;

    /// Reads keys: linearizable unless `serializable`, which may answer from local state.
    fn range(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> impl Future<Output = Result<RangeResponse, BackendError>> + Send;

    /// A receiver of every [`WatchBatch`] applied from now on, in revision order.
    fn subscribe(&self) -> broadcast::Receiver<WatchBatch>;

    /// The history a watcher starting at `start` needs; see [`WatchHistory::from_store`].
    /// With `start` 0 it only reports the current revision.
    fn watch_history(
        &self,
        start: i64,
        key: Vec<u8>,
        range_end: Vec<u8>,
    ) -> impl Future<Output = Result<WatchHistory, BackendError>> + Send;

    /// Renews a lease's time to live.
    fn lease_keep_alive(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<LeaseKeepAlive, BackendError>> + Send;

    /// A lease's remaining time, and its keys if `keys`.
    fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> impl Future<Output = Result<LeaseTimeToLive, BackendError>> + Send;

    /// Every live lease.
    fn leases(&self) -> impl Future<Output = Result<LeaseList, BackendError>> + Send;

    /// The cluster's members.
    fn member_list(&self) -> impl Future<Output = Result<Vec<Member>, BackendError>> + Send;

    /// Adds a member reachable on `peer_urls` (checked to be well-formed URLs), as a
    /// learner if `is_learner`.
    fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> impl Future<Output = Result<MemberAdded, BackendError>> + Send;

    /// Removes a member; answers with the remaining members.
    fn member_remove(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Vec<Member>, BackendError>> + Send;

    /// Makes a learner a voting member; answers with every member.
    fn member_promote(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Vec<Member>, BackendError>> + Send;

    /// Changes a member's peer URLs (checked to be well-formed URLs); answers with every
    /// member.
    fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> impl Future<Output = Result<Vec<Member>, BackendError>> + Send;

    /// A hash of this member's history up to `revision` (0: now), from its local state.
    fn hash_kv(&self, revision: i64) -> impl Future<Output = Result<KvHash, BackendError>> + Send;

    /// This member's state.
    fn status(&self) -> impl Future<Output = Result<StatusResponse, BackendError>> + Send;

    /// A copy of this member's whole state, for `maintenance/snapshot` (a backup).
    fn snapshot(&self) -> impl Future<Output = Result<StateSnapshot, BackendError>> + Send;

    /// Lists, raises or clears alarms; see [`crate::alarm::Alarms::apply`] for the answer.
    fn alarm(
        &self,
        request: AlarmRequest,
    ) -> impl Future<Output = Result<Vec<Alarm>, BackendError>> + Send;

    /// Moves the lead to the voter `target`, returning once it leads (this member must lead),
    /// with the store's revision then.
    fn move_leader(&self, target: u64) -> impl Future<Output = Result<i64, BackendError>> + Send;
}
