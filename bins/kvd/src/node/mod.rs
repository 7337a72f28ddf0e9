//! A kvd node: the Raft log, the state machine, the peer network and the leader's lease
//! clock, assembled, plus what the client APIs call: proposals, linearizable and
//! serializable reads, lease keep-alives, membership changes and status.
//!
//! Any member serves any request. A follower forwards writes, lease keep-alives and
//! membership changes to the leader over the peer network; for a linearizable read it asks
//! the leader for a read index and serves the read itself once it has applied that far
//! (etcd's ReadIndex), so a read never sees less than what was acknowledged before it began.
//!
//! Module map: `config` (etcd's settings), `identity` (the data directory's member and
//! cluster ids), `proposer` (group commit), `read_index` (read-index rounds shared by
//! linearizable reads), `members` (membership changes), `leases` (the
//! leader's lease clock), `error` ([`NodeError`]); the listeners `peer_server` (Raft's
//! messages and forwarded requests, at `peer_paths`) and `client_server` ([`ClientApi`]: v2
//! and the v3 gateway), both over `http_server`; the client APIs' backends `backend` (v3) and
//! `v2_backend`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::{Raft, ServerState, SnapshotPolicy};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::alarm::{self, Alarm, AlarmKind, AlarmRequest};
use crate::gateway::StatusResponse;
use crate::raft::wire::Encoding;
use crate::raft::{
    LogStore, LogStoreError, Member, NodeId, PeerNetwork, Persisted, Reply, Request,
    SnapshotFileError, StateMachine, Transport, TypeConfig,
};
use crate::v2;
use crate::v3::{Applied, Command, KvError, RangeRequest, RangeResponse, ResponseHeader};

mod backend;
mod client_server;
mod config;
mod error;
mod http_server;
mod identity;
mod leases;
mod members;
mod peer_paths;
mod peer_server;
mod proposer;
mod read_index;
mod transfer;
mod v2_backend;

pub use client_server::ClientApi;
pub use config::{
    cluster_id, member_id, parse_initial_cluster, parse_url, ClusterState, ConfigError,
    InitialMember, NodeConfig,
};
pub use error::NodeError;
pub use members::{MemberChange, MemberInfo};

use error::Redirect;
use leases::LeaseClock;
use proposer::Proposer;
use read_index::Rounds;

/// How long a request may wait for a leader, a commit or a read index.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a start waits for an earlier holder of the log file to let go of it.
const LOG_RELEASE_PATIENCE: Duration = Duration::from_secs(5);

/// How long [`Node::shutdown`] lets peer requests in flight finish before it cuts them.
const PEER_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The smallest TTL a lease is granted, in seconds: one and a half election timeouts,
/// rounded up, as etcd computes it, so a leader change cannot expire a kept-alive lease.
pub fn min_lease_ttl(election_timeout: Duration) -> i64 {
    i64::try_from((election_timeout * 3 / 2).as_millis().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The settings contradict each other.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Raft log could not be opened.
    #[error(transparent)]
    Log(#[from] LogStoreError),
    /// The snapshot could not be loaded.
    #[error(transparent)]
    Snapshot(#[from] SnapshotFileError),
    /// The member identity file is unusable or belongs to another member.
    #[error("{0}")]
    Identity(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused to start or to found the cluster.
    #[error("raft: {0}")]
    Raft(String),
}

struct Inner {
    id: NodeId,
    cluster_id: u64,
    config: NodeConfig,
    raft: Raft<TypeConfig>,
    /// How far this member's log is on disk.
    persisted: Persisted,
    proposer: Proposer,
    /// Read-index rounds confirmed by this member, if it leads.
    read_index: Rounds<()>,
    /// Read-index rounds asked of the leader, when this member does not lead.
    leader_read_index: Rounds<Member>,
    machine: StateMachine,
    transport: Transport,
    leases: LeaseClock,
    shutdown: watch::Sender<bool>,
    /// The peer listeners' servers, awaited by [`Node::shutdown`].
    peer_servers: std::sync::Mutex<JoinSet<()>>,
    /// Whether the membership records this member's name and client URLs.
    published: watch::Sender<bool>,
    started: std::time::SystemTime,
    /// Whether the lead is being moved away from this member ([`transfer`]).
    moving_lead: watch::Sender<bool>,
    /// Whether a v2 expiry proposal is in flight, so ticks do not pile them up.
    expiring: std::sync::atomic::AtomicBool,
}

/// Bytes the files under `dir` take, as etcd reports its database's size; what cannot be
/// read counts as empty.
fn disk_usage(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_usage(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |metadata| metadata.len()),
            Err(_) => 0,
        })
        .sum()
}

/// A running node; clones share it.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("name", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the data directory, starts Raft and the peer listener, founds the cluster if
    /// this is a new one, and starts the lease clock and the member publisher.
    pub async fn start(config: NodeConfig) -> Result<Self, StartError> {
        config.validate()?;
        let id = config.member_id();
        let log = open_log(&config.data_dir).await?;
        log.set_member(id)?;
        let persisted = log.persisted();
        let machine = StateMachine::open(&config.data_dir, persisted.clone())?;
        let transport = Transport::default();
        let identity = identity::establish(&config, id, &transport).await?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config(&config)?),
            PeerNetwork::new(transport.clone(), persisted.clone()),
            log,
            machine.clone(),
        )
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;
        let node = Self {
            inner: Arc::new(Inner {
                id,
                cluster_id: identity.cluster_id,
                config,
                proposer: Proposer::start(raft.clone()),
                read_index: Rounds::start({
                    let raft = raft.clone();
                    move |()| read_index::confirmed_here(raft.clone())
                }),
                leader_read_index: Rounds::start({
                    let transport = transport.clone();
                    move |leader| read_index::confirmed_by(transport.clone(), leader)
                }),
                raft,
                persisted,
                machine,
                transport,
                leases: LeaseClock::default(),
                shutdown: watch::channel(false).0,
                peer_servers: std::sync::Mutex::default(),
                published: watch::channel(false).0,
                started: std::time::SystemTime::now(),
                moving_lead: watch::channel(false).0,
                expiring: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let peer_servers = peer_server::start(&node).await?;
        *node
            .inner
            .peer_servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = peer_servers;
        node.found_cluster().await?;
        tokio::spawn(node.clone().run_lease_clock());
        tokio::spawn(node.clone().publish_self());
        Ok(node)
    }

    async fn found_cluster(&self) -> Result<(), StartError> {
        let raft = &self.inner.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|error| StartError::Raft(error.to_string()))?;
        if initialized || self.inner.config.initial_cluster_state != ClusterState::New {
            return Ok(());
        }
        let token = &self.inner.config.initial_cluster_token;
        let members: BTreeMap<NodeId, Member> = self
            .inner
            .config
            .initial_cluster
            .iter()
            .map(|member| {
                (
                    member_id(&member.peer_urls, token),
                    Member {
                        name: member.name.clone(),
                        peer_urls: member.peer_urls.clone(),
                        client_urls: Vec::new(),
                    },
                )
            })
            .collect();
        // Every founding member proposes the same membership; openraft lets all of them.
        raft.initialize(members).await.or_else(|error| match error {
            RaftError::APIError(openraft::error::InitializeError::NotAllowed(_)) => Ok(()),
            other => Err(StartError::Raft(other.to_string())),
        })
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// The settings it started with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The state machine, for reads and watches.
    pub fn machine(&self) -> &StateMachine {
        &self.inner.machine
    }

    /// The current Raft term.
    pub fn raft_term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    /// When this member started, as RFC 3339 (etcd's `startTime`).
    pub fn started_at(&self) -> String {
        let millis = self
            .inner
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        v2::time::expiration_string(millis)
    }

    /// How long this member has run.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed().unwrap_or_default()
    }

    /// The leader's id, if one is known.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Resolves once the membership records this member's name and client URLs: etcd
    /// serves clients only from then on, so none sees it unpublished.
    pub async fn published(&self) {
        // The sender lives as long as the node.
        let _ = self
            .inner
            .published
            .subscribe()
            .wait_for(|done| *done)
            .await;
    }

    /// Resolves once [`Node::shutdown`] was called.
    pub async fn stopped(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        // An error means the sender is gone, which also means stopping.
        let _ = shutdown.wait_for(|stopped| *stopped).await;
    }

    /// Stops Raft and the peer listeners; returns once their ports are free and their
    /// connections have finished (or were cut after [`PEER_SHUTDOWN_GRACE`]). Every
    /// acknowledged write is already on disk.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
        let mut servers = std::mem::take(
            &mut *self
                .inner
                .peer_servers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let finished = async { while servers.join_next().await.is_some() {} };
        if tokio::time::timeout(PEER_SHUTDOWN_GRACE, finished)
            .await
            .is_err()
        {
            tracing::warn!("peer connections still open after the shutdown grace period");
            servers.shutdown().await;
        }
    }

    /// Replicates `command` and returns what applying it produced, forwarding to the leader
    /// from a follower.
    pub async fn propose(&self, command: Command) -> Result<Applied, NodeError> {
        let command = self.with_minimum_ttl(command);
        command.validate()?;
        self.check_quota(&command).await?;
        match self.propose_request(Request::V3(command)).await? {
            Reply::V3(answer) => Ok(answer?),
            other => Err(unexpected(&other)),
        }
    }

    /// Replicates a v2 command; the outer error says why it was not replicated, the inner
    /// one why the v2 store refused it.
    pub async fn propose_v2(
        &self,
        command: v2::Command,
    ) -> Result<Result<Vec<v2::Event>, v2::Error>, NodeError> {
        match self.propose_request(Request::V2(command)).await? {
            Reply::V2(answer) => Ok(answer),
            other => Err(unexpected(&other)),
        }
    }

    /// Refuses `command` if it could take the store past the space quota, raising this
    /// member's out-of-space alarm first, as etcd checks before proposing.
    async fn check_quota(&self, command: &Command) -> Result<(), NodeError> {
        let (Some(quota), Some(cost)) = (
            self.inner.config.quota_backend_bytes,
            alarm::quota_cost(command),
        ) else {
            return Ok(());
        };
        let size = self.inner.machine.read(crate::v3::Store::size);
        if size.saturating_add(cost) < quota {
            return Ok(());
        }
        tracing::warn!(
            size,
            quota,
            "the store reached its space quota; raising NOSPACE"
        );
        self.alarm(AlarmRequest::Activate(Alarm {
            member: self.id(),
            kind: AlarmKind::Nospace,
        }))
        .await?;
        Err(KvError::NoSpace.into())
    }

    /// Lists, raises or clears alarms through the log, as etcd does, so the answer is the
    /// cluster's.
    pub async fn alarm(&self, request: AlarmRequest) -> Result<Vec<Alarm>, NodeError> {
        match self.propose_request(Request::Alarm(request)).await? {
            Reply::Alarm(alarms) => Ok(alarms),
            other => Err(unexpected(&other)),
        }
    }

    /// Replicates `request` through the leader, waiting for a leader while there is none.
    async fn propose_request(&self, request: Request) -> Result<Reply, NodeError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.propose_here(&request, deadline).await {
                Err(Redirect::To(leader)) => {
                    match forward_to::<_, Reply>(
                        &self.inner.transport,
                        &leader,
                        peer_paths::PROPOSE,
                        &request,
                        deadline,
                    )
                    .await
                    {
                        Err(NodeError::NoLeader) => self.pause(deadline).await?,
                        other => return other,
                    }
                }
                Err(Redirect::Unknown) => self.pause(deadline).await?,
                Err(Redirect::Failed(error)) => return Err(error),
                Ok(reply) => return Ok(reply),
            }
        }
    }

    /// Proposes on this node only; a follower answers with where to go instead. A v2
    /// command gets this node's clock, which only matters where it is accepted: on the
    /// leader, whose clock alone decides v2 expiry times.
    async fn propose_here(
        &self,
        request: &Request,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, Redirect> {
        self.wait_for_transfer(deadline)
            .await
            .map_err(Redirect::Failed)?;
        let mut request = request.clone();
        if let Request::V2(command) = &mut request {
            command.now = v2::now_ms();
        }
        tokio::time::timeout_at(deadline, self.inner.proposer.propose(request))
            .await
            .map_err(|_| Redirect::Failed(NodeError::Timeout))?
    }

    /// Raises a lease grant's TTL to the minimum, as etcd does before proposing.
    fn with_minimum_ttl(&self, command: Command) -> Command {
        match command {
            Command::LeaseGrant(mut grant) => {
                grant.ttl = grant
                    .ttl
                    .max(min_lease_ttl(self.inner.config.election_timeout));
                Command::LeaseGrant(grant)
            }
            other => other,
        }
    }

    /// Reads a range: after a read barrier unless `serializable`, which reads whatever this
    /// member has applied.
    pub async fn range(
        &self,
        request: &RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, NodeError> {
        if !serializable {
            self.read_barrier().await?;
        }
        Ok(self.inner.machine.read(|store| store.range(request))?)
    }

    /// Waits until this member has applied everything committed when the call began, as
    /// confirmed by the leader with a quorum.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let read_index = loop {
            let answer = match self.read_index_here(deadline).await {
                Err(Redirect::To(leader)) => {
                    tokio::time::timeout_at(deadline, self.inner.leader_read_index.next(leader))
                        .await
                        .unwrap_or(Err(Redirect::Failed(NodeError::Timeout)))
                }
                answer => answer,
            };
            match answer {
                Ok(index) => break index,
                Err(Redirect::To(_) | Redirect::Unknown) => self.pause(deadline).await?,
                Err(Redirect::Failed(error)) => return Err(error),
            }
        };
        if read_index == 0 {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(read_index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|_| NodeError::Timeout)
    }

    /// The leader's read index: the log index a member must apply before a linearizable
    /// read (0: nothing yet), from the next read-index round to begin.
    async fn read_index_here(&self, deadline: tokio::time::Instant) -> Result<u64, Redirect> {
        self.wait_for_transfer(deadline)
            .await
            .map_err(Redirect::Failed)?;
        tokio::time::timeout_at(deadline, self.inner.read_index.next(()))
            .await
            .map_err(|_| Redirect::Failed(NodeError::Timeout))?
    }

    /// Renews a lease for its full TTL; `None` if no such lease exists.
    pub async fn lease_keepalive(&self, id: i64) -> Result<Option<i64>, NodeError> {
        self.on_leader(peer_paths::LEASE_KEEPALIVE, &id, |node| {
            node.keepalive_here(id)
        })
        .await
    }

    /// A lease's remaining TTL in seconds; `None` if no such lease exists.
    pub async fn lease_remaining(&self, id: i64) -> Result<Option<i64>, NodeError> {
        self.on_leader(peer_paths::LEASE_REMAINING, &id, |node| {
            node.remaining_here(id)
        })
        .await
    }

    /// Renews a lease on the leader, which measures its TTL.
    async fn keepalive_here(self, id: i64) -> Result<Option<i64>, NodeError> {
        let lease = self.leader_lease(id).await?;
        Ok(lease.map(|lease| self.inner.leases.renew(lease, Instant::now())))
    }

    /// A lease's remaining TTL as the leader measures it.
    async fn remaining_here(self, id: i64) -> Result<Option<i64>, NodeError> {
        let lease = self.leader_lease(id).await?;
        Ok(lease.map(|lease| self.inner.leases.remaining(lease, Instant::now())))
    }

    /// The lease as the leader's state machine holds it once everything committed is
    /// applied; fails if this member does not lead.
    async fn leader_lease(&self, id: i64) -> Result<Option<crate::v3::Lease>, NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NoLeader);
        }
        self.read_barrier().await?;
        Ok(self
            .inner
            .machine
            .read(|store| store.leases().into_iter().find(|lease| lease.id == id)))
    }

    /// What this member reports about itself; the header carries only the store revision.
    pub fn status(&self) -> StatusResponse {
        let db_size = i64::try_from(disk_usage(&self.inner.config.data_dir)).unwrap_or(i64::MAX);
        let metrics = self.inner.raft.metrics().borrow().clone();
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|voter| voter == self.inner.id);
        StatusResponse {
            header: Some(ResponseHeader {
                revision: self.inner.machine.read(crate::v3::Store::revision),
                ..ResponseHeader::default()
            }),
            version: crate::ETCD_VERSION.to_owned(),
            db_size,
            db_size_in_use: db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
            errors: Vec::new(),
            is_learner,
            ..StatusResponse::default()
        }
    }

    /// Runs `here` if this member leads, else forwards the request to the leader's `path`,
    /// retrying while no leader is known until the request's deadline.
    async fn on_leader<Req, Resp, F, Fut>(
        &self,
        path: &str,
        request: &Req,
        here: F,
    ) -> Result<Resp, NodeError>
    where
        Req: Serialize + Sync,
        Resp: serde::de::DeserializeOwned,
        F: Fn(Self) -> Fut,
        Fut: std::future::Future<Output = Result<Resp, NodeError>>,
    {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let leader = self.leader_member();
            match leader {
                Some((id, _)) if id == self.inner.id => return here(self.clone()).await,
                Some((_, member)) => {
                    match forward_to(&self.inner.transport, &member, path, request, deadline).await
                    {
                        Err(NodeError::NoLeader) => self.pause(deadline).await?,
                        other => return other,
                    }
                }
                None => self.pause(deadline).await?,
            }
        }
    }

    /// The leader, if this member knows one and its address.
    fn leader_member(&self) -> Option<(NodeId, Member)> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let member = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()?;
        Some((leader, member))
    }

    /// Whether this member is the leader now.
    fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.inner.id)
    }

    /// Waits a little for a leader to appear; fails once the deadline passed.
    async fn pause(&self, deadline: tokio::time::Instant) -> Result<(), NodeError> {
        if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
            return Err(if self.leader().is_some() {
                NodeError::Timeout
            } else {
                NodeError::NoLeader
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }

    /// While leader, proposes revocations for leases whose deadline passed.
    async fn run_lease_clock(self) {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.stopped() => return,
            }
            if !self.is_leader() {
                self.inner.leases.stand_down();
                continue;
            }
            self.expire_v2();
            let leases = self.inner.machine.read(crate::v3::Store::leases);
            let expired = self
                .inner
                .leases
                .tick(self.raft_term(), &leases, Instant::now());
            for id in expired {
                let node = self.clone();
                tokio::spawn(async move {
                    let revoke = Command::LeaseRevoke(crate::v3::LeaseRevokeRequest { id });
                    match node.propose(revoke).await {
                        Ok(_) | Err(NodeError::Kv(KvError::LeaseNotFound)) => {
                            tracing::debug!(lease = id, "lease expired and was revoked");
                        }
                        Err(error) => {
                            tracing::warn!(lease = id, %error, "cannot revoke an expired lease")
                        }
                    }
                });
            }
        }
    }
}

impl Node {
    /// As leader, proposes the v2 store's expiry (etcd's SYNC) once its earliest TTL ran out.
    fn expire_v2(&self) {
        use std::sync::atomic::Ordering;
        let now = v2::now_ms();
        let due = self
            .inner
            .machine
            .read_v2(v2::Store::next_expiry)
            .is_some_and(|next| next <= now);
        if !due || self.inner.expiring.swap(true, Ordering::AcqRel) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let expire = v2::Command {
                now,
                op: v2::Op::Expire,
            };
            if let Err(error) = node.propose_v2(expire).await {
                tracing::warn!(%error, "cannot expire v2 keys");
            }
            node.inner.expiring.store(false, Ordering::Release);
        });
    }
}

/// The error for an answer of the wrong kind, which only a bug can produce.
fn unexpected(reply: &Reply) -> NodeError {
    NodeError::Storage(format!("the state machine answered with {reply:?}"))
}

/// openraft's shortest and longest election timeouts for etcd's `--election-timeout` E and
/// `--heartbeat-interval` H.
///
/// An openraft follower that has heard from a leader stands for election only once the
/// leader's lease (the longest timeout) and then its own random timeout have passed since
/// the leader's last word; etcd's follower stands after a random E..2E. E/4..3E/4 makes
/// that E..1.5E: no follower stands sooner than etcd's, and the first stands about as soon
/// (the shortest timeout stays above H, as openraft requires).
fn election_timeouts(election_timeout: Duration, heartbeat: Duration) -> (Duration, Duration) {
    let shortest = (election_timeout / 4).max(heartbeat + Duration::from_millis(1));
    let longest = (election_timeout * 3 / 4).max(shortest + Duration::from_millis(1));
    (shortest, longest)
}

/// How long a follower that heard from its leader refuses to vote for another member.
pub(super) fn leader_lease(config: &NodeConfig) -> Duration {
    election_timeouts(config.election_timeout, config.heartbeat).1
}

fn raft_config(config: &NodeConfig) -> Result<openraft::Config, StartError> {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let (shortest, longest) = election_timeouts(config.election_timeout, config.heartbeat);
    openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: millis(config.heartbeat),
        election_timeout_min: millis(shortest),
        election_timeout_max: millis(longest),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        // Followers that fall this far behind catch up from a snapshot instead.
        max_in_snapshot_log_to_keep: 5000,
        max_payload_entries: 1000,
        // A chunk must reach the follower within `install_snapshot_timeout` (200 ms).
        snapshot_max_chunk_size: 1 << 20,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|error| StartError::Raft(error.to_string()))
}

/// Opens the log in `data_dir`, waiting up to [`LOG_RELEASE_PATIENCE`] while the file is
/// still open elsewhere: a node restarted in the same process can race the old node's last
/// tasks, which may hold the database for a moment after `shutdown` returns.
async fn open_log(data_dir: &std::path::Path) -> Result<LogStore, LogStoreError> {
    let deadline = Instant::now() + LOG_RELEASE_PATIENCE;
    loop {
        match LogStore::open(data_dir) {
            Err(LogStoreError::Open {
                source: redb::DatabaseError::DatabaseAlreadyOpen,
                ..
            }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Sends a request this member cannot serve to the leader `leader` over the peer network;
/// the leader's refusal comes back as is.
async fn forward_to<Req, Resp>(
    transport: &Transport,
    leader: &Member,
    path: &str,
    request: &Req,
    deadline: tokio::time::Instant,
) -> Result<Resp, NodeError>
where
    Req: Serialize + ?Sized,
    Resp: serde::de::DeserializeOwned,
{
    let url = leader
        .peer_urls
        .first()
        .ok_or_else(|| NodeError::LeaderUnreachable("the leader has no peer URL".into()))?;
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    // The leader answers with its own outcome, an error included.
    transport
        .call::<_, Result<Resp, NodeError>>(url, path, request, Encoding::Json, remaining)
        .await
        .map_err(|error| match error {
            crate::raft::TransportError::Timeout { .. } => NodeError::Timeout,
            // The leader may just have died: look for the next one.
            crate::raft::TransportError::Unreachable { .. } => NodeError::NoLeader,
            // It died holding the request, which may yet be committed: sending it to the
            // next leader could apply it twice, so the client is told it is in doubt.
            crate::raft::TransportError::Broken { .. } => NodeError::LeaderFailed,
            other => NodeError::LeaderUnreachable(other.to_string()),
        })?
}
