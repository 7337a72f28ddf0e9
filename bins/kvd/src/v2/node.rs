//! What the v2 API shows of keys and changes: etcd's `node` objects and events, with etcd's
//! field names and order.

use serde::{Deserialize, Serialize};

use crate::v2::time::{expiration_string, ttl_seconds};

/// A key or directory as the API shows it (etcd's `NodeExtern`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The full path, `/a/b`; empty for the root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The value of a key; `None` for directories and for deleted keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether this is a directory.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dir: bool,
    /// When the node expires, RFC 3339 in UTC, if it has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// Whole seconds left before expiry, rounded up; 0 (omitted) without a TTL.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    /// A directory's listed children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
    /// The index of the node's last change.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub modified_index: u64,
    /// The index that created the node.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub created_index: u64,
}

impl Node {
    /// Sets `expiration` and `ttl` for an expiry time (unix ms) seen at `now` (unix ms).
    pub(crate) fn with_expiry(mut self, expires_at: Option<u64>, now: u64) -> Self {
        if let Some(at) = expires_at {
            self.expiration = Some(expiration_string(at));
            self.ttl = ttl_seconds(at, now);
        }
        self
    }
}

/// What a change did (etcd's event actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// A read.
    Get,
    /// A set (`PUT` without conditions).
    Set,
    /// A create (`prevExist=false`, or `POST`).
    Create,
    /// An update (`prevExist=true`).
    Update,
    /// A delete.
    Delete,
    /// A set conditioned on `prevValue` or `prevIndex`.
    CompareAndSwap,
    /// A delete conditioned on `prevValue` or `prevIndex`.
    CompareAndDelete,
    /// A TTL ran out.
    Expire,
}

/// One change to the store, or the answer to a read (etcd's `Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The node after the change (for deletes: its key and indexes only).
    pub node: Node,
    /// The node before the change, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<Node>,
    /// The store index after the event (etcd's `X-Etcd-Index`); not part of the API body.
    #[serde(default)]
    pub etcd_index: u64,
    /// A TTL refresh: kept in history but never shown to watchers.
    #[serde(default)]
    pub refresh: bool,
}

impl Event {
    /// The index of the change: the node's modified index.
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// The JSON body etcd answers with: action, node and prevNode.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            action: self.action,
            node: &self.node,
            prev_node: self.prev_node.as_ref(),
        };
        // Strings, integers and booleans always serialise.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Whether the change removed a directory (and so everything under it).
    pub(crate) fn removed_dir(&self) -> bool {
        matches!(self.action, Action::Delete | Action::Expire)
            && self.prev_node.as_ref().is_some_and(|prev| prev.dir)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    action: Action,
    node: &'a Node,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_node: Option<&'a Node>,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}
