//! Membership: listing members, and adding (as a learner, then a voter), promoting,
//! removing and describing them through Raft's joint consensus. Changes run on the leader;
//! other members forward them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::peer_paths;
use super::{member_id, Node, NodeError};
use crate::raft::{Member, NodeId};

/// How far behind the leader's log a learner may be and still be promoted.
const PROMOTION_LAG: u64 = 1000;

/// How long a membership change waits before it tries again behind one still in progress.
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(50);

/// A member as the cluster API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// Its name; empty until it started and published it.
    pub name: String,
    /// Where members reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it started.
    pub client_urls: Vec<String>,
    /// Whether it only follows the log, without a vote.
    pub is_learner: bool,
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    /// Add a member at these peer URLs: a learner, promoted to voter once it caught up
    /// unless `is_learner` asks it to stay one.
    Add {
        /// Where it will listen for peers.
        peer_urls: Vec<String>,
        /// Keep it a learner.
        is_learner: bool,
    },
    /// Remove a member.
    Remove {
        /// Its id.
        id: NodeId,
    },
    /// Make a learner a voter.
    Promote {
        /// Its id.
        id: NodeId,
    },
    /// Record a started member's name and client URLs.
    Publish {
        /// Its id.
        id: NodeId,
        /// What it says of itself.
        member: Member,
    },
}

/// The answer to a membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChanged {
    /// The member added, promoted or removed.
    pub member: Option<MemberInfo>,
    /// The members after the change.
    pub members: Vec<MemberInfo>,
}

impl Node {
    /// The members, as this member last applied them, by id (etcd's order).
    pub fn members(&self) -> Vec<MemberInfo> {
        let membership = self.inner.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut members: Vec<MemberInfo> = membership
            .nodes()
            .map(|(id, member)| MemberInfo {
                id: *id,
                name: member.name.clone(),
                peer_urls: member.peer_urls.clone(),
                client_urls: member.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect();
        members.sort_by_key(|member| member.id);
        members
    }

    /// Applies a membership change on the leader.
    pub async fn change_members(&self, change: MemberChange) -> Result<MemberChanged, NodeError> {
        self.on_leader(peer_paths::MEMBER, &change, |node| {
            node.change_members_here(change.clone())
        })
        .await
    }

    /// Changes a member's peer URLs (etcd's member update), keeping its name and client
    /// URLs.
    pub async fn update_peer_urls(
        &self,
        id: NodeId,
        peer_urls: Vec<String>,
    ) -> Result<MemberChanged, NodeError> {
        let current = self
            .members()
            .into_iter()
            .find(|member| member.id == id)
            .ok_or(NodeError::MemberNotFound)?;
        let member = crate::raft::Member {
            name: current.name,
            peer_urls,
            client_urls: current.client_urls,
        };
        self.change_members(MemberChange::Publish { id, member })
            .await
    }

    /// Applies a membership change; this member must lead. A change that finds another one
    /// still being committed (a learner's promotion, a member publishing its name) waits for
    /// it, up to the request timeout, rather than failing a request that is fine.
    pub(super) async fn change_members_here(
        self,
        change: MemberChange,
    ) -> Result<MemberChanged, NodeError> {
        let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
        loop {
            match self.clone().change_members_once(change.clone()).await {
                Err(NodeError::MembershipBusy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(MEMBERSHIP_RETRY).await;
                }
                result => return result,
            }
        }
    }

    async fn change_members_once(self, change: MemberChange) -> Result<MemberChanged, NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NoLeader);
        }
        let before = self.members();
        let find = |id: NodeId| before.iter().find(|member| member.id == id).cloned();
        let raft = &self.inner.raft;
        let subject = match change {
            MemberChange::Add {
                peer_urls,
                is_learner,
            } => {
                if peer_urls.is_empty() {
                    return Err(NodeError::BadRequest(
                        "member peer urls not provided".into(),
                    ));
                }
                let taken = before
                    .iter()
                    .any(|member| member.peer_urls.iter().any(|url| peer_urls.contains(url)));
                if taken {
                    return Err(NodeError::PeerUrlExists);
                }
                let id = member_id(&peer_urls, &self.inner.config.initial_cluster_token);
                let member = Member {
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                };
                membership_result(raft.add_learner(id, member, false).await)?;
                if !is_learner {
                    tokio::spawn(self.clone().promote_when_caught_up(id));
                }
                id
            }
            MemberChange::Remove { id } => {
                let member = find(id).ok_or(NodeError::MemberNotFound)?;
                let change = if member.is_learner {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    if before.iter().filter(|member| !member.is_learner).count() == 1 {
                        return Err(NodeError::NotEnoughMembers);
                    }
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                };
                membership_result(raft.change_membership(change, false).await)?;
                return Ok(MemberChanged {
                    member: Some(member),
                    members: self.members(),
                });
            }
            MemberChange::Promote { id } => {
                self.promote(id, &before).await?;
                id
            }
            MemberChange::Publish { id, member } => {
                find(id).ok_or(NodeError::MemberNotFound)?;
                membership_result(
                    raft.change_membership(
                        ChangeMembers::SetNodes(BTreeMap::from([(id, member)])),
                        true,
                    )
                    .await,
                )?;
                id
            }
        };
        let members = self.members();
        Ok(MemberChanged {
            member: members.iter().find(|member| member.id == subject).cloned(),
            members,
        })
    }

    /// Makes learner `id` a voter if its log is caught up.
    async fn promote(&self, id: NodeId, members: &[MemberInfo]) -> Result<(), NodeError> {
        let member = members
            .iter()
            .find(|member| member.id == id)
            .ok_or(NodeError::MemberNotFound)?;
        if !member.is_learner {
            return Err(NodeError::NotLearner);
        }
        if !self.caught_up(id) {
            return Err(NodeError::LearnerNotReady);
        }
        let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        membership_result(self.inner.raft.change_membership(voters, true).await).map(|_| ())
    }

    /// Whether a learner's log is close enough to the leader's to vote.
    fn caught_up(&self, id: NodeId) -> bool {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let last = metrics.last_log_index.unwrap_or(0);
        metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).copied().flatten())
            .is_some_and(|matched| matched.index + PROMOTION_LAG >= last)
    }

    /// Promotes a learner added as a voter once it caught up, as long as this member leads
    /// and the learner is still in the cluster.
    async fn promote_when_caught_up(self, id: NodeId) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = self.stopped() => return,
            }
            let still_learner = self
                .members()
                .iter()
                .any(|member| member.id == id && member.is_learner);
            if !still_learner || !self.is_leader() {
                return;
            }
            if !self.caught_up(id) {
                continue;
            }
            match self.promote(id, &self.members()).await {
                Ok(_) => {
                    tracing::info!(
                        member = format!("{id:x}"),
                        "learner caught up and now votes"
                    );
                    return;
                }
                Err(error) => tracing::debug!(%error, "promotion postponed"),
            }
        }
    }

    /// Makes sure the membership records this member's name and client URLs, as etcd
    /// members publish their attributes once they start.
    pub(super) async fn publish_self(self) {
        let me = Member {
            name: self.inner.config.name.clone(),
            peer_urls: self.inner.config.advertise_peer_urls.clone(),
            client_urls: self.inner.config.advertise_client_urls.clone(),
        };
        loop {
            let recorded = self
                .inner
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&self.inner.id)
                .cloned();
            match recorded {
                Some(member) if member == me => {
                    self.inner.published.send_replace(true);
                    return;
                }
                Some(_) => {
                    let change = MemberChange::Publish {
                        id: self.inner.id,
                        member: me.clone(),
                    };
                    if let Err(error) = self.change_members(change).await {
                        tracing::debug!(%error, "cannot publish this member's attributes yet");
                    }
                }
                None => {}
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = self.stopped() => return,
            }
        }
    }
}

fn membership_result<T>(
    result: Result<T, RaftError<NodeId, ClientWriteError<NodeId, Member>>>,
) -> Result<T, NodeError> {
    result.map_err(|error| match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => NodeError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(_),
        )) => NodeError::MembershipBusy,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(other)) => {
            NodeError::BadRequest(other.to_string())
        }
        RaftError::Fatal(fatal) => super::error::fatal(&fatal),
    })
}
