//! Transactions: one revision, comparisons, branches, nested transactions, checks.

use sinew_etcd_api::txn as ops;
use sinew_kvd::v3::response_op::Response as OpResponse;
use sinew_kvd::v3::CompareResult::{Equal, Greater, Less, NotEqual};
use sinew_kvd::v3::{
    AtRevision as _, Command, Compare, CompareResult, KvError, PutRequest, RangeRequest, RequestOp,
    Store, TargetUnion, TxnRequest, MAX_TXN_OPS,
};

use crate::store::common::*;

fn put_op(key: &str, value: &str) -> RequestOp {
    ops::put(put_request(key, value))
}

#[test]
fn txn_with_several_writes_is_one_revision() {
    let mut store = Store::new();
    put(&mut store, "c", "old");
    let response = txn(
        &mut store,
        vec![],
        vec![
            put_op("a", "1"),
            put_op("b", "2"),
            ops::delete(delete_request("c", "")),
        ],
        vec![],
    );
    assert!(response.succeeded);
    assert_eq!(response.revision(), 3);
    assert_eq!(store.revision(), 3);
    for key in ["a", "b"] {
        let kv = get(&store, key).expect("key");
        assert_eq!((kv.create_revision, kv.mod_revision), (3, 3));
    }
    assert_eq!(get(&store, "c"), None);
}

#[test]
fn read_only_txn_does_not_bump_the_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let response = txn(
        &mut store,
        vec![],
        vec![
            ops::range(range_request("a", "")),
            ops::delete(delete_request("zz", "")),
        ],
        vec![],
    );
    assert_eq!(response.revision(), 2);
    assert_eq!(store.revision(), 2);
}

#[test]
fn ops_in_a_txn_see_earlier_writes_of_the_same_txn() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let response = txn(
        &mut store,
        vec![],
        vec![put_op("a", "2"), ops::range(range_request("a", ""))],
        vec![],
    );
    let Some(OpResponse::ResponseRange(read)) = &response.responses[1].response else {
        panic!("expected a range response");
    };
    assert_eq!(read.kvs[0].value, b"2");
    assert_eq!(read.revision(), 3);
}

fn outcome(store: &Store, compare: Compare) -> bool {
    let mut store = store.clone();
    txn(&mut store, vec![compare], vec![], vec![]).succeeded
}

/// x: value "m", version 2, create 2, mod 3, lease 7
fn compare_sample() -> Store {
    let mut store = Store::new();
    put(&mut store, "x", "a");
    let lease = grant(&mut store, 7, 60);
    apply_put(
        &mut store,
        PutRequest {
            lease,
            ..put_request("x", "m")
        },
    );
    store
}

#[test]
fn compare_every_target_with_every_result() {
    let store = compare_sample();
    let targets = [
        (
            TargetUnion::Value(b"m".to_vec()),
            TargetUnion::Value(b"a".to_vec()),
            TargetUnion::Value(b"z".to_vec()),
        ),
        (
            TargetUnion::Version(2),
            TargetUnion::Version(1),
            TargetUnion::Version(3),
        ),
        (
            TargetUnion::CreateRevision(2),
            TargetUnion::CreateRevision(1),
            TargetUnion::CreateRevision(3),
        ),
        (
            TargetUnion::ModRevision(3),
            TargetUnion::ModRevision(2),
            TargetUnion::ModRevision(4),
        ),
        (
            TargetUnion::Lease(7),
            TargetUnion::Lease(6),
            TargetUnion::Lease(8),
        ),
    ];
    for (equal, lower, higher) in targets {
        let check = |target: &TargetUnion, result: CompareResult| {
            outcome(&store, compare("x", target.clone(), result))
        };
        assert!(check(&equal, Equal), "{equal:?} EQUAL");
        assert!(!check(&lower, Equal), "{lower:?} EQUAL");
        assert!(!check(&equal, NotEqual), "{equal:?} NOT_EQUAL");
        assert!(check(&higher, NotEqual), "{higher:?} NOT_EQUAL");
        assert!(check(&lower, Greater), "{lower:?} GREATER");
        assert!(!check(&equal, Greater), "{equal:?} GREATER");
        assert!(check(&higher, Less), "{higher:?} LESS");
        assert!(!check(&equal, Less), "{equal:?} LESS");
    }
}

#[test]
fn compare_on_a_missing_key_sees_zero_fields_but_value_compares_always_fail() {
    let store = Store::new();
    assert!(outcome(
        &store,
        compare("nope", TargetUnion::Version(0), Equal)
    ));
    assert!(outcome(
        &store,
        compare("nope", TargetUnion::CreateRevision(0), Equal)
    ));
    assert!(outcome(
        &store,
        compare("nope", TargetUnion::ModRevision(1), Less)
    ));
    assert!(outcome(
        &store,
        compare("nope", TargetUnion::Lease(0), Equal)
    ));
    assert!(!outcome(
        &store,
        compare("nope", TargetUnion::Value(Vec::new()), Equal)
    ));
    assert!(!outcome(
        &store,
        compare("nope", TargetUnion::Value(b"x".to_vec()), NotEqual)
    ));
}

#[test]
fn compare_over_a_range_requires_every_key_to_hold() {
    let mut store = Store::new();
    put(&mut store, "k1", "a");
    put(&mut store, "k2", "a");
    put(&mut store, "k2", "b");
    let ranged = |result: CompareResult, version: i64| Compare {
        range_end: b"k3".to_vec(),
        ..compare("k1", TargetUnion::Version(version), result)
    };
    assert!(outcome(&store, ranged(Greater, 0)));
    assert!(!outcome(&store, ranged(Equal, 1)));
    assert!(outcome(&store, ranged(Less, 3)));
    let empty_range = Compare {
        range_end: b"b".to_vec(),
        ..compare("a", TargetUnion::Version(0), Equal)
    };
    assert!(outcome(&store, empty_range));
}

#[test]
fn txn_runs_success_when_all_compares_hold_else_failure() {
    let mut store = Store::new();
    put(&mut store, "x", "1");
    let holds = compare("x", TargetUnion::Value(b"1".to_vec()), Equal);
    let fails = compare("x", TargetUnion::Version(9), Equal);
    let response = txn(
        &mut store,
        vec![holds.clone(), fails],
        vec![put_op("s", "1")],
        vec![put_op("f", "1")],
    );
    assert!(!response.succeeded);
    assert!(matches!(
        response.responses.as_slice(),
        [op] if matches!(op.response, Some(OpResponse::ResponsePut(_)))
    ));
    assert_eq!((get(&store, "s"), get(&store, "f").is_some()), (None, true));
    let response = txn(
        &mut store,
        vec![holds],
        vec![put_op("s", "1")],
        vec![put_op("f", "2")],
    );
    assert!(response.succeeded);
    assert!(get(&store, "s").is_some());
    assert_eq!(get(&store, "f").expect("f").value, b"1");
}

#[test]
fn empty_compare_list_takes_the_success_branch() {
    let mut store = Store::new();
    assert!(txn(&mut store, vec![], vec![], vec![]).succeeded);
}

#[test]
fn nested_txn_compares_see_the_store_before_the_outer_writes() {
    let mut store = Store::new();
    let nested = TxnRequest {
        compare: vec![compare("a", TargetUnion::Version(0), Equal)],
        success: vec![put_op("inner", "saw-missing-a")],
        failure: vec![put_op("inner", "saw-a")],
    };
    let response = txn(
        &mut store,
        vec![],
        vec![put_op("a", "1"), ops::nested(nested)],
        vec![],
    );
    assert_eq!(get(&store, "inner").expect("inner").value, b"saw-missing-a");
    assert_eq!(store.revision(), 2);
    let Some(OpResponse::ResponseTxn(inner)) = &response.responses[1].response else {
        panic!("expected a nested txn response");
    };
    assert!(inner.succeeded);
}

#[test]
fn txn_putting_a_key_twice_or_inside_a_deleted_range_is_a_duplicate_key() {
    let mut store = Store::new();
    let twice = TxnRequest {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..TxnRequest::default()
    };
    let error = store.apply(&Command::Txn(twice)).expect_err("duplicate");
    assert_eq!(
        error.to_string(),
        "etcdserver: duplicate key given in txn request"
    );
    let deleted = TxnRequest {
        failure: vec![ops::delete(delete_request("a", "c")), put_op("b", "2")],
        ..TxnRequest::default()
    };
    assert_eq!(
        store.apply(&Command::Txn(deleted)),
        Err(KvError::DuplicateKey)
    );
    let nested = TxnRequest {
        success: vec![
            put_op("a", "1"),
            ops::nested(TxnRequest {
                success: vec![put_op("a", "2")],
                ..TxnRequest::default()
            }),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(
        store.apply(&Command::Txn(nested)),
        Err(KvError::DuplicateKey)
    );
    assert_eq!(store.revision(), 1);
}

#[test]
fn txn_may_put_one_key_in_both_branches_of_a_nested_txn() {
    let mut store = Store::new();
    let nested = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "then")],
        failure: vec![put_op("a", "else")],
    };
    let outer = TxnRequest {
        success: vec![put_op("a", "outer")],
        failure: vec![ops::nested(nested)],
        ..TxnRequest::default()
    };
    assert!(store.apply(&Command::Txn(outer)).is_ok());
}

#[test]
fn txn_with_too_many_ops_is_refused() {
    let mut store = Store::new();
    let ops = (0..=MAX_TXN_OPS)
        .map(|index| put_op(&format!("k{index}"), "v"))
        .collect();
    let error = store
        .apply(&Command::Txn(TxnRequest {
            success: ops,
            ..TxnRequest::default()
        }))
        .expect_err("too many");
    assert_eq!(error, KvError::TooManyOps);
}

#[test]
fn txn_put_with_unknown_lease_on_the_chosen_branch_fails_whole_txn() {
    let mut store = Store::new();
    let bad = PutRequest {
        lease: 99,
        ..put_request("b", "1")
    };
    let request = TxnRequest {
        success: vec![put_op("a", "1"), ops::put(bad.clone())],
        ..TxnRequest::default()
    };
    assert_eq!(
        store.apply(&Command::Txn(request)),
        Err(KvError::LeaseNotFound)
    );
    assert_eq!((store.revision(), get(&store, "a")), (1, None));
    let unchosen = TxnRequest {
        success: vec![put_op("a", "1")],
        failure: vec![ops::put(bad)],
        ..TxnRequest::default()
    };
    assert!(store.apply(&Command::Txn(unchosen)).is_ok());
}

#[test]
fn nested_txn_put_ignore_value_on_a_missing_key_is_key_not_found() {
    let mut store = Store::new();
    let ignore = PutRequest {
        ignore_value: true,
        ..put_request("a", "")
    };
    let request = TxnRequest {
        success: vec![ops::nested(TxnRequest {
            success: vec![ops::put(ignore)],
            ..TxnRequest::default()
        })],
        ..TxnRequest::default()
    };
    assert_eq!(
        store.apply(&Command::Txn(request)),
        Err(KvError::KeyNotFound)
    );
}

#[test]
fn txn_range_at_a_future_revision_fails_the_txn() {
    let mut store = Store::new();
    let read = RangeRequest {
        revision: 5,
        ..range_request("a", "")
    };
    let request = TxnRequest {
        success: vec![put_op("a", "1"), ops::range(read)],
        ..TxnRequest::default()
    };
    assert_eq!(
        store.apply(&Command::Txn(request)),
        Err(KvError::FutureRevision)
    );
    assert_eq!(store.revision(), 1);
}

#[test]
fn txn_put_covered_by_an_earlier_nested_txn_delete_is_a_duplicate_key() {
    let mut store = Store::new();
    let deleting = TxnRequest {
        failure: vec![ops::delete(delete_request("a", "z"))],
        ..TxnRequest::default()
    };
    let putting = TxnRequest {
        success: vec![put_op("m", "1")],
        ..TxnRequest::default()
    };
    let request = TxnRequest {
        success: vec![ops::nested(deleting), ops::nested(putting)],
        ..TxnRequest::default()
    };
    assert_eq!(
        store.apply(&Command::Txn(request)),
        Err(KvError::DuplicateKey)
    );
}

#[test]
fn txn_compare_without_a_key_is_refused() {
    let mut store = Store::new();
    let request = TxnRequest {
        compare: vec![compare("", TargetUnion::Version(0), Equal)],
        ..TxnRequest::default()
    };
    assert_eq!(store.apply(&Command::Txn(request)), Err(KvError::EmptyKey));
}
