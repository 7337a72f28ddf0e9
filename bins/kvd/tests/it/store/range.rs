//! Range: key-range conventions, historical reads, limit, count, sort and filters.

use sinew_kvd::v3::{
    prefix_end, AtRevision as _, KvError, RangeRequest, SortOrder, SortTarget, Store,
};

use crate::store::common::*;

/// a=1@2, b=22@3, c=3@4, a=11@5 (a: version 2), d=0@6
fn sample() -> Store {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "22");
    put(&mut store, "c", "3");
    put(&mut store, "a", "11");
    put(&mut store, "d", "0");
    store
}

#[test]
fn range_end_empty_selects_one_key() {
    let store = sample();
    assert_eq!(keys(&range(&store, &range_request("b", ""))), ["b"]);
    assert!(range(&store, &range_request("bb", "")).kvs.is_empty());
}

#[test]
fn range_end_nul_selects_every_key_from_key() {
    let store = sample();
    assert_eq!(
        keys(&range(&store, &range_request("b", "\0"))),
        ["b", "c", "d"]
    );
    assert_eq!(
        keys(&range(&store, &range_request("\0", "\0"))),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn range_end_is_exclusive() {
    let store = sample();
    assert_eq!(keys(&range(&store, &range_request("a", "c"))), ["a", "b"]);
    assert!(range(&store, &range_request("c", "a")).kvs.is_empty());
}

#[test]
fn prefix_range_end_selects_the_prefix() {
    let mut store = Store::new();
    for key in ["foo", "foo/a", "foo/b", "fop", "fo"] {
        put(&mut store, key, "v");
    }
    let end = String::from_utf8(prefix_end(b"foo/")).expect("utf8");
    assert_eq!(
        keys(&range(&store, &range_request("foo/", &end))),
        ["foo/a", "foo/b"]
    );
}

#[test]
fn historical_range_sees_the_store_as_it_was() {
    let mut store = sample();
    delete(&mut store, "b", "");
    assert_eq!(get_at(&store, "a", 4).expect("a").value, b"1");
    assert_eq!(get_at(&store, "a", 5).expect("a").value, b"11");
    assert_eq!(get_at(&store, "b", 6).expect("b").value, b"22");
    assert_eq!(get_at(&store, "b", 7), None);
    assert_eq!(get_at(&store, "d", 5), None);
    assert_eq!(get_at(&store, "a", 1), None);
    let at_three = RangeRequest {
        revision: 3,
        ..range_request("\0", "\0")
    };
    let response = range(&store, &at_three);
    assert_eq!(keys(&response), ["a", "b"]);
    assert_eq!(
        response.revision(),
        7,
        "header carries the current revision"
    );
}

#[test]
fn range_revision_zero_or_negative_reads_the_current_revision() {
    let store = sample();
    for revision in [0, -1] {
        let request = RangeRequest {
            revision,
            ..range_request("a", "")
        };
        assert_eq!(range(&store, &request).kvs[0].value, b"11");
    }
}

#[test]
fn range_at_a_future_revision_is_refused() {
    let store = sample();
    let request = RangeRequest {
        revision: 7,
        ..range_request("a", "")
    };
    let error = store.range(&request).expect_err("future");
    assert_eq!(error, KvError::FutureRevision);
    assert_eq!(
        error.to_string(),
        "mvcc: required revision is a future revision"
    );
}

#[test]
fn limit_truncates_and_sets_more_while_count_is_the_total() {
    let store = sample();
    let request = RangeRequest {
        limit: 2,
        ..range_request("\0", "\0")
    };
    let response = range(&store, &request);
    assert_eq!(keys(&response), ["a", "b"]);
    assert!(response.more);
    assert_eq!(response.count, 4);
    let exact = RangeRequest {
        limit: 4,
        ..range_request("\0", "\0")
    };
    let response = range(&store, &exact);
    assert!(!response.more);
    assert_eq!(response.kvs.len(), 4);
}

#[test]
fn count_only_returns_the_count_without_pairs() {
    let store = sample();
    let request = RangeRequest {
        count_only: true,
        limit: 1,
        ..range_request("a", "d")
    };
    let response = range(&store, &request);
    assert_eq!(response.count, 3);
    assert!(response.kvs.is_empty());
    assert!(!response.more);
}

#[test]
fn keys_only_drops_values_but_keeps_metadata() {
    let store = sample();
    let request = RangeRequest {
        keys_only: true,
        ..range_request("a", "")
    };
    let kv = &range(&store, &request).kvs[0];
    assert!(kv.value.is_empty());
    assert_eq!((kv.version, kv.mod_revision), (2, 5));
}

fn sorted(store: &Store, order: SortOrder, target: SortTarget) -> Vec<String> {
    let request = RangeRequest {
        sort_order: order.into(),
        sort_target: target.into(),
        ..range_request("\0", "\0")
    };
    keys(&range(store, &request))
}

#[test]
fn sort_by_every_target_in_both_orders() {
    let store = sample();
    use SortOrder::{Ascend, Descend};
    assert_eq!(
        sorted(&store, Ascend, SortTarget::Key),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        sorted(&store, Descend, SortTarget::Key),
        ["d", "c", "b", "a"]
    );
    // versions: a=2, others 1; ties keep key order
    assert_eq!(
        sorted(&store, Ascend, SortTarget::Version),
        ["b", "c", "d", "a"]
    );
    assert_eq!(
        sorted(&store, Descend, SortTarget::Version),
        ["a", "b", "c", "d"]
    );
    // create: a=2 b=3 c=4 d=6
    assert_eq!(
        sorted(&store, Descend, SortTarget::Create),
        ["d", "c", "b", "a"]
    );
    assert_eq!(
        sorted(&store, Ascend, SortTarget::Create),
        ["a", "b", "c", "d"]
    );
    // mod: b=3 c=4 a=5 d=6
    assert_eq!(
        sorted(&store, Ascend, SortTarget::Mod),
        ["b", "c", "a", "d"]
    );
    assert_eq!(
        sorted(&store, Descend, SortTarget::Mod),
        ["d", "a", "c", "b"]
    );
    // values: "0" < "11" < "22" < "3"
    assert_eq!(
        sorted(&store, Ascend, SortTarget::Value),
        ["d", "a", "b", "c"]
    );
    assert_eq!(
        sorted(&store, Descend, SortTarget::Value),
        ["c", "b", "a", "d"]
    );
}

#[test]
fn sort_order_none_on_a_target_other_than_key_sorts_ascending() {
    let store = sample();
    assert_eq!(
        sorted(&store, SortOrder::None, SortTarget::Mod),
        ["b", "c", "a", "d"]
    );
    assert_eq!(
        sorted(&store, SortOrder::None, SortTarget::Key),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn sort_applies_before_limit() {
    let store = sample();
    let request = RangeRequest {
        sort_order: SortOrder::Descend.into(),
        sort_target: SortTarget::Key.into(),
        limit: 1,
        ..range_request("\0", "\0")
    };
    let response = range(&store, &request);
    assert_eq!(keys(&response), ["d"]);
    assert!(response.more);
}

#[test]
fn mod_and_create_revision_filters_drop_pairs_but_not_the_count() {
    let store = sample();
    let filtered = |request: RangeRequest| {
        let response = range(&store, &request);
        (keys(&response), response.count)
    };
    let base = range_request("\0", "\0");
    let min_mod = RangeRequest {
        min_mod_revision: 5,
        ..base.clone()
    };
    assert_eq!(filtered(min_mod), (vec!["a".into(), "d".into()], 4));
    let max_mod = RangeRequest {
        max_mod_revision: 4,
        ..base.clone()
    };
    assert_eq!(filtered(max_mod).0, ["b", "c"]);
    let min_create = RangeRequest {
        min_create_revision: 4,
        ..base.clone()
    };
    assert_eq!(filtered(min_create).0, ["c", "d"]);
    let max_create = RangeRequest {
        max_create_revision: 3,
        ..base.clone()
    };
    assert_eq!(filtered(max_create).0, ["a", "b"]);
    let limited = RangeRequest {
        min_mod_revision: 4,
        limit: 2,
        ..base
    };
    let response = range(&store, &limited);
    assert_eq!(keys(&response), ["a", "c"]);
    assert!(response.more, "more counts pairs that passed the filters");
}
