//! What the v2 HTTP layer needs from the node it runs on: replicate a write, read the store
//! (linearizably when asked), hear about applied changes, and describe the cluster.

use std::future::Future;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::broadcast;

use crate::alarm::Alarm;
use crate::v2::command::Command;
use crate::v2::error::Error;
use crate::v2::node::Event;
use crate::v2::store::Store;

/// The node under the v2 API. kvd implements it over Raft; a test can implement it over a
/// single [`Store`].
pub trait Backend: Send + Sync + 'static {
    /// Replicates `command` and returns what [`Store::apply`] gave for it once committed and
    /// applied on this node. The leader may replace `command.now` with its own clock.
    /// Failures to replicate are [`crate::v2::Code::RaftInternal`] errors.
    fn propose(&self, command: Command) -> impl Future<Output = Result<Vec<Event>, Error>> + Send;

    /// Runs `read` against the store; with `linearizable`, only once this node has applied
    /// everything committed before the call (etcd's `quorum=true`).
    fn read<R, F>(
        &self,
        linearizable: bool,
        read: F,
    ) -> impl Future<Output = Result<R, Error>> + Send
    where
        F: FnOnce(&Store) -> R + Send + 'static,
        R: Send + 'static;

    /// A receiver of every event this node applies from now on, in index order (expiry
    /// events included), so that waiting watches can answer.
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// This node's Raft position, for `X-Raft-Index` and `X-Raft-Term`.
    fn raft_status(&self) -> RaftStatus;

    /// The alarms raised, as this member knows them.
    fn alarms(&self) -> Vec<Alarm>;

    /// The cluster id, for `X-Etcd-Cluster-ID`.
    fn cluster_id(&self) -> u64;

    /// The cluster's members.
    fn members(&self) -> impl Future<Output = Result<Vec<Member>, MemberError>> + Send;

    /// Adds a member known by its peer URLs (it gets its name when it starts).
    fn add_member(
        &self,
        peer_urls: Vec<String>,
    ) -> impl Future<Output = Result<Member, MemberError>> + Send;

    /// Removes a member.
    fn remove_member(&self, id: u64) -> impl Future<Output = Result<(), MemberError>> + Send;

    /// Replaces a member's peer URLs.
    fn update_member(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> impl Future<Output = Result<(), MemberError>> + Send;

    /// This node's Raft statistics (`/v2/stats/self`).
    fn self_stats(&self) -> SelfStats;

    /// The leader's view of its followers (`/v2/stats/leader`), or `None` on a follower.
    fn leader_stats(&self) -> Option<LeaderStats>;
}

/// A node's position in the Raft log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// The last applied log index.
    pub index: u64,
    /// The current term.
    pub term: u64,
}

/// A cluster member, in etcd's JSON (`id` as hex).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id.
    #[serde(with = "hex_id")]
    pub id: u64,
    /// The member's name; empty until it has started.
    pub name: String,
    /// URLs its peers reach it at.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// URLs clients reach it at.
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
}

/// Why a membership change or listing failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemberError {
    /// No member has that id.
    #[error("no such member")]
    NotFound,
    /// The id belonged to a member that was removed.
    #[error("member permanently removed")]
    Removed,
    /// Another member already uses one of the peer URLs.
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    /// The change could not be made now (no leader, no quorum, ...).
    #[error("{0}")]
    Unavailable(String),
}

/// `/v2/stats/self`, in etcd's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfStats {
    /// This member's name.
    pub name: String,
    /// This member's id.
    #[serde(with = "hex_id")]
    pub id: u64,
    /// `StateLeader`, `StateFollower` or `StateCandidate`.
    pub state: String,
    /// When this member started, RFC 3339.
    pub start_time: String,
    /// The leader as this member sees it.
    pub leader_info: LeaderInfo,
    /// Append requests received.
    pub recv_append_request_cnt: u64,
    /// Append requests sent.
    pub send_append_request_cnt: u64,
}

/// The leader part of [`SelfStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderInfo {
    /// The leader's id.
    #[serde(with = "hex_id")]
    pub leader: u64,
    /// How long it has led, as Go prints a duration (`2m23.04s`).
    pub uptime: String,
    /// When it became leader, RFC 3339.
    pub start_time: String,
}

/// `/v2/stats/leader`, in etcd's JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaderStats {
    /// The leader's id.
    #[serde(with = "hex_id")]
    pub leader: u64,
    /// Each follower's figures, by hex id.
    pub followers: std::collections::BTreeMap<String, FollowerStats>,
}

/// One follower as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FollowerStats {
    /// Round-trip latency of appends, in milliseconds.
    pub latency: Latency,
    /// Append outcomes.
    pub counts: Counts,
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// The last one.
    pub current: f64,
    /// The mean.
    pub average: f64,
    /// The standard deviation.
    pub standard_deviation: f64,
    /// The smallest.
    pub minimum: f64,
    /// The largest.
    pub maximum: f64,
}

/// Append outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Failed appends.
    pub fail: u64,
    /// Successful appends.
    pub success: u64,
}

/// Ids as etcd writes them: lower-case hex without padding.
mod hex_id {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{id:x}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16).map_err(D::Error::custom)
    }
}
