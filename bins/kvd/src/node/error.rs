//! Why a node could not serve a request, and where a request goes that this member cannot
//! serve. [`NodeError`] is serialisable, because a follower forwards requests to the leader
//! and hands the leader's refusal back unchanged.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::raft::{Member, NodeId};
use crate::v3::KvError;

/// Why a request failed on this node or on the leader it was forwarded to.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeError {
    /// The store refused the command or the read.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// No leader was known within the request's deadline.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The leader did not commit or answer within the request's deadline.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The connection to the leader broke while it had the request: it may or may not be
    /// applied (etcd's answer when a leader fails under a request).
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    LeaderFailed,
    /// The node is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The node's storage failed; it stops serving writes.
    #[error("etcdserver: storage failure: {0}")]
    Storage(String),
    /// A membership change names an unknown member.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member with one of these peer URLs already exists.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// A promotion names a member that already votes.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// A promotion names a learner whose log is not caught up with the leader's.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// A membership change that would leave the cluster without voters.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughMembers,
    /// Another membership change is still in progress.
    #[error("etcdserver: membership change in progress, retry")]
    MembershipBusy,
    /// A request that makes no sense, with what was wrong.
    #[error("etcdserver: {0}")]
    BadRequest(String),
    /// A request only the leader serves reached a follower.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The lead cannot move to that member: it is not a voter.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// The lead did not move in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// The leader could not be reached to forward the request.
    #[error("etcdserver: leader unreachable: {0}")]
    LeaderUnreachable(String),
}

/// Where a request must go when this member cannot serve it.
#[derive(Debug, Clone)]
pub(super) enum Redirect {
    /// To this leader.
    To(Member),
    /// To a leader not known yet.
    Unknown,
    /// Nowhere: it failed.
    Failed(NodeError),
}

/// The error for openraft's fatal error: the node stopped, or its storage failed.
pub(super) fn fatal(error: &openraft::error::Fatal<NodeId>) -> NodeError {
    match error {
        openraft::error::Fatal::Stopped => NodeError::Stopped,
        other => NodeError::Storage(other.to_string()),
    }
}
