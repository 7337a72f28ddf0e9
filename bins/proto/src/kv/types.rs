//! The requests and answers of etcd's v3 JSON gateway, with its field names, for clients.

use serde::{Deserialize, Serialize};

use super::wire::{self, is_zero};

/// Describes the cluster and the store at the time of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseHeader {
    /// The cluster's id.
    #[serde(with = "wire::uint64", skip_serializing_if = "is_zero")]
    pub cluster_id: u64,
    /// The id of the member that answered.
    #[serde(with = "wire::uint64", skip_serializing_if = "is_zero")]
    pub member_id: u64,
    /// The store's revision.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub revision: i64,
    /// The Raft term.
    #[serde(with = "wire::uint64", skip_serializing_if = "is_zero")]
    pub raft_term: u64,
}

/// One version of a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<u8>,
    /// The revision that created it.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub create_revision: i64,
    /// The revision of its last change.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub mod_revision: i64,
    /// Puts since creation.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub version: i64,
    /// The value.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<u8>,
    /// Its lease, or 0.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub lease: i64,
}

/// Result order of a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortOrder {
    /// Key order.
    #[default]
    None,
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// Sort field of a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// `/v3/kv/range`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RangeRequest {
    /// The first key.
    #[serde(with = "wire::bytes")]
    pub key: Vec<u8>,
    /// The end of the range (exclusive); `"\0"` for every key from `key` on.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    /// At most this many keys (0: all).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub limit: i64,
    /// Read at this revision (0: now).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub revision: i64,
    /// Result order.
    #[serde(skip_serializing_if = "is_zero")]
    pub sort_order: SortOrder,
    /// Sort field.
    #[serde(skip_serializing_if = "is_zero")]
    pub sort_target: SortTarget,
    /// Read what this member has applied instead of a linearizable read.
    #[serde(skip_serializing_if = "is_zero")]
    pub serializable: bool,
    /// Leave values out.
    #[serde(skip_serializing_if = "is_zero")]
    pub keys_only: bool,
    /// Only count.
    #[serde(skip_serializing_if = "is_zero")]
    pub count_only: bool,
    /// Leave out keys modified before this revision (0: no bound).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub min_mod_revision: i64,
    /// Leave out keys modified after this revision (0: no bound).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub max_mod_revision: i64,
    /// Leave out keys created before this revision (0: no bound).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub min_create_revision: i64,
    /// Leave out keys created after this revision (0: no bound).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub max_create_revision: i64,
}

/// The answer to a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RangeResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The pairs.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit held back pairs.
    pub more: bool,
    /// How many keys the range holds.
    #[serde(with = "wire::int64")]
    pub count: i64,
}

/// `/v3/kv/put`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PutRequest {
    /// The key.
    #[serde(with = "wire::bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<u8>,
    /// A lease to attach the key to.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub lease: i64,
    /// Return the previous pair.
    #[serde(skip_serializing_if = "is_zero")]
    pub prev_kv: bool,
    /// Keep the current value.
    #[serde(skip_serializing_if = "is_zero")]
    pub ignore_value: bool,
    /// Keep the current lease.
    #[serde(skip_serializing_if = "is_zero")]
    pub ignore_lease: bool,
}

/// The answer to a put.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PutResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The previous pair, if asked for.
    pub prev_kv: Option<KeyValue>,
}

/// `/v3/kv/deleterange`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteRangeRequest {
    /// The first key.
    #[serde(with = "wire::bytes")]
    pub key: Vec<u8>,
    /// As in a range.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    /// Return the deleted pairs.
    #[serde(skip_serializing_if = "is_zero")]
    pub prev_kv: bool,
}

/// The answer to a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteRangeResponse {
    /// Header.
    pub header: ResponseHeader,
    /// How many keys were deleted.
    #[serde(with = "wire::int64")]
    pub deleted: i64,
    /// The deleted pairs, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a comparison compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompareTarget {
    /// The version.
    #[default]
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
    /// The lease.
    Lease,
}

/// How a comparison compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompareResult {
    /// Equal.
    #[default]
    Equal,
    /// Greater.
    Greater,
    /// Less.
    Less,
    /// Not equal.
    NotEqual,
}

/// One condition of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Compare {
    /// How.
    pub result: CompareResult,
    /// What.
    pub target: CompareTarget,
    /// The key.
    #[serde(with = "wire::bytes")]
    pub key: Vec<u8>,
    /// For a range of keys, its end.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    /// With `target` VERSION.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub version: i64,
    /// With `target` CREATE.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub create_revision: i64,
    /// With `target` MOD.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub mod_revision: i64,
    /// With `target` VALUE.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<u8>,
    /// With `target` LEASE.
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub lease: i64,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOp {
    /// A read.
    RequestRange(RangeRequest),
    /// A put.
    RequestPut(PutRequest),
    /// A delete.
    RequestDeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    RequestTxn(TxnRequest),
}

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseOp {
    /// A read's.
    ResponseRange(RangeResponse),
    /// A put's.
    ResponsePut(PutResponse),
    /// A delete's.
    ResponseDeleteRange(DeleteRangeResponse),
    /// A nested transaction's.
    ResponseTxn(TxnResponse),
}

/// `/v3/kv/txn`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TxnRequest {
    /// Conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<Compare>,
    /// Run if every condition holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub success: Vec<RequestOp>,
    /// Run otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure: Vec<RequestOp>,
}

/// The answer to a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TxnResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Whether `success` ran.
    pub succeeded: bool,
    /// One answer per operation.
    pub responses: Vec<ResponseOp>,
}

/// `/v3/kv/compaction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompactionRequest {
    /// Drop history below this revision.
    #[serde(with = "wire::int64")]
    pub revision: i64,
    /// Wait until the compaction is physically applied.
    #[serde(skip_serializing_if = "is_zero")]
    pub physical: bool,
}

/// An answer that carries only a header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeaderOnly {
    /// Header.
    pub header: ResponseHeader,
}

/// `/v3/lease/grant`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseGrantRequest {
    /// Time to live in seconds.
    #[serde(rename = "TTL", with = "wire::int64")]
    pub ttl: i64,
    /// A chosen id, or 0.
    #[serde(rename = "ID", with = "wire::int64", skip_serializing_if = "is_zero")]
    pub id: i64,
}

/// The answer to a grant, a keep-alive or a time-to-live query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The lease.
    #[serde(rename = "ID", with = "wire::int64")]
    pub id: i64,
    /// Its (remaining) time to live; -1 from a time-to-live query, 0 from a keep-alive, for
    /// a lease that does not exist.
    #[serde(rename = "TTL", with = "wire::int64")]
    pub ttl: i64,
    /// The TTL it was granted with (time-to-live queries).
    #[serde(rename = "grantedTTL", with = "wire::int64")]
    pub granted_ttl: i64,
    /// Its keys (time-to-live queries with `keys`).
    #[serde(deserialize_with = "keys")]
    pub keys: Vec<Vec<u8>>,
    /// A refusal, as text.
    pub error: String,
}

fn keys<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<u8>>, D::Error> {
    #[derive(Deserialize)]
    struct Key(#[serde(with = "wire::bytes")] Vec<u8>);
    let keys: Vec<Key> = Deserialize::deserialize(deserializer)?;
    Ok(keys.into_iter().map(|Key(key)| key).collect())
}

/// `/v3/lease/revoke`, `/v3/lease/keepalive`, `/v3/lease/timetolive`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseIdRequest {
    /// The lease.
    #[serde(rename = "ID", with = "wire::int64")]
    pub id: i64,
    /// With time-to-live: list the lease's keys too.
    #[serde(skip_serializing_if = "is_zero")]
    pub keys: bool,
}

/// A lease in a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseStatus {
    /// The lease.
    #[serde(rename = "ID", with = "wire::int64")]
    pub id: i64,
}

/// The answer to `/v3/lease/leases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseLeasesResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Every lease.
    pub leases: Vec<LeaseStatus>,
}

/// A cluster member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Its id.
    #[serde(rename = "ID", with = "wire::uint64")]
    pub id: u64,
    /// Its name; empty until it started.
    pub name: String,
    /// Where peers reach it.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Where clients reach it.
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    /// Whether it is a learner.
    #[serde(rename = "isLearner", skip_serializing_if = "is_zero")]
    pub is_learner: bool,
}

/// `/v3/cluster/member/add`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberAddRequest {
    /// Where the new member will listen for peers.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Add it as a learner.
    #[serde(rename = "isLearner", skip_serializing_if = "is_zero")]
    pub is_learner: bool,
}

/// `/v3/cluster/member/remove` and `/promote`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberIdRequest {
    /// The member.
    #[serde(rename = "ID", with = "wire::uint64")]
    pub id: u64,
}

/// The answer to a member listing or change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The member added (add only).
    pub member: Option<Member>,
    /// The members.
    pub members: Vec<Member>,
}

/// The answer to `/v3/maintenance/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Server version.
    pub version: String,
    /// Size of the store, in bytes.
    #[serde(rename = "dbSize", with = "wire::int64")]
    pub db_size: i64,
    /// The leader's id.
    #[serde(with = "wire::uint64")]
    pub leader: u64,
    /// Last index in the member's log.
    #[serde(rename = "raftIndex", with = "wire::uint64")]
    pub raft_index: u64,
    /// Raft term.
    #[serde(rename = "raftTerm", with = "wire::uint64")]
    pub raft_term: u64,
    /// Last applied index.
    #[serde(rename = "raftAppliedIndex", with = "wire::uint64")]
    pub raft_applied_index: u64,
    /// Alarms and errors.
    pub errors: Vec<String>,
    /// Whether this member is a learner.
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
}

/// What a watch event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A put (proto3 leaves this zero value out, hence the default).
    #[default]
    Put,
    /// A delete.
    Delete,
}

/// One change a watch reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Put or delete.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The pair after the change (only the key and revision for a delete).
    pub kv: KeyValue,
    /// The pair before, if the watch asked for it.
    pub prev_kv: Option<KeyValue>,
}

/// Starts a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchCreateRequest {
    /// The first key.
    #[serde(with = "wire::bytes")]
    pub key: Vec<u8>,
    /// As in a range.
    #[serde(with = "wire::bytes", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    /// Report changes from this revision on (0: from now).
    #[serde(with = "wire::int64", skip_serializing_if = "is_zero")]
    pub start_revision: i64,
    /// Ask for periodic progress reports.
    #[serde(skip_serializing_if = "is_zero")]
    pub progress_notify: bool,
    /// Include the previous pair.
    #[serde(skip_serializing_if = "is_zero")]
    pub prev_kv: bool,
}

/// `/v3/watch` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Start a watch.
    pub create_request: WatchCreateRequest,
}

/// One message of a watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchResponse {
    /// Header (its revision is the store's when the message was sent).
    pub header: ResponseHeader,
    /// The watch.
    #[serde(with = "wire::int64")]
    pub watch_id: i64,
    /// The watch was just created.
    pub created: bool,
    /// The watch was cancelled.
    pub canceled: bool,
    /// Set when the start revision was compacted: the oldest revision still available.
    #[serde(with = "wire::int64")]
    pub compact_revision: i64,
    /// Why the watch was cancelled.
    pub cancel_reason: String,
    /// The changes.
    pub events: Vec<Event>,
}

/// A streamed message: a result or an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StreamMessage<T> {
    /// The message.
    pub result: Option<T>,
    /// A refusal.
    pub error: Option<GatewayError>,
}

/// etcd's error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayError {
    /// The error text.
    pub error: String,
    /// The same, as gRPC's message.
    pub message: String,
    /// The gRPC status code.
    pub code: i32,
}

/// One message of `/v3/maintenance/snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotChunk {
    /// Header.
    pub header: ResponseHeader,
    /// Bytes still to come after this chunk.
    #[serde(with = "wire::uint64")]
    pub remaining_bytes: u64,
    /// This chunk.
    #[serde(with = "wire::bytes")]
    pub blob: Vec<u8>,
}
