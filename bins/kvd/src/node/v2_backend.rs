//! The v2 API's [`Backend`] on a node: v2 writes go through Raft like v3 ones, reads come
//! from this member's v2 store after a read barrier when a quorum read is asked for, and
//! membership maps onto the node's.

use crate::alarm::Alarm;
use crate::v2::{
    self, Backend, LeaderInfo, LeaderStats, Member, MemberError, RaftStatus, SelfStats,
};

use super::members::MemberChange;
use super::{Node, NodeError};

impl From<NodeError> for MemberError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::MemberNotFound => Self::NotFound,
            NodeError::PeerUrlExists => Self::PeerUrlExists,
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl Backend for Node {
    async fn propose(&self, command: v2::Command) -> Result<Vec<v2::Event>, v2::Error> {
        self.propose_v2(command)
            .await
            .unwrap_or_else(|error| Err(v2::Error::raft(error.to_string())))
    }

    async fn read<R, F>(&self, linearizable: bool, read: F) -> Result<R, v2::Error>
    where
        F: FnOnce(&v2::Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        if linearizable {
            self.read_barrier()
                .await
                .map_err(|error| v2::Error::raft(error.to_string()))?;
        }
        Ok(self.machine().read_v2(read))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<v2::Event> {
        self.machine().subscribe_v2()
    }

    fn raft_status(&self) -> RaftStatus {
        let status = self.status();
        RaftStatus {
            index: status.raft_applied_index,
            term: status.raft_term,
        }
    }

    fn alarms(&self) -> Vec<Alarm> {
        self.machine().alarms()
    }

    fn cluster_id(&self) -> u64 {
        Node::cluster_id(self)
    }

    async fn members(&self) -> Result<Vec<Member>, MemberError> {
        Ok(Node::members(self)
            .into_iter()
            .map(|member| Member {
                id: member.id,
                name: member.name,
                peer_urls: member.peer_urls,
                client_urls: member.client_urls,
            })
            .collect())
    }

    async fn add_member(&self, peer_urls: Vec<String>) -> Result<Member, MemberError> {
        let changed = self
            .change_members(MemberChange::Add {
                peer_urls,
                is_learner: false,
            })
            .await?;
        let member = changed.member.ok_or(MemberError::NotFound)?;
        Ok(Member {
            id: member.id,
            name: member.name,
            peer_urls: member.peer_urls,
            client_urls: member.client_urls,
        })
    }

    async fn remove_member(&self, id: u64) -> Result<(), MemberError> {
        self.change_members(MemberChange::Remove { id }).await?;
        Ok(())
    }

    async fn update_member(&self, id: u64, peer_urls: Vec<String>) -> Result<(), MemberError> {
        self.update_peer_urls(id, peer_urls).await?;
        Ok(())
    }

    fn self_stats(&self) -> SelfStats {
        let leader = self.leader().unwrap_or(0);
        let state = if leader == self.id() {
            "StateLeader"
        } else {
            "StateFollower"
        };
        SelfStats {
            name: self.config().name.clone(),
            id: self.id(),
            state: state.to_owned(),
            start_time: self.started_at(),
            leader_info: LeaderInfo {
                leader,
                uptime: format!("{:?}", self.uptime()),
                start_time: self.started_at(),
            },
            recv_append_request_cnt: 0,
            send_append_request_cnt: 0,
        }
    }

    /// Followers by id; kvd does not time individual follower round trips, so their
    /// latency and counts stay zero.
    fn leader_stats(&self) -> Option<LeaderStats> {
        if self.leader() != Some(self.id()) {
            return None;
        }
        let followers = Node::members(self)
            .into_iter()
            .filter(|member| member.id != self.id())
            .map(|member| (format!("{:x}", member.id), v2::FollowerStats::default()))
            .collect();
        Some(LeaderStats {
            leader: self.id(),
            followers,
        })
    }
}
