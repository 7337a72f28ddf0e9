//! Key-value pairs and change events, as etcd's `mvccpb` defines them.

use serde::{Deserialize, Serialize};

/// One version of a key, as ranges return it and events carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    /// The key; never empty for a live key.
    #[serde(with = "crate::base64_bytes")]
    pub key: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: i64,
    /// The revision of the key's last change.
    pub mod_revision: i64,
    /// The number of puts since the key was created; 1 right after creation.
    pub version: i64,
    /// The value.
    #[serde(with = "crate::base64_bytes")]
    pub value: Vec<u8>,
    /// The lease the key is attached to, or 0.
    pub lease: i64,
}

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// The key was created or given a new value.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key, as a watcher receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the new key-value pair; for a delete, only the key and, as
    /// `mod_revision`, the revision of the deletion (as etcd sends it).
    pub kv: KeyValue,
    /// The key-value pair before this change, when the key existed and that version has not
    /// been compacted away.
    pub prev_kv: Option<KeyValue>,
}
