//! The KV service's messages (`etcdserverpb.KV`) as etcd's gateway writes them, and their
//! conversion to and from the state machine's types.

use serde::{Deserialize, Serialize};

use sinew_etcd_api::mvccpb;

use super::header::Header;
use super::scalar::{
    deserialize_bool, deserialize_enum, is_zero, null_default, Bytes, Int64, ProtoEnum,
};
use crate::v3::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue, Op,
    OpResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, SortOrder, SortTarget,
    TxnRequest, TxnResponse,
};

/// `mvccpb.KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WireKeyValue {
    #[serde(skip_serializing_if = "is_zero")]
    key: Bytes,
    #[serde(skip_serializing_if = "is_zero")]
    create_revision: Int64,
    #[serde(skip_serializing_if = "is_zero")]
    mod_revision: Int64,
    #[serde(skip_serializing_if = "is_zero")]
    version: Int64,
    #[serde(skip_serializing_if = "is_zero")]
    value: Bytes,
    #[serde(skip_serializing_if = "is_zero")]
    lease: Int64,
}

impl From<&KeyValue> for WireKeyValue {
    fn from(kv: &KeyValue) -> Self {
        Self {
            key: Bytes(kv.key.clone()),
            create_revision: Int64(kv.create_revision),
            mod_revision: Int64(kv.mod_revision),
            version: Int64(kv.version),
            value: Bytes(kv.value.clone()),
            lease: Int64(kv.lease),
        }
    }
}

impl From<&mvccpb::KeyValue> for WireKeyValue {
    fn from(kv: &mvccpb::KeyValue) -> Self {
        Self {
            key: Bytes(kv.key.clone()),
            create_revision: Int64(kv.create_revision),
            mod_revision: Int64(kv.mod_revision),
            version: Int64(kv.version),
            value: Bytes(kv.value.clone()),
            lease: Int64(kv.lease),
        }
    }
}

impl ProtoEnum for SortOrder {
    const PROTO_NAME: &'static str = "etcdserverpb.RangeRequest_SortOrder";
    const VALUES: &'static [(Self, &'static str, i64)] = &[
        (Self::None, "NONE", 0),
        (Self::Ascend, "ASCEND", 1),
        (Self::Descend, "DESCEND", 2),
    ];
}

impl ProtoEnum for SortTarget {
    const PROTO_NAME: &'static str = "etcdserverpb.RangeRequest_SortTarget";
    const VALUES: &'static [(Self, &'static str, i64)] = &[
        (Self::Key, "KEY", 0),
        (Self::Version, "VERSION", 1),
        (Self::Create, "CREATE", 2),
        (Self::Mod, "MOD", 3),
        (Self::Value, "VALUE", 4),
    ];
}

/// `etcdserverpb.RangeRequest`; field names are accepted as in the proto and in camel case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireRangeRequest {
    #[serde(deserialize_with = "null_default")]
    key: Bytes,
    #[serde(deserialize_with = "null_default", alias = "rangeEnd")]
    range_end: Bytes,
    #[serde(deserialize_with = "null_default")]
    limit: Int64,
    #[serde(deserialize_with = "null_default")]
    revision: Int64,
    #[serde(deserialize_with = "deserialize_enum", alias = "sortOrder")]
    sort_order: SortOrder,
    #[serde(deserialize_with = "deserialize_enum", alias = "sortTarget")]
    sort_target: SortTarget,
    #[serde(deserialize_with = "deserialize_bool")]
    serializable: bool,
    #[serde(deserialize_with = "deserialize_bool", alias = "keysOnly")]
    keys_only: bool,
    #[serde(deserialize_with = "deserialize_bool", alias = "countOnly")]
    count_only: bool,
    #[serde(deserialize_with = "null_default", alias = "minModRevision")]
    min_mod_revision: Int64,
    #[serde(deserialize_with = "null_default", alias = "maxModRevision")]
    max_mod_revision: Int64,
    #[serde(deserialize_with = "null_default", alias = "minCreateRevision")]
    min_create_revision: Int64,
    #[serde(deserialize_with = "null_default", alias = "maxCreateRevision")]
    max_create_revision: Int64,
}

impl WireRangeRequest {
    /// Whether the client asked for a serializable (local, possibly stale) read.
    pub fn serializable(&self) -> bool {
        self.serializable
    }

    /// The state machine's request.
    pub fn to_request(&self) -> RangeRequest {
        RangeRequest {
            key: self.key.0.clone(),
            range_end: self.range_end.0.clone(),
            limit: self.limit.0,
            revision: self.revision.0,
            sort_order: self.sort_order,
            sort_target: self.sort_target,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision.0,
            max_mod_revision: self.max_mod_revision.0,
            min_create_revision: self.min_create_revision.0,
            max_create_revision: self.max_create_revision.0,
        }
    }
}

/// `etcdserverpb.RangeResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireRangeResponse {
    header: Header,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kvs: Vec<WireKeyValue>,
    #[serde(skip_serializing_if = "is_zero")]
    more: bool,
    #[serde(skip_serializing_if = "is_zero")]
    count: Int64,
}

impl WireRangeResponse {
    /// The answer with the given header.
    pub fn new(header: Header, response: &RangeResponse) -> Self {
        Self {
            header,
            kvs: response.kvs.iter().map(WireKeyValue::from).collect(),
            more: response.more,
            count: Int64(response.count),
        }
    }
}

/// `etcdserverpb.PutRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WirePutRequest {
    #[serde(deserialize_with = "null_default")]
    key: Bytes,
    #[serde(deserialize_with = "null_default")]
    value: Bytes,
    #[serde(deserialize_with = "null_default")]
    lease: Int64,
    #[serde(deserialize_with = "deserialize_bool", alias = "prevKv")]
    prev_kv: bool,
    #[serde(deserialize_with = "deserialize_bool", alias = "ignoreValue")]
    ignore_value: bool,
    #[serde(deserialize_with = "deserialize_bool", alias = "ignoreLease")]
    ignore_lease: bool,
}

impl WirePutRequest {
    /// The state machine's request.
    pub fn to_request(&self) -> PutRequest {
        PutRequest {
            key: self.key.0.clone(),
            value: self.value.0.clone(),
            lease: self.lease.0,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

/// `etcdserverpb.PutResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WirePutResponse {
    header: Header,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_kv: Option<WireKeyValue>,
}

impl WirePutResponse {
    /// The answer with the given header.
    pub fn new(header: Header, response: &PutResponse) -> Self {
        Self {
            header,
            prev_kv: response.prev_kv.as_ref().map(WireKeyValue::from),
        }
    }
}

/// `etcdserverpb.DeleteRangeRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireDeleteRangeRequest {
    #[serde(deserialize_with = "null_default")]
    key: Bytes,
    #[serde(deserialize_with = "null_default", alias = "rangeEnd")]
    range_end: Bytes,
    #[serde(deserialize_with = "deserialize_bool", alias = "prevKv")]
    prev_kv: bool,
}

impl WireDeleteRangeRequest {
    /// The state machine's request.
    pub fn to_request(&self) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: self.key.0.clone(),
            range_end: self.range_end.0.clone(),
            prev_kv: self.prev_kv,
        }
    }
}

/// `etcdserverpb.DeleteRangeResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireDeleteRangeResponse {
    header: Header,
    #[serde(skip_serializing_if = "is_zero")]
    deleted: Int64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    prev_kvs: Vec<WireKeyValue>,
}

impl WireDeleteRangeResponse {
    /// The answer with the given header.
    pub fn new(header: Header, response: &DeleteRangeResponse) -> Self {
        Self {
            header,
            deleted: Int64(response.deleted),
            prev_kvs: response.prev_kvs.iter().map(WireKeyValue::from).collect(),
        }
    }
}

/// `etcdserverpb.Compare.CompareTarget`: which field the union names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum WireCompareTarget {
    #[default]
    Version,
    Create,
    Mod,
    Value,
    Lease,
}

impl ProtoEnum for WireCompareTarget {
    const PROTO_NAME: &'static str = "etcdserverpb.Compare_CompareTarget";
    const VALUES: &'static [(Self, &'static str, i64)] = &[
        (Self::Version, "VERSION", 0),
        (Self::Create, "CREATE", 1),
        (Self::Mod, "MOD", 2),
        (Self::Value, "VALUE", 3),
        (Self::Lease, "LEASE", 4),
    ];
}

impl ProtoEnum for CompareResult {
    const PROTO_NAME: &'static str = "etcdserverpb.Compare_CompareResult";
    const VALUES: &'static [(Self, &'static str, i64)] = &[
        (Self::Equal, "EQUAL", 0),
        (Self::Greater, "GREATER", 1),
        (Self::Less, "LESS", 2),
        (Self::NotEqual, "NOT_EQUAL", 3),
    ];
}

/// `etcdserverpb.Compare`: the target says which of the union's operands counts; a missing
/// operand is zero, as in etcd.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireCompare {
    #[serde(deserialize_with = "deserialize_enum")]
    result: CompareResult,
    #[serde(deserialize_with = "deserialize_enum")]
    target: WireCompareTarget,
    #[serde(deserialize_with = "null_default")]
    key: Bytes,
    #[serde(deserialize_with = "null_default")]
    version: Int64,
    #[serde(deserialize_with = "null_default", alias = "createRevision")]
    create_revision: Int64,
    #[serde(deserialize_with = "null_default", alias = "modRevision")]
    mod_revision: Int64,
    #[serde(deserialize_with = "null_default")]
    value: Bytes,
    #[serde(deserialize_with = "null_default")]
    lease: Int64,
    #[serde(deserialize_with = "null_default", alias = "rangeEnd")]
    range_end: Bytes,
}

impl WireCompare {
    fn to_compare(&self) -> Compare {
        let target = match self.target {
            WireCompareTarget::Version => CompareTarget::Version(self.version.0),
            WireCompareTarget::Create => CompareTarget::CreateRevision(self.create_revision.0),
            WireCompareTarget::Mod => CompareTarget::ModRevision(self.mod_revision.0),
            WireCompareTarget::Value => CompareTarget::Value(self.value.0.clone()),
            WireCompareTarget::Lease => CompareTarget::Lease(self.lease.0),
        };
        Compare {
            key: self.key.0.clone(),
            range_end: self.range_end.0.clone(),
            target,
            result: self.result,
        }
    }
}

/// `etcdserverpb.RequestOp`: exactly one of its fields should be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireRequestOp {
    #[serde(deserialize_with = "null_default", alias = "requestRange")]
    request_range: Option<WireRangeRequest>,
    #[serde(deserialize_with = "null_default", alias = "requestPut")]
    request_put: Option<WirePutRequest>,
    #[serde(deserialize_with = "null_default", alias = "requestDeleteRange")]
    request_delete_range: Option<WireDeleteRangeRequest>,
    #[serde(deserialize_with = "null_default", alias = "requestTxn")]
    request_txn: Option<WireTxnRequest>,
}

impl WireRequestOp {
    /// The operation, or `None` for an operation that names none (etcd refuses those too).
    fn to_op(&self) -> Option<Op> {
        if let Some(range) = &self.request_range {
            return Some(Op::Range(range.to_request()));
        }
        if let Some(put) = &self.request_put {
            return Some(Op::Put(put.to_request()));
        }
        if let Some(delete) = &self.request_delete_range {
            return Some(Op::DeleteRange(delete.to_request()));
        }
        self.request_txn
            .as_ref()
            .and_then(|txn| txn.to_request().map(Op::Txn))
    }
}

/// `etcdserverpb.TxnRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireTxnRequest {
    #[serde(deserialize_with = "null_default")]
    compare: Vec<WireCompare>,
    #[serde(deserialize_with = "null_default")]
    success: Vec<WireRequestOp>,
    #[serde(deserialize_with = "null_default")]
    failure: Vec<WireRequestOp>,
}

impl WireTxnRequest {
    /// The state machine's request, or `None` if an operation names no request.
    pub fn to_request(&self) -> Option<TxnRequest> {
        let ops = |ops: &[WireRequestOp]| -> Option<Vec<Op>> {
            ops.iter().map(WireRequestOp::to_op).collect()
        };
        Some(TxnRequest {
            compare: self.compare.iter().map(WireCompare::to_compare).collect(),
            success: ops(&self.success)?,
            failure: ops(&self.failure)?,
        })
    }
}

/// `etcdserverpb.ResponseOp`.
#[derive(Debug, Clone, Serialize)]
enum WireResponseOp {
    #[serde(rename = "response_range")]
    Range(WireRangeResponse),
    #[serde(rename = "response_put")]
    Put(WirePutResponse),
    #[serde(rename = "response_delete_range")]
    DeleteRange(WireDeleteRangeResponse),
    #[serde(rename = "response_txn")]
    Txn(WireTxnResponse),
}

impl From<&OpResponse> for WireResponseOp {
    /// Operations inside a transaction carry only their revision in their header; a nested
    /// transaction's header is empty, as etcd's applier leaves it.
    fn from(response: &OpResponse) -> Self {
        let header = |revision| Header::revision_only(revision);
        match response {
            OpResponse::Range(range) => {
                Self::Range(WireRangeResponse::new(header(range.header.revision), range))
            }
            OpResponse::Put(put) => {
                Self::Put(WirePutResponse::new(header(put.header.revision), put))
            }
            OpResponse::DeleteRange(delete) => Self::DeleteRange(WireDeleteRangeResponse::new(
                header(delete.header.revision),
                delete,
            )),
            OpResponse::Txn(txn) => Self::Txn(WireTxnResponse::new(Header::default(), txn)),
        }
    }
}

/// `etcdserverpb.TxnResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WireTxnResponse {
    header: Header,
    #[serde(skip_serializing_if = "is_zero")]
    succeeded: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    responses: Vec<WireResponseOp>,
}

impl WireTxnResponse {
    /// The answer with the given header.
    pub fn new(header: Header, response: &TxnResponse) -> Self {
        Self {
            header,
            succeeded: response.succeeded,
            responses: response
                .responses
                .iter()
                .map(WireResponseOp::from)
                .collect(),
        }
    }
}

/// `etcdserverpb.CompactionRequest`; `physical` is accepted and has no effect (compaction is
/// applied in memory at once).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WireCompactionRequest {
    #[serde(deserialize_with = "null_default")]
    revision: Int64,
    #[serde(deserialize_with = "deserialize_bool")]
    physical: bool,
}

impl WireCompactionRequest {
    /// The revision to compact at.
    pub fn revision(&self) -> i64 {
        self.revision.0
    }
}

/// A response that is only a header (`CompactionResponse`, `LeaseRevokeResponse`).
#[derive(Debug, Clone, Serialize)]
pub struct WireHeaderOnly {
    header: Header,
}

impl WireHeaderOnly {
    /// The answer with the given header.
    pub fn new(header: Header) -> Self {
        Self { header }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_request_reads_names_numbers_aliases_and_nulls() {
        let wire: WireRangeRequest = serde_json::from_str(
            r#"{"key":"YQ==","rangeEnd":"Yg==","limit":"2","sort_order":"DESCEND",
                "sort_target":3,"keys_only":true,"revision":null,"serializable":true}"#,
        )
        .unwrap();
        let request = wire.to_request();
        assert_eq!(
            (request.key, request.range_end),
            (b"a".to_vec(), b"b".to_vec())
        );
        assert_eq!(request.limit, 2);
        assert_eq!(request.sort_order, SortOrder::Descend);
        assert_eq!(request.sort_target, SortTarget::Mod);
        assert!(request.keys_only && wire.serializable());
        let error = serde_json::from_str::<WireRangeRequest>(r#"{"sort_order":"BOGUS"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "unknown value \"BOGUS\" for enum etcdserverpb.RangeRequest_SortOrder"
            ),
            "{error}"
        );
    }

    #[test]
    fn key_values_leave_zero_fields_out() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: Vec::new(),
            lease: 0,
        };
        assert_eq!(
            serde_json::to_string(&WireKeyValue::from(&kv)).unwrap(),
            r#"{"key":"aw==","create_revision":"2","mod_revision":"2","version":"1"}"#
        );
    }

    #[test]
    fn compare_uses_the_operand_its_target_names() {
        let wire: WireCompare = serde_json::from_str(
            r#"{"key":"YQ==","target":"MOD","result":"NOT_EQUAL","mod_revision":"5","version":9}"#,
        )
        .unwrap();
        let compare = wire.to_compare();
        assert_eq!(compare.target, CompareTarget::ModRevision(5));
        assert_eq!(compare.result, CompareResult::NotEqual);
        let empty: WireRequestOp = serde_json::from_str("{}").unwrap();
        assert!(empty.to_op().is_none());
    }
}
