//! The messages of etcd's v3 API, sent and received as etcd's JSON gateway writes them: the
//! protobuf types generated from etcd's `.proto` files (`sinew_etcd_api`), the one model
//! kvd's gRPC services, its JSON gateway and this client share, and the gateway's own
//! envelopes for streams and errors.

use serde::Deserialize;

pub use sinew_etcd_api::etcdserverpb::alarm_request::AlarmAction;
pub use sinew_etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
pub use sinew_etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
pub use sinew_etcd_api::etcdserverpb::watch_create_request::FilterType;
pub use sinew_etcd_api::etcdserverpb::{request_op, response_op, watch_request};
pub use sinew_etcd_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, Member, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MoveLeaderRequest, MoveLeaderResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse, TxnRequest, TxnResponse, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
pub use sinew_etcd_api::mvccpb::event::EventType;
pub use sinew_etcd_api::mvccpb::{Event, KeyValue};
pub use sinew_etcd_api::AtRevision;

/// One message of a streamed answer: a result or an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StreamMessage<T> {
    /// The message.
    pub result: Option<T>,
    /// A refusal, which ends the stream.
    pub error: Option<GatewayError>,
}

/// etcd's error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GatewayError {
    /// The error text.
    pub error: String,
    /// The same, as gRPC's message.
    pub message: String,
    /// The gRPC status code.
    pub code: i32,
}
