//! Compaction: what stays readable and which revisions are refused.

use sinew_kvd::v3::{
    AtRevision as _, Command, CompactionRequest, KvError, RangeRequest, Response, Store,
};

use crate::store::common::*;

fn compact(store: &mut Store, revision: i64) -> Result<i64, KvError> {
    match store.apply(&Command::Compact(CompactionRequest {
        revision,
        ..CompactionRequest::default()
    }))? {
        Response::Compact(response) => Ok(response.revision()),
        other => panic!("unexpected {other:?}"),
    }
}

/// a=1@2, a=2@3, b=1@4, b deleted@5, a=3@6
fn sample() -> Store {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    put(&mut store, "b", "1");
    delete(&mut store, "b", "");
    put(&mut store, "a", "3");
    store
}

#[test]
fn compaction_keeps_reads_at_and_after_the_compacted_revision() {
    let mut store = sample();
    assert_eq!(
        compact(&mut store, 4),
        Ok(6),
        "compaction does not change the revision"
    );
    assert_eq!(store.compacted_revision(), 4);
    assert_eq!(get_at(&store, "a", 4).expect("a").value, b"2");
    assert_eq!(get_at(&store, "b", 4).expect("b").value, b"1");
    assert_eq!(get_at(&store, "b", 5), None);
    assert_eq!(get(&store, "a").expect("a").version, 3);
}

#[test]
fn reads_below_the_compacted_revision_are_refused() {
    let mut store = sample();
    compact(&mut store, 4).expect("compact");
    let request = RangeRequest {
        revision: 3,
        ..range_request("a", "")
    };
    let error = store.range(&request).expect_err("compacted");
    assert_eq!(
        error.to_string(),
        "mvcc: required revision has been compacted"
    );
}

#[test]
fn compacting_at_or_below_the_last_compaction_is_refused() {
    let mut store = sample();
    compact(&mut store, 4).expect("compact");
    assert_eq!(compact(&mut store, 4), Err(KvError::Compacted));
    assert_eq!(compact(&mut store, 2), Err(KvError::Compacted));
    assert_eq!(compact(&mut store, 5), Ok(6));
}

#[test]
fn compacting_a_future_revision_is_refused() {
    let mut store = sample();
    assert_eq!(compact(&mut store, 7), Err(KvError::FutureRevision));
    assert_eq!(compact(&mut store, 6), Ok(6));
}

#[test]
fn compaction_drops_keys_deleted_before_it_and_keeps_live_versions() {
    let mut store = sample();
    compact(&mut store, 6).expect("compact");
    assert_eq!(keys(&range(&store, &range_request("\0", "\0"))), ["a"]);
    let kv = get(&store, "a").expect("a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 6, 3));
    put(&mut store, "a", "4");
    assert_eq!(
        get(&store, "a").expect("a").version,
        4,
        "version survives compaction"
    );
    put(&mut store, "b", "again");
    assert_eq!(get(&store, "b").expect("b").version, 1);
}

#[test]
fn the_size_counts_every_kept_version_and_compaction_and_restore_agree() {
    let mut store = sample();
    // Each version: key + value + 64; the deletion of b keeps its key and no value.
    let version = |key: &str, value: &str| (key.len() + value.len()) as u64 + 64;
    let all = 3 * version("a", "1") + version("b", "1") + version("b", "");
    assert_eq!(store.size(), all);

    compact(&mut store, 4).expect("compaction");
    // a=2@3 stays readable at 4, b=1@4 too; b's deletion and a=3 come after.
    let kept = 2 * version("a", "1") + version("b", "1") + version("b", "");
    assert_eq!(store.size(), kept);
    let restored = Store::restore(&store.clone().into_snapshot()).expect("restore");
    assert_eq!(restored.size(), kept);

    compact(&mut store, 6).expect("compaction");
    assert_eq!(store.size(), version("a", "3"));
}
