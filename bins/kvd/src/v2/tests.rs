//! Unit tests of the v2 store: every operation and error, TTLs with explicit times,
//! in-order keys, the history window, watches and snapshots.

use super::*;

const T0: u64 = 1_795_330_409_000;

fn apply(store: &mut Store, op: Op) -> Result<Event, Error> {
    apply_at(store, T0, op)
}

fn apply_at(store: &mut Store, now: u64, op: Op) -> Result<Event, Error> {
    let mut events = store.apply(&Command { now, op })?;
    assert_eq!(events.len(), 1, "a key operation makes one event");
    Ok(events.remove(0))
}

fn set(key: &str, value: &str) -> Op {
    Op::Set(Set {
        key: key.into(),
        value: value.into(),
        ..Set::default()
    })
}

fn set_ttl(key: &str, value: &str, seconds: u64) -> Op {
    Op::Set(Set {
        key: key.into(),
        value: value.into(),
        ttl: Ttl {
            seconds: Some(seconds),
            refresh: false,
        },
        ..Set::default()
    })
}

fn mkdir(key: &str) -> Op {
    Op::Set(Set {
        key: key.into(),
        dir: true,
        ..Set::default()
    })
}

fn create(key: &str, value: &str) -> Op {
    Op::Create(Create {
        key: key.into(),
        value: value.into(),
        ..Create::default()
    })
}

fn delete(key: &str, dir: bool, recursive: bool) -> Op {
    Op::Delete(Delete {
        key: key.into(),
        dir,
        recursive,
    })
}

fn cas(key: &str, value: &str, prev_value: &str, prev_index: u64) -> Op {
    Op::CompareAndSwap(CompareAndSwap {
        key: key.into(),
        value: value.into(),
        prev_value: prev_value.into(),
        prev_index,
        ttl: Ttl::default(),
    })
}

fn code(result: Result<Event, Error>) -> (u32, String, u64) {
    let error = result.expect_err("the operation must fail");
    (error.code.number(), error.cause, error.index)
}

fn json(event: &Event) -> serde_json::Value {
    serde_json::from_slice(&event.to_json()).expect("event JSON")
}

#[test]
fn set_creates_then_replaces_with_a_new_node() {
    let mut store = Store::new();
    let first = apply(&mut store, set("/a", "1")).unwrap();
    assert_eq!(
        json(&first),
        serde_json::json!({"action":"set","node":{"key":"/a","value":"1","modifiedIndex":1,"createdIndex":1}})
    );
    let second = apply(&mut store, set("a", "2")).unwrap();
    assert_eq!(
        json(&second),
        serde_json::json!({"action":"set",
            "node":{"key":"/a","value":"2","modifiedIndex":2,"createdIndex":2},
            "prevNode":{"key":"/a","value":"1","modifiedIndex":1,"createdIndex":1}})
    );
    assert_eq!(store.index(), 2);
    let got = store.get("/a", false, T0).unwrap();
    assert_eq!((got.action, got.etcd_index), (Action::Get, 2));
    assert_eq!(got.node.value.as_deref(), Some("2"));
}

#[test]
fn field_order_is_etcds() {
    let mut store = Store::new();
    let event = apply(&mut store, set_ttl("/t", "v", 100)).unwrap();
    let text = String::from_utf8(event.to_json()).unwrap();
    assert_eq!(
        text,
        r#"{"action":"set","node":{"key":"/t","value":"v","expiration":"2026-11-22T06:55:09Z","ttl":100,"modifiedIndex":1,"createdIndex":1}}"#
    );
}

#[test]
fn missing_keys_name_the_first_missing_node() {
    let mut store = Store::new();
    assert_eq!(code(store.get("/a/b/c", false, T0)), (100, "/a".into(), 0));
    apply(&mut store, set("/a", "1")).unwrap();
    assert_eq!(code(store.get("/a/b", false, T0)), (104, "/a".into(), 1));
    assert_eq!(
        code(apply(&mut store, set("/a/b", "x"))),
        (104, "/a".into(), 1)
    );
}

#[test]
fn create_and_update_respect_existence() {
    let mut store = Store::new();
    let created = apply(&mut store, create("/k", "1")).unwrap();
    assert_eq!(created.action, Action::Create);
    assert_eq!(
        code(apply(&mut store, create("/k", "2"))),
        (105, "/k".into(), 1)
    );
    let update = |key: &str, value: &str| {
        Op::Update(Update {
            key: key.into(),
            value: value.into(),
            ttl: Ttl::default(),
        })
    };
    assert_eq!(
        code(apply(&mut store, update("/nope", "2"))),
        (100, "/nope".into(), 1)
    );
    let updated = apply(&mut store, update("/k", "2")).unwrap();
    assert_eq!(updated.action, Action::Update);
    assert_eq!(
        (updated.node.created_index, updated.node.modified_index),
        (1, 2)
    );
    assert_eq!(updated.prev_node.unwrap().value.as_deref(), Some("1"));
}

#[test]
fn compare_and_swap_reports_what_differed() {
    let mut store = Store::new();
    apply(&mut store, set("/a", "2")).unwrap();
    assert_eq!(
        code(apply(&mut store, cas("/a", "3", "x", 0))),
        (101, "[x != 2]".into(), 1)
    );
    assert_eq!(
        code(apply(&mut store, cas("/a", "3", "", 7))),
        (101, "[7 != 1]".into(), 1)
    );
    assert_eq!(
        code(apply(&mut store, cas("/a", "3", "x", 7))),
        (101, "[x != 2] [7 != 1]".into(), 1)
    );
    assert_eq!(
        code(apply(&mut store, cas("/b", "3", "x", 0))),
        (100, "/b".into(), 1)
    );
    let swapped = apply(&mut store, cas("/a", "3", "2", 1)).unwrap();
    assert_eq!(swapped.action, Action::CompareAndSwap);
    assert_eq!(
        (swapped.node.created_index, swapped.node.modified_index),
        (1, 2)
    );
    apply(&mut store, mkdir("/d")).unwrap();
    assert_eq!(
        code(apply(&mut store, cas("/d", "3", "x", 0))),
        (102, "/d".into(), 3)
    );
    let stats = store.stats();
    assert_eq!(
        (stats.compare_and_swap_success, stats.compare_and_swap_fail),
        (1, 5)
    );
}

#[test]
fn directories_hold_children_and_refuse_values() {
    let mut store = Store::new();
    let dir = apply(&mut store, mkdir("/d")).unwrap();
    assert!(dir.node.dir && dir.node.value.is_none());
    assert_eq!(code(apply(&mut store, mkdir("/d"))), (102, "/d".into(), 1));
    assert_eq!(
        code(apply(&mut store, set("/d", "v"))),
        (102, "/d".into(), 1)
    );
    apply(&mut store, set("/d/x", "1")).unwrap();
    // Missing parents are made as directories with the write's index.
    let deep = apply(&mut store, set("/p/q/r", "1")).unwrap();
    assert_eq!(deep.node.created_index, 3);
    let parent = store.get("/p/q", false, T0).unwrap();
    assert!(parent.node.dir);
    assert_eq!(parent.node.created_index, 3);
    let listing = store.get("/", false, T0).unwrap();
    assert_eq!(
        json(&listing),
        serde_json::json!({"action":"get","node":{"dir":true,"nodes":[
            {"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1},
            {"key":"/p","dir":true,"modifiedIndex":3,"createdIndex":3}]}})
    );
    let recursive = store.get("/p", true, T0).unwrap();
    assert_eq!(
        json(&recursive)["node"]["nodes"][0]["nodes"][0]["key"],
        serde_json::json!("/p/q/r")
    );
    // A directory with no visible children has no `nodes`.
    let empty = apply(&mut store, mkdir("/e")).unwrap();
    let got = store.get("/e", true, T0).unwrap();
    assert_eq!(got.node.nodes, None);
    assert_eq!(got.node.created_index, empty.node.created_index);
}

#[test]
fn deletes_need_dir_and_recursive_flags() {
    let mut store = Store::new();
    apply(&mut store, set("/d/x", "1")).unwrap();
    assert_eq!(
        code(apply(&mut store, delete("/d", false, false))),
        (102, "/d".into(), 1)
    );
    assert_eq!(
        code(apply(&mut store, delete("/d", true, false))),
        (108, "/d".into(), 1)
    );
    let removed = apply(&mut store, delete("/d", false, true)).unwrap();
    assert_eq!(
        json(&removed),
        serde_json::json!({"action":"delete",
            "node":{"key":"/d","dir":true,"modifiedIndex":2,"createdIndex":1},
            "prevNode":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}})
    );
    assert_eq!(code(store.get("/d/x", false, T0)), (100, "/d".into(), 2));
    apply(&mut store, mkdir("/e")).unwrap();
    assert_eq!(
        apply(&mut store, delete("/e", true, false)).unwrap().action,
        Action::Delete
    );
    // A key goes whatever the flags.
    apply(&mut store, set("/k", "v")).unwrap();
    let key = apply(&mut store, delete("/k", true, false)).unwrap();
    assert_eq!(key.node.value, None);
    assert_eq!(key.prev_node.unwrap().value.as_deref(), Some("v"));
}

#[test]
fn compare_and_delete_checks_before_deleting() {
    let mut store = Store::new();
    apply(&mut store, set("/a", "3")).unwrap();
    let cad = |value: &str, index: u64| {
        Op::CompareAndDelete(CompareAndDelete {
            key: "/a".into(),
            prev_value: value.into(),
            prev_index: index,
        })
    };
    assert_eq!(
        code(apply(&mut store, cad("4", 0))),
        (101, "[4 != 3]".into(), 1)
    );
    let removed = apply(&mut store, cad("3", 1)).unwrap();
    assert_eq!(
        json(&removed),
        serde_json::json!({"action":"compareAndDelete",
            "node":{"key":"/a","modifiedIndex":2,"createdIndex":1},
            "prevNode":{"key":"/a","value":"3","modifiedIndex":1,"createdIndex":1}})
    );
    assert_eq!(code(apply(&mut store, cad("3", 0))), (100, "/a".into(), 2));
}

#[test]
fn root_is_read_only() {
    let mut store = Store::new();
    assert_eq!(code(apply(&mut store, set("/", "x"))), (107, "/".into(), 0));
    assert_eq!(
        code(apply(&mut store, delete("/", true, true))),
        (107, "/".into(), 0)
    );
    assert_eq!(
        code(apply(&mut store, set("/a/..", "x"))),
        (107, "/".into(), 0)
    );
    let root = store.get("/", true, T0).unwrap();
    assert_eq!(
        json(&root),
        serde_json::json!({"action":"get","node":{"dir":true}})
    );
}

#[test]
fn in_order_keys_are_zero_padded_indexes() {
    let mut store = Store::new();
    apply(&mut store, set("/x", "1")).unwrap();
    let post = |value: &str| {
        Op::Create(Create {
            key: "/q".into(),
            value: value.into(),
            in_order: true,
            ..Create::default()
        })
    };
    let first = apply(&mut store, post("j1")).unwrap();
    let second = apply(&mut store, post("j2")).unwrap();
    assert_eq!(first.node.key, "/q/00000000000000000002");
    assert_eq!(second.node.key, "/q/00000000000000000003");
    let listing = store.get("/q", false, T0).unwrap();
    let keys: Vec<_> = listing
        .node
        .nodes
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert_eq!(keys, ["/q/00000000000000000002", "/q/00000000000000000003"]);
    let at_root = Op::Create(Create {
        key: "/".into(),
        value: "r".into(),
        in_order: true,
        ..Create::default()
    });
    assert_eq!(
        apply(&mut store, at_root).unwrap().node.key,
        "/00000000000000000004"
    );
    // In-order keys under a key are refused.
    assert_eq!(
        code(apply(
            &mut store,
            Op::Create(Create {
                key: "/x".into(),
                in_order: true,
                ..Create::default()
            })
        )),
        (104, "/x".into(), 4)
    );
}

#[test]
fn hidden_keys_are_readable_but_not_listed() {
    let mut store = Store::new();
    apply(&mut store, set("/_hid", "h")).unwrap();
    apply(&mut store, set("/d/_h", "h")).unwrap();
    apply(&mut store, set("/d/v", "v")).unwrap();
    assert_eq!(
        store.get("/_hid", false, T0).unwrap().node.value.as_deref(),
        Some("h")
    );
    let root = store.get("/", true, T0).unwrap();
    let nodes = root.node.nodes.unwrap();
    assert_eq!(nodes.len(), 1);
    let children: Vec<_> = nodes[0]
        .nodes
        .clone()
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert_eq!(children, ["/d/v"]);
    // Hidden children still keep a directory from being deleted without `recursive`.
    apply(&mut store, delete("/d/v", false, false)).unwrap();
    assert_eq!(code(apply(&mut store, delete("/d", true, false))).0, 108);
}

#[test]
fn ttl_counts_down_from_the_command_time_and_expires_on_command() {
    let mut store = Store::new();
    let event = apply(&mut store, set_ttl("/t", "v", 10)).unwrap();
    assert_eq!(event.node.ttl, 10);
    assert_eq!(
        event.node.expiration.as_deref(),
        Some("2026-11-22T06:53:39Z")
    );
    assert_eq!(store.get("/t", false, T0 + 2_500).unwrap().node.ttl, 8);
    assert_eq!(store.next_expiry(), Some(T0 + 10_000));
    // An expiry before the deadline removes nothing and uses no index.
    assert!(store
        .apply(&Command {
            now: T0 + 9_999,
            op: Op::Expire
        })
        .unwrap()
        .is_empty());
    assert_eq!(store.index(), 1);
    let expired = store
        .apply(&Command {
            now: T0 + 10_000,
            op: Op::Expire,
        })
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        json(&expired[0]),
        serde_json::json!({"action":"expire",
            "node":{"key":"/t","modifiedIndex":2,"createdIndex":1},
            "prevNode":{"key":"/t","value":"v","expiration":"2026-11-22T06:53:39Z","modifiedIndex":1,"createdIndex":1}})
    );
    assert_eq!(code(store.get("/t", false, T0 + 10_000)).0, 100);
    assert_eq!(store.stats().expired, 1);
    assert_eq!(store.next_expiry(), None);
}

#[test]
fn an_expiring_directory_takes_its_children() {
    let mut store = Store::new();
    let dir = Op::Set(Set {
        key: "/d".into(),
        dir: true,
        ttl: Ttl {
            seconds: Some(5),
            refresh: false,
        },
        ..Set::default()
    });
    apply(&mut store, dir).unwrap();
    apply(&mut store, set_ttl("/d/child", "c", 5)).unwrap();
    apply(&mut store, set_ttl("/other", "o", 7)).unwrap();
    let expired = store
        .apply(&Command {
            now: T0 + 8_000,
            op: Op::Expire,
        })
        .unwrap();
    let keys: Vec<_> = expired
        .iter()
        .map(|e| (e.node.key.as_str(), e.index()))
        .collect();
    assert_eq!(keys, [("/d", 4), ("/other", 5)]);
    assert!(expired[0].node.dir);
    assert_eq!(code(store.get("/d/child", false, T0)).0, 100);
}

#[test]
fn writes_without_ttl_make_nodes_permanent_and_refresh_keeps_values() {
    let mut store = Store::new();
    apply(&mut store, set_ttl("/k", "v", 10)).unwrap();
    let refresh = Op::Update(Update {
        key: "/k".into(),
        value: String::new(),
        ttl: Ttl {
            seconds: Some(30),
            refresh: true,
        },
    });
    let refreshed = apply_at(&mut store, T0 + 5_000, refresh).unwrap();
    assert!(refreshed.refresh);
    assert_eq!(refreshed.node.value.as_deref(), Some("v"));
    assert_eq!(refreshed.node.ttl, 30);
    // A refreshed TTL is never a change watchers see.
    assert!(matches!(
        store.watch_start("/k", false, 2).unwrap(),
        WatchStart::Pending { since: 2, .. }
    ));
    let update = Op::Update(Update {
        key: "/k".into(),
        value: "w".into(),
        ttl: Ttl::default(),
    });
    let updated = apply(&mut store, update).unwrap();
    assert_eq!(
        (updated.node.ttl, updated.node.expiration.clone()),
        (0, None)
    );
    assert!(store
        .apply(&Command {
            now: u64::MAX,
            op: Op::Expire
        })
        .unwrap()
        .is_empty());
    // Refreshing a key that does not exist fails.
    let missing = Op::Set(Set {
        key: "/m".into(),
        ttl: Ttl {
            seconds: Some(5),
            refresh: true,
        },
        ..Set::default()
    });
    assert_eq!(code(apply(&mut store, missing)).0, 100);
}

#[test]
fn watches_start_from_history_or_wait() {
    let mut store = Store::new();
    apply(&mut store, set("/a", "1")).unwrap();
    apply(&mut store, set("/b", "1")).unwrap();
    apply(&mut store, set("/d/x", "1")).unwrap();
    let WatchStart::Found(found) = store.watch_start("/a", false, 1).unwrap() else {
        panic!("history holds /a")
    };
    assert_eq!((found.node.key.as_str(), found.etcd_index), ("/a", 3));
    assert!(matches!(
        store.watch_start("/a", false, 2).unwrap(),
        WatchStart::Pending {
            since: 2,
            etcd_index: 3
        }
    ));
    assert!(matches!(
        store.watch_start("/a", false, 0).unwrap(),
        WatchStart::Pending { since: 4, .. }
    ));
    assert!(
        matches!(store.watch_start("/d", true, 1).unwrap(), WatchStart::Found(e) if e.index() == 3)
    );
    assert!(matches!(
        store.watch_start("/d", false, 1).unwrap(),
        WatchStart::Pending { .. }
    ));
}

#[test]
fn history_keeps_the_last_thousand_events() {
    let mut store = Store::new();
    for value in 0..HISTORY_CAPACITY + 10 {
        apply(&mut store, set("/w", &value.to_string())).unwrap();
    }
    let error = store.watch_start("/w", false, 5).unwrap_err();
    assert_eq!(error.code, Code::EventIndexCleared);
    assert_eq!(error.cause, "the requested history has been cleared [11/5]");
    assert_eq!(error.index, 1010);
    assert_eq!(error.code.status(), 400);
    let WatchStart::Found(event) = store.watch_start("/w", false, 11).unwrap() else {
        panic!("index 11 is kept")
    };
    assert_eq!(event.node.value.as_deref(), Some("10"));
}

#[test]
fn live_watch_matching_follows_etcd() {
    let mut store = Store::new();
    let child = apply(&mut store, set("/d/x", "1")).unwrap();
    let hidden = apply(&mut store, set("/d/_h/y", "1")).unwrap();
    assert!(watch_matches(&child, "/d/x", false, 1));
    assert!(!watch_matches(&child, "/d/x", false, 2));
    assert!(watch_matches(&child, "/d", true, 1));
    assert!(!watch_matches(&child, "/d", false, 1));
    assert!(!watch_matches(&child, "/dd", true, 1));
    assert!(!watch_matches(&hidden, "/d", true, 1));
    assert!(watch_matches(&hidden, "/d/_h", true, 1));
    let removed = apply(&mut store, delete("/d", true, true)).unwrap();
    assert!(watch_matches(&removed, "/d/x", false, 1));
    assert!(!watch_matches(&removed, "/dd", false, 1));
}

#[test]
fn snapshots_round_trip_and_reject_nonsense() {
    let mut store = Store::new();
    apply(&mut store, set_ttl("/d/x", "1", 10)).unwrap();
    apply(&mut store, set("/_h", "2")).unwrap();
    apply(&mut store, create("/c", "3")).unwrap();
    let bytes = store.snapshot().unwrap();
    let restored = Store::restore(&bytes).unwrap();
    assert_eq!(restored, store);
    assert_eq!(
        restored.watch_start("/c", false, 3).unwrap(),
        store.watch_start("/c", false, 3).unwrap()
    );
    assert!(matches!(
        Store::restore(b"{}"),
        Err(SnapshotError::Decode(_))
    ));
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["format"] = 9.into();
    let wrong_format = serde_json::to_vec(&value).unwrap();
    assert!(matches!(
        Store::restore(&wrong_format),
        Err(SnapshotError::UnsupportedFormat(9))
    ));
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["nodes"].as_object_mut().unwrap().remove("/d");
    let orphan = serde_json::to_vec(&value).unwrap();
    assert!(matches!(
        Store::restore(&orphan),
        Err(SnapshotError::Inconsistent(_))
    ));
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["index"] = 1.into();
    let behind = serde_json::to_vec(&value).unwrap();
    assert!(matches!(
        Store::restore(&behind),
        Err(SnapshotError::Inconsistent(_))
    ));
}

#[test]
fn commands_survive_the_raft_encoding() {
    let command = Command {
        now: T0,
        op: cas("/a", "v", "p", 3),
    };
    let bytes = serde_json::to_vec(&command).unwrap();
    assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), command);
    let mut store = Store::new();
    let events = store.apply(&command).unwrap_err();
    let encoded = serde_json::to_vec(&events).unwrap();
    assert_eq!(serde_json::from_slice::<Error>(&encoded).unwrap(), events);
}

#[test]
fn keys_nested_too_deep_are_refused() {
    let mut store = Store::new();
    let deep = "/a".repeat(MAX_DEPTH + 1);
    assert_eq!(code(apply(&mut store, set(&deep, "v"))).0, 209);
    assert_eq!(code(store.get(&deep, true, T0)).0, 209);
    let fits = "/a".repeat(MAX_DEPTH);
    apply(&mut store, set(&fits, "v")).unwrap();
    let listing = store.get("/", true, T0).unwrap();
    assert!(!listing.to_json().is_empty());
}

#[test]
fn updating_a_directory_keeps_its_stored_index_as_etcd_does() {
    let mut store = Store::new();
    apply(&mut store, mkdir("/u")).unwrap();
    let update = Op::Update(Update {
        key: "/u".into(),
        value: String::new(),
        ttl: Ttl {
            seconds: Some(60),
            refresh: false,
        },
    });
    let updated = apply(&mut store, update).unwrap();
    assert_eq!((updated.node.modified_index, updated.node.ttl), (2, 60));
    let got = store.get("/u", false, T0).unwrap();
    assert_eq!((got.node.modified_index, got.node.ttl), (1, 60));
    let with_value = Op::Update(Update {
        key: "/u".into(),
        value: "v".into(),
        ttl: Ttl::default(),
    });
    assert_eq!(code(apply(&mut store, with_value)), (102, "/u".into(), 2));
}

/// A fixed pseudo-random sequence of commands over a few keys, so that every operation
/// meets every kind of node.
fn scripted_commands(count: u64) -> Vec<Command> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let keys = ["/a", "/a/b", "/a/b/c", "/d", "/d/_h", "/e"];
    (0..count)
        .map(|step| {
            let key = keys[usize::try_from(next(6)).unwrap()].to_owned();
            let value = format!("v{}", next(3));
            let ttl = Ttl {
                seconds: (next(4) == 0).then(|| next(5)),
                refresh: false,
            };
            let op = match next(8) {
                0 => Op::Set(Set {
                    key,
                    value,
                    dir: next(4) == 0,
                    ttl,
                }),
                1 => Op::Create(Create {
                    key,
                    value,
                    dir: false,
                    in_order: next(2) == 0,
                    ttl: ttl.seconds,
                }),
                2 => Op::Update(Update { key, value, ttl }),
                3 => Op::CompareAndSwap(CompareAndSwap {
                    key,
                    value,
                    prev_value: format!("v{}", next(3)),
                    prev_index: next(3),
                    ttl,
                }),
                4 => Op::Delete(Delete {
                    key,
                    dir: next(2) == 0,
                    recursive: next(2) == 0,
                }),
                5 => Op::CompareAndDelete(CompareAndDelete {
                    key,
                    prev_value: format!("v{}", next(3)),
                    prev_index: 0,
                }),
                _ => Op::Expire,
            };
            Command {
                now: T0 + step * 700,
                op,
            }
        })
        .collect()
}

#[test]
fn replicas_agree_and_a_snapshot_resumes_where_it_was_taken() {
    let commands = scripted_commands(600);
    let mut leader = Store::new();
    let mut follower = Store::new();
    let mut late = None;
    let mut answers = Vec::new();
    for (step, command) in commands.iter().enumerate() {
        // Commands go through the Raft encoding, as on a real follower.
        let decoded: Command =
            serde_json::from_slice(&serde_json::to_vec(command).unwrap()).unwrap();
        let answer = leader.apply(command);
        assert_eq!(follower.apply(&decoded), answer, "step {step}");
        answers.push(answer);
        if step == 300 {
            late = Some(Store::restore(&leader.snapshot().unwrap()).unwrap());
        }
    }
    assert_eq!(follower, leader);
    let mut late = late.unwrap();
    for (command, answer) in commands[301..].iter().zip(&answers[301..]) {
        assert_eq!(&late.apply(command), answer);
    }
    assert_eq!(late, leader);
    // The script did exercise successes, refusals and expiries.
    let stats = leader.stats();
    assert!(
        stats.sets_success > 0 && stats.delete_fail > 0 && stats.expired > 0,
        "{stats:?}"
    );
}
