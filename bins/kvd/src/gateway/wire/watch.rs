//! The Watch service's messages (`etcdserverpb.Watch`) as etcd's gateway writes them.

use serde::{Deserialize, Serialize};

use super::header::Header;
use super::kv::WireKeyValue;
use super::scalar::{
    deserialize_bool, deserialize_enum, is_zero, null_default, serialize_enum, Bytes, Int64,
    ProtoEnum,
};
use sinew_etcd_api::etcdserverpb::watch_create_request::FilterType as PbFilter;
use sinew_etcd_api::etcdserverpb::watch_request::RequestUnion;
use sinew_etcd_api::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use sinew_etcd_api::mvccpb::{self, event::EventType};

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

impl WireWatchRequest {
    /// The request as the watch server takes it: the first of its requests that is set.
    pub fn into_pb(self) -> WatchRequest {
        let request = if let Some(create) = self.create_request {
            RequestUnion::CreateRequest(WatchCreateRequest {
                key: create.key.0,
                range_end: create.range_end.0,
                start_revision: create.start_revision.0,
                progress_notify: create.progress_notify,
                filters: create
                    .filters
                    .iter()
                    .map(|filter| match filter.0 {
                        FilterType::NoPut => PbFilter::Noput as i32,
                        FilterType::NoDelete => PbFilter::Nodelete as i32,
                    })
                    .collect(),
                prev_kv: create.prev_kv,
                watch_id: create.watch_id.0,
                fragment: create.fragment,
            })
        } else if let Some(cancel) = self.cancel_request {
            RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: cancel.watch_id.0,
            })
        } else if self.progress_request.is_some() {
            RequestUnion::ProgressRequest(WatchProgressRequest {})
        } else {
            return WatchRequest::default();
        };
        WatchRequest {
            request_union: Some(request),
        }
    }
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

impl From<&mvccpb::Event> for WireEvent {
    fn from(event: &mvccpb::Event) -> Self {
        Self {
            kind: match event.r#type() {
                EventType::Put => WireEventType::Put,
                EventType::Delete => WireEventType::Delete,
            },
            kv: event
                .kv
                .as_ref()
                .map(WireKeyValue::from)
                .unwrap_or_default(),
            prev_kv: event.prev_kv.as_ref().map(WireKeyValue::from),
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
    /// More answers follow with the rest of these changes.
    #[serde(skip_serializing_if = "is_zero")]
    pub fragment: bool,
    /// The changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<WireEvent>,
}

impl From<&WatchResponse> for WireWatchResponse {
    fn from(response: &WatchResponse) -> Self {
        Self {
            header: response
                .header
                .as_ref()
                .map(Header::from)
                .unwrap_or_default(),
            watch_id: Int64(response.watch_id),
            created: response.created,
            canceled: response.canceled,
            compact_revision: Int64(response.compact_revision),
            cancel_reason: response.cancel_reason.clone(),
            fragment: response.fragment,
            events: response.events.iter().map(WireEvent::from).collect(),
        }
    }
}
