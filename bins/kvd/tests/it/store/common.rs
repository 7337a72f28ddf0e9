//! Small builders shared by the tests.

use sinew_etcd_api::txn as ops;
use sinew_kvd::v3::{
    AtRevision as _, Command, Compare, CompareResult, DeleteRangeRequest, KeyValue,
    LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, Response, Store,
    TargetUnion, TxnRequest, TxnResponse,
};

pub fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

/// Applies a put and returns the store's revision afterwards.
pub fn put(store: &mut Store, key: &str, value: &str) -> i64 {
    apply_put(store, put_request(key, value))
}

pub fn apply_put(store: &mut Store, request: PutRequest) -> i64 {
    match store.apply(&Command::Put(request)).expect("put") {
        Response::Put(response) => response.revision(),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn delete_request(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: false,
    }
}

/// Applies a delete and returns (deleted, revision).
pub fn delete(store: &mut Store, key: &str, range_end: &str) -> (i64, i64) {
    match store
        .apply(&Command::DeleteRange(delete_request(key, range_end)))
        .expect("delete")
    {
        Response::DeleteRange(response) => (response.deleted, response.revision()),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn range_request(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..RangeRequest::default()
    }
}

pub fn range(store: &Store, request: &RangeRequest) -> RangeResponse {
    store.range(request).expect("range")
}

pub fn get(store: &Store, key: &str) -> Option<KeyValue> {
    range(store, &range_request(key, "")).kvs.into_iter().next()
}

pub fn get_at(store: &Store, key: &str, revision: i64) -> Option<KeyValue> {
    let request = RangeRequest {
        revision,
        ..range_request(key, "")
    };
    range(store, &request).kvs.into_iter().next()
}

pub fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

pub fn compare(key: &str, operand: TargetUnion, result: CompareResult) -> Compare {
    ops::compare(key, result, operand)
}

pub fn txn(
    store: &mut Store,
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> TxnResponse {
    match store
        .apply(&Command::Txn(TxnRequest {
            compare,
            success,
            failure,
        }))
        .expect("txn")
    {
        Response::Txn(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

/// Grants a lease and returns its id.
pub fn grant(store: &mut Store, id: i64, ttl: i64) -> i64 {
    match store
        .apply(&Command::LeaseGrant(LeaseGrantRequest { id, ttl }))
        .expect("grant")
    {
        Response::LeaseGrant(response) => response.id,
        other => panic!("unexpected {other:?}"),
    }
}
