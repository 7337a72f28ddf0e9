//! events_since: what a watcher resuming from a revision receives.

use sinew_etcd_api::txn as ops;
use sinew_kvd::v3::{CompactionRequest, Event, EventType, KeyValue, KvError, Store};

use crate::store::common::*;

fn kv(event: &Event) -> &KeyValue {
    event.kv.as_ref().expect("an event's key-value")
}

fn summary(events: &[Event]) -> Vec<(EventType, String, i64)> {
    events
        .iter()
        .map(|event| {
            let kv = kv(event);
            (
                event.r#type(),
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

fn sample() -> Store {
    let mut store = Store::new();
    put(&mut store, "b", "1"); // 2
    put(&mut store, "a", "1"); // 3
    txn(
        &mut store,
        vec![],
        vec![
            ops::put(put_request("c", "1")),
            ops::put(put_request("a", "2")),
            ops::delete(delete_request("b", "")),
        ],
        vec![],
    ); // 4
    delete(&mut store, "a", ""); // 5
    store
}

#[test]
fn events_come_in_revision_then_operation_order() {
    use EventType::{Delete, Put};
    let store = sample();
    let events = store.events_since(1, b"\0", b"\0").expect("events");
    assert_eq!(
        summary(&events),
        vec![
            (Put, "b".into(), 2),
            (Put, "a".into(), 3),
            (Put, "c".into(), 4),
            (Put, "a".into(), 4),
            (Delete, "b".into(), 4),
            (Delete, "a".into(), 5),
        ]
    );
}

#[test]
fn events_start_at_the_given_revision_inclusive() {
    let store = sample();
    let events = store.events_since(4, b"\0", b"\0").expect("events");
    assert_eq!(events.len(), 4);
    assert!(store
        .events_since(6, b"\0", b"\0")
        .expect("events")
        .is_empty());
}

#[test]
fn events_carry_prev_kv_and_delete_events_carry_only_key_and_revision() {
    let store = sample();
    let events = store.events_since(4, b"a", b"").expect("events");
    let update = &events[0];
    assert_eq!(kv(update).version, 2);
    assert_eq!(update.prev_kv.as_ref().expect("prev").value, b"1");
    let deletion = &events[1];
    assert_eq!(deletion.r#type(), EventType::Delete);
    assert_eq!((kv(deletion).version, kv(deletion).create_revision), (0, 0));
    assert!(kv(deletion).value.is_empty());
    assert_eq!(deletion.prev_kv.as_ref().expect("prev").value, b"2");
    let created = &store.events_since(2, b"b", b"").expect("events")[0];
    assert_eq!(created.prev_kv, None, "a creation has no previous pair");
}

#[test]
fn events_are_filtered_by_key_range() {
    let store = sample();
    let events = store.events_since(1, b"b", b"c").expect("events");
    assert_eq!(
        summary(&events)
            .iter()
            .map(|(_, key, _)| key.as_str())
            .collect::<Vec<_>>(),
        ["b", "b"]
    );
}

#[test]
fn events_below_the_compacted_revision_are_refused() {
    let mut store = sample();
    store
        .apply(&sinew_kvd::v3::Command::Compact(CompactionRequest {
            revision: 4,
            ..CompactionRequest::default()
        }))
        .expect("compact");
    assert_eq!(store.events_since(3, b"\0", b"\0"), Err(KvError::Compacted));
    let events = store.events_since(4, b"\0", b"\0").expect("events");
    assert_eq!(
        events.len(),
        4,
        "every change made at the compacted revision is kept"
    );
}

#[test]
fn apply_with_events_returns_each_change_of_the_command_in_order() {
    use sinew_kvd::v3::{Command, LeaseRevokeRequest, PutRequest, TxnRequest};
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let lease = grant(&mut store, 4, 10);
    let command = Command::Txn(TxnRequest {
        success: vec![
            ops::put(PutRequest {
                lease,
                ..put_request("b", "1")
            }),
            ops::put(put_request("a", "2")),
            ops::delete(delete_request("zz", "")),
        ],
        ..TxnRequest::default()
    });
    let applied = store.apply_with_events(&command).expect("txn");
    let events = &applied.events;
    assert_eq!(
        summary(events),
        vec![
            (EventType::Put, "b".into(), 3),
            (EventType::Put, "a".into(), 3)
        ]
    );
    assert_eq!(events[1].prev_kv.as_ref().expect("prev").value, b"1");
    assert_eq!(
        events.as_slice(),
        store.events_since(3, b"\0", b"\0").expect("events")
    );
    let revoked = store
        .apply_with_events(&Command::LeaseRevoke(LeaseRevokeRequest { id: lease }))
        .expect("revoke");
    assert_eq!(
        summary(&revoked.events),
        vec![(EventType::Delete, "b".into(), 4)]
    );
    assert_eq!(
        revoked.events,
        store.events_since(4, b"\0", b"\0").expect("events")
    );
    let nothing = store
        .apply_with_events(&Command::DeleteRange(delete_request("missing", "")))
        .expect("delete");
    assert!(nothing.events.is_empty());
}
