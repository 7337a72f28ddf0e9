//! Revisions, versions and put/delete rules.

use sinew_kvd::v3::{AtRevision as _, Command, KvError, PutRequest, Response, Store};

use crate::store::common::*;

#[test]
fn new_store_is_at_revision_1() {
    let store = Store::new();
    assert_eq!(store.revision(), 1);
    assert_eq!(range(&store, &range_request("a", "")).revision(), 1);
}

#[test]
fn each_put_is_one_revision_with_create_mod_and_version() {
    let mut store = Store::new();
    assert_eq!(put(&mut store, "a", "1"), 2);
    let kv = get(&store, "a").expect("a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    assert_eq!(put(&mut store, "b", "x"), 3);
    assert_eq!(put(&mut store, "a", "2"), 4);
    let kv = get(&store, "a").expect("a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
    assert_eq!(kv.value, b"2");
    assert_eq!(kv.lease, 0);
}

#[test]
fn delete_resets_version_and_recreation_gets_a_new_create_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    assert_eq!(delete(&mut store, "a", ""), (1, 4));
    assert_eq!(get(&store, "a"), None);
    assert_eq!(put(&mut store, "a", "3"), 5);
    let kv = get(&store, "a").expect("a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn deleting_a_missing_key_does_not_bump_the_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    assert_eq!(delete(&mut store, "zz", ""), (0, 2));
    assert_eq!(delete(&mut store, "b", "c"), (0, 2));
    assert_eq!(store.revision(), 2);
}

#[test]
fn delete_range_deletes_every_key_in_one_revision_and_returns_prev_kvs() {
    let mut store = Store::new();
    for key in ["a", "b", "c", "d"] {
        put(&mut store, key, key);
    }
    let mut request = delete_request("b", "d");
    request.prev_kv = true;
    let Ok(Response::DeleteRange(response)) = store.apply(&Command::DeleteRange(request)) else {
        panic!("delete failed");
    };
    assert_eq!(response.deleted, 2);
    assert_eq!(response.revision(), 6);
    let prev: Vec<_> = response.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(prev, vec![b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(keys(&range(&store, &range_request("a", "\0"))), ["a", "d"]);
}

#[test]
fn delete_range_with_nul_range_end_deletes_every_key_from_key() {
    let mut store = Store::new();
    for key in ["a", "b", "c"] {
        put(&mut store, key, key);
    }
    assert_eq!(delete(&mut store, "b", "\0"), (2, 5));
    assert_eq!(keys(&range(&store, &range_request("\0", "\0"))), ["a"]);
}

#[test]
fn put_prev_kv_returns_the_pair_before_the_put() {
    let mut store = Store::new();
    let mut request = put_request("a", "1");
    request.prev_kv = true;
    let Ok(Response::Put(first)) = store.apply(&Command::Put(request.clone())) else {
        panic!("put failed");
    };
    assert_eq!(first.prev_kv, None);
    request.value = b"2".to_vec();
    let Ok(Response::Put(second)) = store.apply(&Command::Put(request)) else {
        panic!("put failed");
    };
    let prev = second.prev_kv.expect("prev_kv");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
}

#[test]
fn put_without_prev_kv_flag_returns_none() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let Ok(Response::Put(response)) = store.apply(&Command::Put(put_request("a", "2"))) else {
        panic!("put failed");
    };
    assert_eq!(response.prev_kv, None);
}

#[test]
fn put_ignore_value_keeps_the_value_and_bumps_version() {
    let mut store = Store::new();
    let lease = grant(&mut store, 7, 60);
    put(&mut store, "a", "keep");
    apply_put(
        &mut store,
        PutRequest {
            key: b"a".to_vec(),
            lease,
            ignore_value: true,
            ..PutRequest::default()
        },
    );
    let kv = get(&store, "a").expect("a");
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"keep"[..], 7, 2)
    );
}

#[test]
fn put_ignore_lease_keeps_the_lease() {
    let mut store = Store::new();
    let lease = grant(&mut store, 7, 60);
    apply_put(
        &mut store,
        PutRequest {
            lease,
            ..put_request("a", "1")
        },
    );
    apply_put(
        &mut store,
        PutRequest {
            ignore_lease: true,
            ..put_request("a", "2")
        },
    );
    let kv = get(&store, "a").expect("a");
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"2"[..], 7));
}

#[test]
fn put_ignore_value_or_lease_on_a_missing_key_is_key_not_found() {
    let mut store = Store::new();
    for request in [
        PutRequest {
            ignore_value: true,
            ..put_request("a", "")
        },
        PutRequest {
            ignore_lease: true,
            ..put_request("a", "v")
        },
    ] {
        let error = store
            .apply(&Command::Put(request))
            .expect_err("missing key");
        assert_eq!(error, KvError::KeyNotFound);
        assert_eq!(error.to_string(), "etcdserver: key not found");
    }
    assert_eq!(store.revision(), 1);
}

#[test]
fn put_ignore_value_with_a_value_or_ignore_lease_with_a_lease_is_refused() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let with_value = PutRequest {
        ignore_value: true,
        ..put_request("a", "v")
    };
    assert_eq!(
        store.apply(&Command::Put(with_value)),
        Err(KvError::ValueProvided)
    );
    let with_lease = PutRequest {
        ignore_lease: true,
        lease: 5,
        ..put_request("a", "v")
    };
    assert_eq!(
        store.apply(&Command::Put(with_lease)),
        Err(KvError::LeaseProvided)
    );
}

#[test]
fn put_with_an_unknown_lease_is_lease_not_found_and_changes_nothing() {
    let mut store = Store::new();
    let request = PutRequest {
        lease: 42,
        ..put_request("a", "1")
    };
    let error = store.apply(&Command::Put(request)).expect_err("no lease");
    assert_eq!(error.to_string(), "etcdserver: requested lease not found");
    assert_eq!(store.revision(), 1);
    assert_eq!(get(&store, "a"), None);
}

#[test]
fn empty_keys_are_refused_with_key_is_not_provided() {
    let mut store = Store::new();
    let error = store
        .apply(&Command::Put(put_request("", "v")))
        .expect_err("empty");
    assert_eq!(error.to_string(), "etcdserver: key is not provided");
    assert_eq!(
        store.apply(&Command::DeleteRange(delete_request("", ""))),
        Err(KvError::EmptyKey)
    );
    assert_eq!(store.range(&range_request("", "")), Err(KvError::EmptyKey));
}
