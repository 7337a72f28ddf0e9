//! The Cluster and Maintenance services' messages as etcd's gateway writes them. Their proto
//! fields are camel case (`peerURLs`, `dbSize`), so in JSON too.

use serde::{Deserialize, Serialize};

use super::header::Header;
use sinew_etcd_api::etcdserverpb::alarm_request::AlarmAction;
use sinew_etcd_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType};

use super::scalar::{
    deserialize_bool, deserialize_enum, is_zero, null_default, serialize_enum, Bytes, Int64,
    ProtoEnum, Uint64,
};
use crate::gateway::backend::{Member, NodeStatus};

/// `etcdserverpb.Member`.
#[derive(Debug, Clone, Serialize)]
pub struct WireMember {
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: Uint64,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(rename = "peerURLs", skip_serializing_if = "Vec::is_empty")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", skip_serializing_if = "Vec::is_empty")]
    client_urls: Vec<String>,
    #[serde(rename = "isLearner", skip_serializing_if = "is_zero")]
    is_learner: bool,
}

impl From<&Member> for WireMember {
    fn from(member: &Member) -> Self {
        Self {
            id: Uint64(member.id),
            name: member.name.clone(),
            peer_urls: member.peer_urls.clone(),
            client_urls: member.client_urls.clone(),
            is_learner: member.is_learner,
        }
    }
}

/// `etcdserverpb.MemberAddRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireMemberAddRequest {
    #[serde(
        rename = "peerURLs",
        alias = "peer_urls",
        deserialize_with = "null_default"
    )]
    peer_urls: Vec<String>,
    #[serde(
        rename = "isLearner",
        alias = "is_learner",
        deserialize_with = "deserialize_bool"
    )]
    is_learner: bool,
}

impl WireMemberAddRequest {
    /// The new member's peer URLs.
    pub fn peer_urls(&self) -> &[String] {
        &self.peer_urls
    }

    /// Whether the new member joins as a learner.
    pub fn is_learner(&self) -> bool {
        self.is_learner
    }
}

/// A request naming one member (`MemberRemoveRequest`, `MemberPromoteRequest`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireMemberId {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    id: Uint64,
}

impl WireMemberId {
    /// The member id.
    pub fn id(&self) -> u64 {
        self.id.0
    }
}

/// `etcdserverpb.MoveLeaderRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireMoveLeaderRequest {
    #[serde(rename = "targetID", deserialize_with = "null_default")]
    target_id: Uint64,
}

impl WireMoveLeaderRequest {
    /// The member to hand the lead to.
    pub fn target_id(&self) -> u64 {
        self.target_id.0
    }
}

/// The answer to a member list, remove or promote: every member.
#[derive(Debug, Clone, Serialize)]
pub struct WireMembersResponse {
    header: Header,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<WireMember>,
}

impl WireMembersResponse {
    /// The answer listing `members`.
    pub fn new(header: Header, members: &[Member]) -> Self {
        Self {
            header,
            members: members.iter().map(WireMember::from).collect(),
        }
    }
}

/// `etcdserverpb.MemberAddResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireMemberAddResponse {
    header: Header,
    member: WireMember,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<WireMember>,
}

impl WireMemberAddResponse {
    /// The answer for the added `member`.
    pub fn new(header: Header, member: &Member, members: &[Member]) -> Self {
        Self {
            header,
            member: WireMember::from(member),
            members: members.iter().map(WireMember::from).collect(),
        }
    }
}

/// `etcdserverpb.StatusResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireStatusResponse {
    header: Header,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(rename = "dbSize", skip_serializing_if = "is_zero")]
    db_size: Int64,
    #[serde(skip_serializing_if = "is_zero")]
    leader: Uint64,
    #[serde(rename = "raftIndex", skip_serializing_if = "is_zero")]
    raft_index: Uint64,
    #[serde(rename = "raftTerm", skip_serializing_if = "is_zero")]
    raft_term: Uint64,
    #[serde(rename = "raftAppliedIndex", skip_serializing_if = "is_zero")]
    raft_applied_index: Uint64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
    #[serde(rename = "dbSizeInUse", skip_serializing_if = "is_zero")]
    db_size_in_use: Int64,
    #[serde(rename = "isLearner", skip_serializing_if = "is_zero")]
    is_learner: bool,
}

impl WireStatusResponse {
    /// The answer describing `status`.
    pub fn new(header: Header, status: &NodeStatus) -> Self {
        Self {
            header,
            version: status.version.clone(),
            db_size: Int64(status.db_size),
            leader: Uint64(status.leader),
            raft_index: Uint64(status.raft_index),
            raft_term: Uint64(status.raft_term),
            raft_applied_index: Uint64(status.raft_applied_index),
            errors: status.errors.clone(),
            db_size_in_use: Int64(status.db_size_in_use),
            is_learner: status.is_learner,
        }
    }
}

/// `etcdserverpb.SnapshotResponse`: one chunk of a member's state.
#[derive(Debug, Clone, Serialize)]
pub struct WireSnapshotResponse {
    header: Header,
    #[serde(skip_serializing_if = "is_zero")]
    remaining_bytes: Uint64,
    #[serde(skip_serializing_if = "is_zero")]
    blob: Bytes,
}

impl WireSnapshotResponse {
    /// A chunk, with how many bytes follow it.
    pub fn new(header: Header, remaining_bytes: u64, blob: &[u8]) -> Self {
        Self {
            header,
            remaining_bytes: Uint64(remaining_bytes),
            blob: Bytes(blob.to_vec()),
        }
    }
}

impl ProtoEnum for AlarmAction {
    const PROTO_NAME: &'static str = "etcdserverpb.AlarmRequest_AlarmAction";
    const VALUES: &'static [(Self, &'static str, i64)] = &[
        (Self::Get, "GET", 0),
        (Self::Activate, "ACTIVATE", 1),
        (Self::Deactivate, "DEACTIVATE", 2),
    ];
}

impl ProtoEnum for AlarmType {
    const PROTO_NAME: &'static str = "etcdserverpb.AlarmType";
    const VALUES: &'static [(Self, &'static str, i64)] = &[
        (Self::None, "NONE", 0),
        (Self::Nospace, "NOSPACE", 1),
        (Self::Corrupt, "CORRUPT", 2),
    ];
}

/// `etcdserverpb.AlarmRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireAlarmRequest {
    #[serde(deserialize_with = "deserialize_enum")]
    action: AlarmAction,
    #[serde(rename = "memberID", deserialize_with = "null_default")]
    member_id: Uint64,
    #[serde(deserialize_with = "deserialize_enum")]
    alarm: AlarmType,
}

impl From<WireAlarmRequest> for AlarmRequest {
    fn from(wire: WireAlarmRequest) -> Self {
        Self {
            action: wire.action.into(),
            member_id: wire.member_id.0,
            alarm: wire.alarm.into(),
        }
    }
}

/// `etcdserverpb.AlarmMember`.
#[derive(Debug, Clone, Serialize)]
struct WireAlarmMember {
    #[serde(rename = "memberID", skip_serializing_if = "is_zero")]
    member_id: Uint64,
    #[serde(serialize_with = "serialize_enum", skip_serializing_if = "is_zero")]
    alarm: AlarmType,
}

/// `etcdserverpb.AlarmResponse`, without a header, as etcd 3.4 answers it.
#[derive(Debug, Clone, Serialize)]
pub struct WireAlarmResponse {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alarms: Vec<WireAlarmMember>,
}

impl WireAlarmResponse {
    /// The answer listing `alarms`.
    pub fn new(alarms: &[AlarmMember]) -> Self {
        Self {
            alarms: alarms
                .iter()
                .map(|member| WireAlarmMember {
                    member_id: Uint64(member.member_id),
                    alarm: member.alarm(),
                })
                .collect(),
        }
    }
}
