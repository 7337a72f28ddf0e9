//! Snapshots and the JSON form of commands, as Raft will carry them.

use sinew_etcd_api::txn as ops;
use sinew_kvd::v3::{
    Command, CompactionRequest, CompareResult, PutRequest, Response, SnapshotError, Store,
    TargetUnion, TxnRequest,
};

use crate::store::common::*;

fn busy_store() -> Store {
    let mut store = Store::new();
    let lease = grant(&mut store, 0, 30);
    grant(&mut store, 77, 5);
    put(&mut store, "a", "1");
    put(&mut store, "b\u{ff}", "binary");
    apply_put(
        &mut store,
        PutRequest {
            lease,
            ..put_request("leased", "x")
        },
    );
    put(&mut store, "a", "2");
    delete(&mut store, "b\u{ff}", "");
    store
        .apply(&Command::Compact(CompactionRequest {
            revision: 3,
            ..CompactionRequest::default()
        }))
        .expect("compact");
    put(&mut store, "a", "3");
    store
}

#[test]
fn restore_of_a_snapshot_equals_the_original_store() {
    let store = busy_store();
    let bytes = store.clone().into_snapshot();
    let restored = Store::restore(&bytes).expect("restore");
    assert_eq!(restored, store);
    assert_eq!(restored.compacted_revision(), 3);
    assert_eq!(get_at(&restored, "a", 4), get_at(&store, "a", 4));
    assert_eq!(restored.lease_info(77), store.lease_info(77));
    assert_eq!(
        restored.events_since(3, b"\0", b"\0"),
        store.events_since(3, b"\0", b"\0")
    );
}

#[test]
fn a_restored_store_applies_later_commands_identically() {
    let mut store = busy_store();
    let mut restored = Store::restore(&store.clone().into_snapshot()).expect("restore");
    for command in [
        Command::Put(put_request("c", "1")),
        Command::LeaseGrant(sinew_kvd::v3::LeaseGrantRequest { id: 0, ttl: 9 }),
        Command::LeaseRevoke(sinew_kvd::v3::LeaseRevokeRequest { id: 1 }),
    ] {
        assert_eq!(store.apply(&command), restored.apply(&command));
    }
    assert_eq!(store, restored);
}

#[test]
fn restore_refuses_bytes_that_are_not_a_snapshot() {
    assert!(matches!(
        Store::restore(b"not a snapshot"),
        Err(SnapshotError::Decode(_))
    ));
    assert!(matches!(
        Store::restore(b"{not json"),
        Err(SnapshotError::DecodeJson(_))
    ));
    // Field 1 (the format) 99, then as a JSON snapshot.
    assert!(matches!(
        Store::restore(&[0x08, 99]),
        Err(SnapshotError::UnsupportedFormat(99))
    ));
    let mut value = serde_json::json!({
        "format": 99, "revision": 1, "compacted": 0, "next_lease_id": 1, "keys": [], "leases": []
    });
    let bytes = serde_json::to_vec(&value).expect("encode");
    assert!(matches!(
        Store::restore(&bytes),
        Err(SnapshotError::UnsupportedFormat(99))
    ));
    // Format 2 and 1 with a compacted revision past the current one.
    assert!(matches!(
        Store::restore(&[0x08, 2, 0x10, 1, 0x18, 5, 0x20, 1]),
        Err(SnapshotError::Inconsistent(_))
    ));
    value["format"] = 1.into();
    value["compacted"] = 5.into();
    let bytes = serde_json::to_vec(&value).expect("encode");
    assert!(matches!(
        Store::restore(&bytes),
        Err(SnapshotError::Inconsistent(_))
    ));
}

#[test]
fn commands_travel_as_json_with_base64_bytes() {
    let command = Command::Txn(TxnRequest {
        compare: vec![ops::compare(
            "a",
            CompareResult::NotEqual,
            TargetUnion::Value(b"\x00\xff".to_vec()),
        )],
        success: vec![ops::put(put_request("a", "b"))],
        failure: vec![ops::range(range_request("a", "\0"))],
    });
    let json = serde_json::to_string(&command).expect("encode");
    assert!(json.contains(r#""key":"YQ==""#), "{json}");
    assert!(json.contains(r#""result":"NOT_EQUAL""#), "{json}");
    let decoded: Command = serde_json::from_str(&json).expect("decode");
    assert_eq!(decoded, command);
    let mut store = Store::new();
    let response = store.apply(&decoded).expect("apply");
    let json = serde_json::to_string(&response).expect("encode response");
    assert_eq!(
        serde_json::from_str::<Response>(&json).expect("decode response"),
        response
    );
}

#[test]
fn command_json_may_omit_default_fields() {
    let command: Command =
        serde_json::from_str(r#"{"put":{"key":"YQ==","value":"Yg=="}}"#).expect("decode");
    assert_eq!(command, Command::Put(put_request("a", "b")));
}

#[test]
fn refusals_travel_as_json_too() {
    let error = sinew_kvd::v3::KvError::LeaseNotFound;
    let json = serde_json::to_string(&error).expect("encode");
    assert_eq!(json, r#""lease_not_found""#);
    assert_eq!(
        serde_json::from_str::<sinew_kvd::v3::KvError>(&json).expect("decode"),
        error
    );
}
