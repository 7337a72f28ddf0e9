//! The Watch service's messages (`etcdserverpb.Watch`) as etcd's gateway writes them.

use serde::{Deserialize, Serialize};

use super::header::Header;
use super::kv::WireKeyValue;
use super::scalar::{
    deserialize_bool, deserialize_enum, is_zero, null_default, serialize_enum, Bytes, Int64,
    ProtoEnum,
};
use crate::v3::{Event, EventKind};

/// `etcdserverpb.WatchRequest`: one of its three requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireWatchRequest {
    /// Start a watcher.
    #[serde(deserialize_with = "null_default", alias = "createRequest")]
    pub create_request: Option<WireWatchCreateRequest>,
    /// Stop a watcher.
    #[serde(deserialize_with = "null_default", alias = "cancelRequest")]
    pub cancel_request: Option<WireWatchCancelRequest>,
    /// Ask for the stream's progress.
    #[serde(deserialize_with = "null_default", alias = "progressRequest")]
    pub progress_request: Option<serde_json::Value>,
}

/// `etcdserverpb.WatchCreateRequest.FilterType`: which events a watcher does not want.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilterType {
    /// Drop puts.
    #[default]
    NoPut,
    /// Drop deletes.
    NoDelete,
}

impl ProtoEnum for FilterType {
    const PROTO_NAME: &'static str = "etcdserverpb.WatchCreateRequest_FilterType";
    const VALUES: &'static [(Self, &'static str, i64)] =
        &[(Self::NoPut, "NOPUT", 0), (Self::NoDelete, "NODELETE", 1)];
}

/// A filter as it appears in the request's `filters` list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WireFilter(#[serde(deserialize_with = "deserialize_enum")] pub FilterType);

/// `etcdserverpb.WatchCreateRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireWatchCreateRequest {
    /// The first key.
    #[serde(deserialize_with = "null_default")]
    pub key: Bytes,
    /// As in a range.
    #[serde(deserialize_with = "null_default", alias = "rangeEnd")]
    pub range_end: Bytes,
    /// The first revision to report; 0 for what comes next.
    #[serde(deserialize_with = "null_default", alias = "startRevision")]
    pub start_revision: Int64,
    /// Send progress notifications while nothing happens.
    #[serde(deserialize_with = "deserialize_bool", alias = "progressNotify")]
    pub progress_notify: bool,
    /// Event kinds to leave out.
    #[serde(deserialize_with = "null_default")]
    pub filters: Vec<WireFilter>,
    /// Send each event's previous key-value pair.
    #[serde(deserialize_with = "deserialize_bool", alias = "prevKv")]
    pub prev_kv: bool,
    /// The id the client wants, or 0 to let the server choose.
    #[serde(deserialize_with = "null_default", alias = "watchId")]
    pub watch_id: Int64,
    /// Whether the client accepts fragmented answers; answers here are never fragmented.
    #[serde(deserialize_with = "deserialize_bool")]
    pub fragment: bool,
}

/// `etcdserverpb.WatchCancelRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireWatchCancelRequest {
    /// The watcher to stop.
    #[serde(deserialize_with = "null_default", alias = "watchId")]
    pub watch_id: Int64,
}

/// `mvccpb.Event.EventType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
enum WireEventType {
    #[default]
    Put,
    Delete,
}

impl ProtoEnum for WireEventType {
    const PROTO_NAME: &'static str = "mvccpb.Event_EventType";
    const VALUES: &'static [(Self, &'static str, i64)] =
        &[(Self::Put, "PUT", 0), (Self::Delete, "DELETE", 1)];
}

/// `mvccpb.Event`.
#[derive(Debug, Clone, Serialize)]
pub struct WireEvent {
    #[serde(
        rename = "type",
        serialize_with = "serialize_enum",
        skip_serializing_if = "is_zero"
    )]
    kind: WireEventType,
    kv: WireKeyValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_kv: Option<WireKeyValue>,
}

impl WireEvent {
    /// The event, with its previous pair only if `prev_kv`.
    pub fn new(event: &Event, prev_kv: bool) -> Self {
        Self {
            kind: match event.kind {
                EventKind::Put => WireEventType::Put,
                EventKind::Delete => WireEventType::Delete,
            },
            kv: WireKeyValue::from(&event.kv),
            prev_kv: event
                .prev_kv
                .as_ref()
                .filter(|_| prev_kv)
                .map(WireKeyValue::from),
        }
    }
}

/// `etcdserverpb.WatchResponse`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WireWatchResponse {
    /// Who answers, at which revision.
    pub header: Header,
    /// The watcher this is about; -1 for a progress answer to the whole stream.
    #[serde(skip_serializing_if = "is_zero")]
    pub watch_id: Int64,
    /// Answers a create request.
    #[serde(skip_serializing_if = "is_zero")]
    pub created: bool,
    /// The watcher is gone.
    #[serde(skip_serializing_if = "is_zero")]
    pub canceled: bool,
    /// The watcher's start revision had been compacted; this is the compaction's revision.
    #[serde(skip_serializing_if = "is_zero")]
    pub compact_revision: Int64,
    /// Why the watcher was cancelled.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cancel_reason: String,
    /// The changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<WireEvent>,
}
