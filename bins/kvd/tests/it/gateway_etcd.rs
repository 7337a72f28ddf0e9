//! Side by side with a real etcd 3.4: the same requests against etcd and the real `kvd` binary
//! (both one-member clusters started with the same flags) must
//! (cluster and member ids, the Raft term, seconds left on a lease, the order of the lease
//! list). Needs `etcd` on the PATH (`apt-get install etcd-server`); fails without it.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::Value;
use support::client::{call, post, Answer, Stream};
use support::etcd::Etcd;
use support::{b64, json};

/// An etcd and a kvd gateway, both fresh.
struct Pair {
    etcd: Etcd,
    kvd: Etcd,
}

/// Drops what legitimately differs between two members of different clusters.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(header)) = object.get_mut("header") {
                for field in ["cluster_id", "member_id", "raft_term"] {
                    header.remove(field);
                }
            }
            if let Some(Value::Array(leases)) = object.get_mut("leases") {
                leases.sort_by_key(|lease| lease["ID"].as_str().map(str::to_owned));
            }
            // etcd lists a lease's keys in its map's order.
            if let Some(Value::Array(keys)) = object.get_mut("keys") {
                keys.sort_by_key(|key| key.as_str().map(str::to_owned));
            }
            object.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn normalized(answer: &Answer) -> Value {
    let mut value = json(&answer.body);
    normalize(&mut value);
    value
}

impl Pair {
    async fn start() -> Self {
        Self {
            etcd: Etcd::start().await,
            kvd: Etcd::start_kvd().await,
        }
    }

    async fn both(&self, path: &str, body: &str) -> (Answer, Answer) {
        (
            post(self.etcd.addr, path, body).await,
            post(self.kvd.addr, path, body).await,
        )
    }

    /// Asserts the same status and JSON; returns kvd's JSON.
    async fn same(&self, path: &str, body: &str) -> Value {
        let (etcd, kvd) = self.both(path, body).await;
        assert_eq!(
            (etcd.status, normalized(&etcd)),
            (kvd.status, normalized(&kvd)),
            "{path} {body}\n etcd: {}\n kvd:  {}",
            etcd.body,
            kvd.body
        );
        kvd.json()
    }

    /// Asserts the same status and gRPC code: for decoding errors, whose messages come from
    /// Go's JSON decoder in etcd.
    async fn same_code(&self, path: &str, body: &str) {
        let (etcd, kvd) = self.both(path, body).await;
        assert_eq!(
            (etcd.status, etcd.json()["code"].clone()),
            (kvd.status, kvd.json()["code"].clone()),
            "{path} {body}\n etcd: {}\n kvd:  {}",
            etcd.body,
            kvd.body
        );
    }

    async fn put(&self, key: &str, value: &str) {
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        self.same("/v3/kv/put", &body).await;
    }
}

fn key(key: &str) -> String {
    format!(r#"{{"key":"{}"}}"#, b64(key))
}

fn span(key: &str, range_end: &str, extra: &str) -> String {
    format!(
        r#"{{"key":"{}","range_end":"{}"{extra}}}"#,
        b64(key),
        b64(range_end)
    )
}

const EVERY_KEY: &str = r#"{"key":"AA==","range_end":"AA==""#;

#[tokio::test]
async fn puts_ranges_and_deletes_match_etcd() {
    let pair = Pair::start().await;
    pair.put("foo", "bar").await;
    pair.same(
        "/v3/kv/put",
        &format!(
            r#"{{"key":"{}","value":"{}","prev_kv":true}}"#,
            b64("foo"),
            b64("baz")
        ),
    )
    .await;
    for (key, value) in [("a", "3"), ("ab", "1"), ("b", "2"), ("c", "0"), ("a", "4")] {
        pair.put(key, value).await;
    }
    let reads = [
        key("foo"),
        key("missing"),
        span("a", "b", ""),
        format!("{EVERY_KEY}}}"),
        format!(r#"{EVERY_KEY},"limit":2}}"#),
        format!(r#"{EVERY_KEY},"limit":"2","sort_order":"DESCEND","sort_target":"VALUE"}}"#),
        format!(r#"{EVERY_KEY},"sort_target":"CREATE"}}"#),
        format!(r#"{EVERY_KEY},"sort_order":"DESCEND","sort_target":"MOD"}}"#),
        format!(r#"{EVERY_KEY},"sort_order":1,"sort_target":1}}"#),
        format!(r#"{EVERY_KEY},"keys_only":true}}"#),
        format!(r#"{EVERY_KEY},"count_only":true}}"#),
        format!(r#"{EVERY_KEY},"revision":2}}"#),
        format!(r#"{EVERY_KEY},"revision":"5","limit":1}}"#),
        format!(r#"{EVERY_KEY},"min_mod_revision":5}}"#),
        format!(r#"{EVERY_KEY},"max_create_revision":"5","min_create_revision":4}}"#),
        format!(r#"{EVERY_KEY},"max_mod_revision":6,"serializable":true}}"#),
        format!(r#"{EVERY_KEY},"revision":100}}"#),
        format!(r#"{EVERY_KEY},"revision":-1}}"#),
        span("b", "a", ""),
        r#"{"key":""}"#.to_owned(),
        String::new(),
    ];
    for read in &reads {
        pair.same("/v3/kv/range", read).await;
    }
    pair.same("/v3/kv/deleterange", &span("a", "b", r#","prev_kv":true"#))
        .await;
    pair.same("/v3/kv/deleterange", &key("missing")).await;
    pair.same("/v3/kv/deleterange", &span("b", "\0", "")).await;
    pair.same("/v3/kv/range", &format!("{EVERY_KEY}}}")).await;
    pair.same("/v3/kv/range", &format!(r#"{EVERY_KEY},"revision":8}}"#))
        .await;
}

#[tokio::test]
async fn transactions_match_etcd() {
    let pair = Pair::start().await;
    pair.put("t1", "one").await;
    pair.put("t2", "two").await;
    pair.put("t1", "uno").await;
    let compare = |target: &str, result: &str, operand: &str| {
        format!(
            r#"{{"key":"{}","target":"{target}","result":"{result}"{operand}}}"#,
            b64("t1")
        )
    };
    let ops = format!(
        r#""success":[{{"request_range":{{"key":"{t}","range_end":"{u}"}}}},{{"request_put":{{"key":"{t3}","value":"{v}","prev_kv":true}}}},{{"request_delete_range":{{"key":"{t2}","prev_kv":true}}}}],
           "failure":[{{"request_range":{{"key":"{t1}"}}}},{{"request_txn":{{"success":[{{"request_put":{{"key":"{t4}","value":"{v}"}}}}],"compare":[{{"key":"{t4}","target":"VERSION","version":0}}]}}}}]"#,
        t = b64("t"),
        u = b64("u"),
        t1 = b64("t1"),
        t2 = b64("t2"),
        t3 = b64("t3"),
        t4 = b64("t4"),
        v = b64("v"),
    );
    let value = format!(r#","value":"{}""#, b64("uno"));
    let conditions = [
        compare("VALUE", "EQUAL", &value),
        compare("VALUE", "NOT_EQUAL", &value),
        compare("VERSION", "GREATER", r#","version":"1""#),
        compare("VERSION", "LESS", r#","version":2"#),
        compare("CREATE", "EQUAL", r#","create_revision":"2""#),
        compare("MOD", "LESS", r#","mod_revision":4"#),
        compare("LEASE", "EQUAL", r#","lease":"0""#),
        compare("MOD", "GREATER", ""),
        format!(
            r#"{{"key":"{}","range_end":"{}","target":"VERSION","result":"GREATER","version":0}}"#,
            b64("t"),
            b64("u")
        ),
    ];
    for condition in &conditions {
        let txn = format!(r#"{{"compare":[{condition}],{ops}}}"#);
        pair.same("/v3/kv/txn", &txn).await;
    }
    pair.same("/v3/kv/txn", "{}").await;
    let duplicate = format!(
        r#"{{"success":[{{"request_put":{{"key":"{k}"}}}},{{"request_delete_range":{{"key":"{k}"}}}}]}}"#,
        k = b64("t1")
    );
    pair.same("/v3/kv/txn", &duplicate).await;
    pair.same("/v3/kv/txn", r#"{"success":[{}]}"#).await;
    let empty_compare = r#"{"compare":[{"key":""}]}"#;
    pair.same("/v3/kv/txn", empty_compare).await;
    pair.same("/v3/kv/range", &format!("{EVERY_KEY}}}")).await;
}

#[tokio::test]
async fn compaction_matches_etcd() {
    let pair = Pair::start().await;
    for value in ["1", "2", "3", "4"] {
        pair.put("k", value).await;
    }
    pair.put("gone", "x").await;
    pair.same("/v3/kv/deleterange", &key("gone")).await;
    pair.same("/v3/kv/compaction", r#"{"revision":"4"}"#).await;
    for revision in [2, 3, 4, 5, 7, 8] {
        let read = format!(r#"{EVERY_KEY},"revision":{revision}}}"#);
        pair.same("/v3/kv/range", &read).await;
    }
    pair.same("/v3/kv/compaction", r#"{"revision":"4"}"#).await;
    pair.same("/v3/kv/compaction", r#"{"revision":3}"#).await;
    pair.same("/v3/kv/compaction", r#"{"revision":100}"#).await;
    pair.same("/v3/kv/compaction", r#"{"revision":7,"physical":true}"#)
        .await;
    pair.same("/v3/kv/range", &format!(r#"{EVERY_KEY},"revision":6}}"#))
        .await;
}

#[tokio::test]
async fn leases_match_etcd() {
    let pair = Pair::start().await;
    pair.same("/v3/lease/grant", r#"{"TTL":60,"ID":4242}"#)
        .await;
    pair.same("/v3/lease/grant", r#"{"TTL":"120","ID":"4343"}"#)
        .await;
    pair.same("/v3/lease/grant", r#"{"TTL":60,"ID":4242}"#)
        .await;
    pair.same("/v3/lease/grant", r#"{"TTL":9000000001,"ID":1}"#)
        .await;
    for key in ["l1", "l2"] {
        let body = format!(
            r#"{{"key":"{}","value":"{}","lease":4242}}"#,
            b64(key),
            b64("v")
        );
        pair.same("/v3/kv/put", &body).await;
    }
    pair.same(
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","lease":"7"}}"#, b64("l3")),
    )
    .await;
    pair.same(
        "/v3/kv/put",
        &format!(
            r#"{{"key":"{}","ignore_lease":true,"value":"{}"}}"#,
            b64("l1"),
            b64("w")
        ),
    )
    .await;
    pair.same("/v3/kv/range", &span("l", "m", "")).await;
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        for body in [r#"{"ID":4242,"keys":true}"#, r#"{"ID":"4343"}"#] {
            let (etcd, kvd) = pair.both(path, body).await;
            let (mut etcd, mut kvd) = (normalized(&etcd), normalized(&kvd));
            // Seconds left depend on when each server's clock started the lease.
            for answer in [&mut etcd, &mut kvd] {
                let left: i64 = answer["TTL"]
                    .as_str()
                    .expect("TTL")
                    .parse()
                    .expect("number");
                let granted: i64 = answer["grantedTTL"]
                    .as_str()
                    .expect("granted")
                    .parse()
                    .expect("number");
                assert!((granted - 3..=granted).contains(&left), "{answer}");
                answer["TTL"] = Value::Null;
            }
            assert_eq!(etcd, kvd, "{path} {body}");
        }
    }
    pair.same("/v3/lease/timetolive", r#"{"ID":999}"#).await;
    pair.same("/v3/lease/leases", "{}").await;
    pair.same("/v3/kv/lease/leases", "{}").await;
    pair.same("/v3/lease/revoke", r#"{"ID":4242}"#).await;
    pair.same("/v3/kv/range", &span("l", "m", "")).await;
    pair.same("/v3/kv/lease/revoke", r#"{"ID":"4242"}"#).await;
    pair.same("/v3/lease/timetolive", r#"{"ID":4242,"keys":true}"#)
        .await;
    pair.same("/v3/lease/leases", "{}").await;

    let mut etcd = Stream::open(pair.etcd.addr, "/v3/lease/keepalive").await;
    let mut kvd = Stream::open(pair.kvd.addr, "/v3/lease/keepalive").await;
    for stream in [&mut etcd, &mut kvd] {
        stream.send(r#"{"ID":4343} {"ID":"4242"}"#).await;
        stream.finish();
    }
    for _ in 0..2 {
        let (mut from_etcd, mut from_kvd) = (etcd.next().await, kvd.next().await);
        normalize(&mut from_etcd);
        normalize(&mut from_kvd);
        assert_eq!(from_etcd, from_kvd);
    }
    assert_eq!(etcd.next_line().await, None);
    assert_eq!(kvd.next_line().await, None);
}

/// Sends a watch request to both streams. etcd's gateway acts on a streamed request only once
/// it has read the start of the next one, so an empty request (which both ignore) follows.
async fn send_both(etcd: &mut Stream, kvd: &mut Stream, request: &str) {
    for stream in [etcd, kvd] {
        stream.send(&format!("{request} {{}}")).await;
    }
}

/// Reads `count` messages from a watch stream and files them by watch id (etcd sends the
/// answers of different watchers in no fixed order).
async fn by_watcher(stream: &mut Stream, count: usize) -> BTreeMap<String, Vec<Value>> {
    let mut filed: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for _ in 0..count {
        let mut message = stream.next().await;
        normalize(&mut message);
        let id = message["result"]["watch_id"]
            .as_str()
            .unwrap_or("0")
            .to_owned();
        filed.entry(id).or_default().push(message);
    }
    filed
}

#[tokio::test]
async fn watches_match_etcd() {
    let pair = Pair::start().await;
    pair.put("w1", "a").await;
    pair.put("w2", "b").await;
    pair.put("w1", "c").await;
    let mut etcd = Stream::open(pair.etcd.addr, "/v3/watch").await;
    let mut kvd = Stream::open(pair.kvd.addr, "/v3/watch").await;
    let creates = [
        format!(
            r#"{{"create_request":{{"key":"{}","range_end":"{}","start_revision":"2","prev_kv":true}}}}"#,
            b64("w"),
            b64("x")
        ),
        format!(
            r#"{{"create_request":{{"key":"{}","range_end":"{}","filters":["NOPUT"],"watch_id":7}}}}"#,
            b64("w"),
            b64("x")
        ),
        format!(
            r#"{{"create_request":{{"key":"{}","start_revision":3}}}}"#,
            b64("w2")
        ),
        format!(
            r#"{{"create_request":{{"key":"{}","watch_id":7}}}}"#,
            b64("w2")
        ),
        r#"{"create_request":{"key":"AA==","range_end":"AA==","filters":[1],"prev_kv":true}}"#
            .to_owned(),
        format!(
            r#"{{"create_request":{{"key":"{}","start_revision":"7"}}}}"#,
            b64("zz")
        ),
    ];
    // One at a time, so both servers see them in the same order; with how many messages each
    // is answered (created, and the history if there is any).
    for (create, answers) in creates.iter().zip([2, 1, 2, 1, 1, 1]) {
        send_both(&mut etcd, &mut kvd, create).await;
        let (from_etcd, from_kvd) = (
            by_watcher(&mut etcd, answers).await,
            by_watcher(&mut kvd, answers).await,
        );
        assert_eq!(from_etcd, from_kvd, "after {create}");
    }

    pair.same("/v3/kv/deleterange", &key("w1")).await;
    pair.put("w2", "d").await;
    let txn = format!(
        r#"{{"success":[{{"request_put":{{"key":"{}","value":"{}"}}}},{{"request_put":{{"key":"{}","value":"{}"}}}}]}}"#,
        b64("w3"),
        b64("e"),
        b64("zz"),
        b64("f")
    );
    pair.same("/v3/kv/txn", &txn).await;
    // Delete: watchers 0 and 7. Put w2: watchers 0, 1 and 2. Txn: watchers 0, 2 and 3 (whose
    // start revision it reaches).
    let (from_etcd, from_kvd) = (
        by_watcher(&mut etcd, 8).await,
        by_watcher(&mut kvd, 8).await,
    );
    assert_eq!(from_etcd, from_kvd);

    send_both(&mut etcd, &mut kvd, r#"{"progress_request":{}}"#).await;
    assert_eq!(
        by_watcher(&mut etcd, 1).await,
        by_watcher(&mut kvd, 1).await
    );
    send_both(
        &mut etcd,
        &mut kvd,
        r#"{"cancel_request":{"watch_id":"1"}}"#,
    )
    .await;
    assert_eq!(
        by_watcher(&mut etcd, 1).await,
        by_watcher(&mut kvd, 1).await
    );
    // Watchers 0 and 2; 1 is gone.
    pair.put("w2", "g").await;
    assert_eq!(
        by_watcher(&mut etcd, 2).await,
        by_watcher(&mut kvd, 2).await
    );

    pair.same("/v3/kv/compaction", r#"{"revision":5}"#).await;
    let compacted = format!(
        r#"{{"create_request":{{"key":"{}","start_revision":2}}}}"#,
        b64("w1")
    );
    send_both(&mut etcd, &mut kvd, &compacted).await;
    assert_eq!(
        by_watcher(&mut etcd, 2).await,
        by_watcher(&mut kvd, 2).await
    );
    for stream in [&mut etcd, &mut kvd] {
        stream.expect_silence(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn errors_match_etcd() {
    let pair = Pair::start().await;
    pair.put("k", "v").await;
    let exact = [
        (
            "/v3/kv/put",
            format!(r#"{{"key":"{}","ignore_value":true}}"#, b64("none")),
        ),
        (
            "/v3/kv/put",
            format!(
                r#"{{"key":"{}","value":"eA==","ignore_value":true}}"#,
                b64("k")
            ),
        ),
        (
            "/v3/kv/put",
            format!(r#"{{"key":"{}","lease":5,"ignore_lease":true}}"#, b64("k")),
        ),
        ("/v3/kv/put", "null".to_owned()),
        ("/v3/kv/range", r#"{"key":"!!"}"#.to_owned()),
        ("/v3/kv/range", r#"{"key":"Zm9v"#.to_owned()),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v","sort_order":"BOGUS"}"#.to_owned(),
        ),
        ("/v3/kv/range", r#"{"key":"Zm9v","limit":1.5}"#.to_owned()),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v","limit":"99999999999999999999"}"#.to_owned(),
        ),
        ("/v3/kv/range", r#"{"key":"Zm9v","limit":true}"#.to_owned()),
        ("/v3/kv/put", r#"{"key":"Zm9v","prev_kv":"yes"}"#.to_owned()),
        ("/v3/kv/put", "[1]".to_owned()),
        (
            "/v3/kv/range",
            format!(r#"{{"key":"{}","foo":{{"bar":1}}}} trailing"#, b64("k")),
        ),
        ("/v3/lease/revoke", r#"{"ID":1}"#.to_owned()),
        ("/v3/cluster/member/remove", r#"{"ID":"1"}"#.to_owned()),
        ("/v3/cluster/member/promote", r#"{"ID":"1"}"#.to_owned()),
        (
            "/v3/cluster/member/add",
            r#"{"peerURLs":["bad url"]}"#.to_owned(),
        ),
        (
            "/v3/maintenance/transfer-leadership",
            r#"{"targetID":"123"}"#.to_owned(),
        ),
    ];
    for (path, body) in &exact {
        pair.same(path, body).await;
    }
    let code_only = [
        ("/v3/kv/range", r#"{"key":"Zm9v","limit":"abc"}"#),
        ("/v3/kv/range", "{bad json"),
        ("/v3/kv/txn", r#"{"compare":"nope"}"#),
    ];
    for (path, body) in code_only {
        pair.same_code(path, body).await;
    }
    let cors = |answer: &Answer| -> Vec<String> {
        answer
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("access-control-"))
            .map(|(name, value)| format!("{name}: {}", value.to_str().expect("header")))
            .collect()
    };
    let plain = [
        (Method::POST, "/v3/kv/bogus"),
        (Method::GET, "/v3/kv/range"),
        (Method::PUT, "/v3/watch"),
        (Method::OPTIONS, "/v3/kv/range"),
        (Method::OPTIONS, "/v3/kv/bogus"),
        (Method::POST, "/v3/maintenance/status"),
    ];
    for (method, path) in plain {
        let etcd = call(pair.etcd.addr, method.clone(), path, "").await;
        let kvd = call(pair.kvd.addr, method.clone(), path, "").await;
        assert_eq!(cors(&etcd), cors(&kvd), "{method} {path}");
        assert!(!cors(&kvd).is_empty());
        if path != "/v3/maintenance/status" {
            assert_eq!(
                (etcd.status, etcd.body, etcd.content_type),
                (kvd.status, kvd.body, kvd.content_type),
                "{method} {path}"
            );
        }
    }
    let put = |size: usize| {
        format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64("big"),
            b64(&"x".repeat(size))
        )
    };
    pair.same("/v3/kv/put", &put(1_572_864 - 100)).await;
    pair.same("/v3/kv/put", &put(1_572_864)).await;
    let (etcd, kvd) = pair.both("/v3/kv/put", &put(2_200_000)).await;
    assert_eq!(
        (etcd.status, etcd.json()["code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, kvd.json()["code"].clone())
    );
    assert_eq!(kvd.status, StatusCode::TOO_MANY_REQUESTS);
    for answer in [&etcd, &kvd] {
        let message = answer.json()["message"]
            .as_str()
            .expect("message")
            .to_owned();
        assert!(
            message.starts_with("grpc: received message larger than max (2200")
                && message.ends_with(" vs. 2097152)"),
            "{message}"
        );
    }
    let mut etcd_watch = Stream::open(pair.etcd.addr, "/v3/watch").await;
    let mut kvd_watch = Stream::open(pair.kvd.addr, "/v3/watch").await;
    for stream in [&mut etcd_watch, &mut kvd_watch] {
        stream.send("junk").await;
    }
    assert_eq!(etcd_watch.status().await, kvd_watch.status().await);
    assert_eq!(
        etcd_watch.next().await["code"],
        kvd_watch.next().await["code"]
    );
}
