//! The v3 gateway's [`Backend`] on a node: each call maps onto one node operation, and the
//! node's refusals onto etcd's errors.

use crate::alarm::{Alarm, AlarmRequest};
use crate::gateway::{
    Backend, BackendError, LeaseKeepAlive, LeaseList, LeaseTimeToLive, Member, MemberAdded,
    NodeIdentity, StateSnapshot, StatusResponse, WatchHistory,
};
use crate::v3::{Applied, Command, KvHash, RangeRequest, RangeResponse, Store, WatchBatch};

use super::members::{MemberChange, MemberInfo};
use super::{Node, NodeError};

impl From<NodeError> for BackendError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Kv(error) => Self::Kv(error),
            NodeError::NoLeader => Self::NoLeader,
            NodeError::Timeout => Self::Timeout,
            NodeError::LeaderFailed => Self::Unavailable(NodeError::LeaderFailed.to_string()),
            NodeError::Stopped => Self::Stopped,
            NodeError::MemberNotFound => Self::MemberNotFound,
            NodeError::PeerUrlExists => Self::PeerUrlExists,
            NodeError::NotLearner => Self::MemberNotLearner,
            NodeError::NotLeader => Self::NotLeader,
            NodeError::BadLeaderTransferee => Self::BadLeaderTransferee,
            NodeError::LeaderTransferTimeout => Self::LeaderTransferTimeout,
            NodeError::LearnerNotReady => Self::LearnerNotReady,
            NodeError::NotEnoughMembers => Self::NotEnoughStartedMembers,
            NodeError::MembershipBusy => {
                Self::Unavailable("etcdserver: membership change in progress, retry".into())
            }
            NodeError::Storage(reason) => Self::Unavailable(format!("etcdserver: {reason}")),
            NodeError::BadRequest(reason) => Self::Unavailable(format!("etcdserver: {reason}")),
            NodeError::LeaderUnreachable(reason) => {
                Self::Unavailable(format!("etcdserver: leader unreachable: {reason}"))
            }
        }
    }
}

impl From<MemberInfo> for Member {
    fn from(member: MemberInfo) -> Self {
        Self {
            id: member.id,
            name: member.name,
            peer_ur_ls: member.peer_urls,
            client_ur_ls: member.client_urls,
            is_learner: member.is_learner,
        }
    }
}

fn members(list: Vec<MemberInfo>) -> Vec<Member> {
    list.into_iter().map(Member::from).collect()
}

impl Backend for Node {
    fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            cluster_id: self.cluster_id(),
            member_id: self.id(),
            raft_term: self.raft_term(),
        }
    }

    fn has_leader(&self) -> bool {
        self.leader().is_some()
    }

    async fn propose(&self, command: Command) -> Result<Applied, BackendError> {
        Ok(Node::propose(self, command).await?)
    }

    async fn range(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, BackendError> {
        Ok(Node::range(self, &request, serializable).await?)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<WatchBatch> {
        self.machine().subscribe()
    }

    async fn watch_history(
        &self,
        start: i64,
        key: Vec<u8>,
        range_end: Vec<u8>,
    ) -> Result<WatchHistory, BackendError> {
        Ok(self
            .machine()
            .read(|store| WatchHistory::from_store(store, start, &key, &range_end)))
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAlive, BackendError> {
        let ttl = self.lease_keepalive(id).await?;
        Ok(LeaseKeepAlive {
            revision: self.machine().read(Store::revision),
            // etcd answers a keep-alive for an unknown lease with a TTL of 0.
            ttl: ttl.unwrap_or(0),
        })
    }

    async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLive, BackendError> {
        let remaining = self.lease_remaining(id).await?;
        // The remaining time is the leader's; the attached keys must be at least as new as
        // the leader's answer, so a follower applies up to a confirmed read index first.
        self.read_barrier().await?;
        let (revision, info) = self
            .machine()
            .read(|store| (store.revision(), store.lease_info(id)));
        Ok(match (remaining, info) {
            (Some(ttl), Some(info)) => LeaseTimeToLive {
                revision,
                ttl,
                granted_ttl: info.granted_ttl,
                keys: if keys { info.keys } else { Vec::new() },
            },
            // etcd answers a query for an unknown lease with a TTL of -1.
            _ => LeaseTimeToLive {
                revision,
                ttl: -1,
                ..LeaseTimeToLive::default()
            },
        })
    }

    async fn leases(&self) -> Result<LeaseList, BackendError> {
        self.read_barrier().await?;
        Ok(self.machine().read(|store| LeaseList {
            revision: store.revision(),
            ids: store.leases().iter().map(|lease| lease.id).collect(),
        }))
    }

    async fn member_list(&self) -> Result<Vec<Member>, BackendError> {
        self.read_barrier().await?;
        Ok(members(self.members()))
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MemberAdded, BackendError> {
        let changed = self
            .change_members(MemberChange::Add {
                peer_urls,
                is_learner,
            })
            .await?;
        let member = changed.member.ok_or(BackendError::MemberNotFound)?;
        Ok(MemberAdded {
            member: member.into(),
            members: members(changed.members),
        })
    }

    async fn member_remove(&self, id: u64) -> Result<Vec<Member>, BackendError> {
        let changed = self.change_members(MemberChange::Remove { id }).await?;
        Ok(members(changed.members))
    }

    async fn member_promote(&self, id: u64) -> Result<Vec<Member>, BackendError> {
        let changed = self.change_members(MemberChange::Promote { id }).await?;
        Ok(members(changed.members))
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, BackendError> {
        let changed = self.update_peer_urls(id, peer_urls).await?;
        Ok(members(changed.members))
    }

    async fn hash_kv(&self, revision: i64) -> Result<KvHash, BackendError> {
        Ok(self.machine().read(|store| store.hash_kv(revision))?)
    }

    async fn status(&self) -> Result<StatusResponse, BackendError> {
        Ok(Node::status(self))
    }

    async fn alarm(&self, request: AlarmRequest) -> Result<Vec<Alarm>, BackendError> {
        Ok(Node::alarm(self, request).await?)
    }

    async fn move_leader(&self, target: u64) -> Result<i64, BackendError> {
        Ok(Node::move_leader(self, target).await?)
    }

    async fn snapshot(&self) -> Result<StateSnapshot, BackendError> {
        self.read_barrier().await?;
        let (revision, data) = self
            .machine()
            .state()
            .await
            .map_err(|error| BackendError::Unavailable(format!("etcdserver: {error}")))?;
        Ok(StateSnapshot { revision, data })
    }
}
