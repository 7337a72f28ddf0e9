//! `etcdserverpb.ResponseHeader`, which every answer starts with.

use serde::Serialize;

use sinew_etcd_api::etcdserverpb::ResponseHeader;

use super::scalar::{is_zero, Int64, Uint64};
use crate::gateway::backend::NodeIdentity;

/// The header of an answer: which cluster and member answered, at which store revision and
/// Raft term. Zero fields are left out, as etcd's gateway does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Header {
    #[serde(skip_serializing_if = "is_zero")]
    cluster_id: Uint64,
    #[serde(skip_serializing_if = "is_zero")]
    member_id: Uint64,
    #[serde(skip_serializing_if = "is_zero")]
    revision: Int64,
    #[serde(skip_serializing_if = "is_zero")]
    raft_term: Uint64,
}

impl Header {
    /// A full header: the answering node at `revision`.
    pub fn new(node: NodeIdentity, revision: i64) -> Self {
        Self {
            cluster_id: Uint64(node.cluster_id),
            member_id: Uint64(node.member_id),
            revision: Int64(revision),
            raft_term: Uint64(node.raft_term),
        }
    }

    /// A header with the revision only, as operations inside a transaction carry.
    pub fn revision_only(revision: i64) -> Self {
        Self {
            revision: Int64(revision),
            ..Self::default()
        }
    }
}

impl From<&ResponseHeader> for Header {
    fn from(header: &ResponseHeader) -> Self {
        Self {
            cluster_id: Uint64(header.cluster_id),
            member_id: Uint64(header.member_id),
            revision: Int64(header.revision),
            raft_term: Uint64(header.raft_term),
        }
    }
}
