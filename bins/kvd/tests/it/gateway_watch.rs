//! The gateway's streaming calls behind the real hyper server over an in-memory backend:
//! watches (history from a revision, prefixes, prev_kv, filters, cancel, progress, compaction,
//! lag recovery) and lease keep-alives.

use crate::support;

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};
use sinew_kvd::gateway::Config;
use sinew_kvd::v3::{Command, PutRequest};
use support::client::{post, Stream};
use support::memory::{CLUSTER_ID, MEMBER_ID};
use support::{b64, MemoryBackend, Server};

const QUIET: Duration = Duration::from_millis(300);

fn header(revision: i64) -> Value {
    json!({
        "cluster_id": CLUSTER_ID.to_string(),
        "member_id": MEMBER_ID.to_string(),
        "revision": revision.to_string(),
        "raft_term": "3",
    })
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> Value {
    json!({
        "key": b64(key),
        "create_revision": create.to_string(),
        "mod_revision": modified.to_string(),
        "version": version.to_string(),
        "value": b64(value),
    })
}

async fn put(server: &Server, key: &str, value: &str) {
    let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
    assert_eq!(
        post(server.addr, "/v3/kv/put", &body).await.status,
        StatusCode::OK
    );
}

async fn delete(server: &Server, key: &str) {
    let body = format!(r#"{{"key":"{}"}}"#, b64(key));
    assert_eq!(
        post(server.addr, "/v3/kv/deleterange", &body).await.status,
        StatusCode::OK
    );
}

fn create(key: &str, range_end: &str, extra: &str) -> String {
    format!(
        r#"{{"create_request":{{"key":"{}","range_end":"{}"{extra}}}}}"#,
        b64(key),
        b64(range_end)
    )
}

#[tokio::test]
async fn a_watch_replays_history_then_streams_changes_to_its_prefix() {
    let server = Server::start().await;
    put(&server, "q1", "a").await;
    put(&server, "q1", "b").await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch
        .send(&create("q", "r", r#","start_revision":"2","prev_kv":true"#))
        .await;
    assert_eq!(watch.status().await, StatusCode::OK);
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(3), "created": true}})
    );
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(3), "events": [
            {"kv": kv("q1", "a", 2, 2, 1)},
            {"kv": kv("q1", "b", 2, 3, 2), "prev_kv": kv("q1", "a", 2, 2, 1)},
        ]}})
    );
    delete(&server, "q1").await;
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(4), "events": [
            {"type": "DELETE", "kv": {"key": b64("q1"), "mod_revision": "4"}, "prev_kv": kv("q1", "b", 2, 3, 2)},
        ]}})
    );
    let txn = format!(
        r#"{{"success":[{{"request_put":{{"key":"{}","value":"{}"}}}},{{"request_put":{{"key":"{}","value":"{}"}}}}]}}"#,
        b64("q2"),
        b64("x"),
        b64("q3"),
        b64("y")
    );
    post(server.addr, "/v3/kv/txn", &txn).await;
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(5), "events": [
            {"kv": kv("q2", "x", 5, 5, 1)},
            {"kv": kv("q3", "y", 5, 5, 1)},
        ]}})
    );
    put(&server, "z", "outside").await;
    watch.expect_silence(QUIET).await;
}

#[tokio::test]
async fn filters_drop_the_kinds_of_events_asked_for() {
    let server = Server::start().await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch
        .send(&create("f", "g", r#","filters":["NOPUT"],"watch_id":7"#))
        .await;
    assert_eq!(watch.next().await["result"]["watch_id"], "7");
    watch.send(&create("f", "g", r#","filters":[1]"#)).await;
    assert_eq!(
        watch.next().await["result"],
        json!({"header": header(1), "created": true})
    );
    watch
        .send(&create("f", "g", r#","filters":["NODELETE","NOPUT"]"#))
        .await;
    assert_eq!(watch.next().await["result"]["watch_id"], "1");
    put(&server, "f1", "v").await;
    let only_puts = watch.next().await["result"].clone();
    assert_eq!(only_puts["events"], json!([{"kv": kv("f1", "v", 2, 2, 1)}]));
    assert!(
        only_puts.get("watch_id").is_none(),
        "watcher 0 gets puts: {only_puts}"
    );
    delete(&server, "f1").await;
    let only_deletes = watch.next().await["result"].clone();
    assert_eq!(only_deletes["watch_id"], "7");
    assert_eq!(only_deletes["events"][0]["type"], "DELETE");
    watch.expect_silence(QUIET).await;
}

#[tokio::test]
async fn cancel_progress_and_duplicate_ids() {
    let server = Server::start().await;
    put(&server, "c", "1").await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch.send(&create("c", "", "")).await;
    assert_eq!(watch.next().await["result"]["created"], true);
    watch.send(&create("c", "", r#","watch_id":"3""#)).await;
    assert_eq!(watch.next().await["result"]["watch_id"], "3");
    watch.send(&create("c", "", r#","watch_id":3"#)).await;
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(2), "watch_id": "-1", "created": true, "canceled": true,
            "cancel_reason": "mvcc: duplicate watch ID provided on the WatchStream"}})
    );
    watch.send(r#"{"progress_request":{}}"#).await;
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(2), "watch_id": "-1"}})
    );
    watch.send(r#"{"cancel_request":{"watch_id":"0"}}"#).await;
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(2), "canceled": true}})
    );
    watch.send(r#"{"cancel_request":{"watch_id":55}}"#).await;
    watch.send(r#"{"bogus":1}"#).await;
    watch.expect_silence(QUIET).await;
    put(&server, "c", "2").await;
    let event = watch.next().await["result"].clone();
    assert_eq!(
        event["watch_id"], "3",
        "only the remaining watcher: {event}"
    );
    watch.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_cancelled_with_the_compaction() {
    let server = Server::start().await;
    for value in ["1", "2", "3"] {
        put(&server, "old", value).await;
    }
    post(server.addr, "/v3/kv/compaction", r#"{"revision":3}"#).await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch
        .send(&create("old", "", r#","start_revision":2"#))
        .await;
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": header(4), "created": true}})
    );
    let mut no_revision = header(0);
    no_revision.as_object_mut().unwrap().remove("revision");
    assert_eq!(
        watch.next().await,
        json!({"result": {"header": no_revision, "canceled": true, "compact_revision": "3"}})
    );
    // The compacted revision itself is still watchable.
    watch
        .send(&create("old", "", r#","start_revision":3"#))
        .await;
    assert_eq!(watch.next().await["result"]["watch_id"], "1");
    let history = watch.next().await["result"].clone();
    assert_eq!(history["events"].as_array().unwrap().len(), 2, "{history}");
}

#[tokio::test]
async fn a_lagging_watch_catches_up_from_history() {
    let server = Server::start_with(MemoryBackend::with_watch_capacity(1), Config::default()).await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch.send(&create("lag", "lah", "")).await;
    assert_eq!(watch.next().await["result"]["created"], true);
    let burst: Vec<Command> = (0..6)
        .map(|index| {
            Command::Put(PutRequest {
                key: format!("lag{index}").into_bytes(),
                value: b"v".to_vec(),
                ..PutRequest::default()
            })
        })
        .collect();
    server.backend.apply_burst(&burst);
    let mut seen = Vec::new();
    while seen.len() < burst.len() {
        let message = watch.next().await;
        for event in message["result"]["events"].as_array().expect("events") {
            seen.push(
                event["kv"]["mod_revision"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(seen, (2..8).collect::<Vec<_>>());
    watch.expect_silence(QUIET).await;
}

#[tokio::test]
async fn progress_notifications_come_while_nothing_happens() {
    let config = Config {
        progress_notify_interval: Duration::from_millis(200),
        ..Config::default()
    };
    let server = Server::start_with(MemoryBackend::new(), config).await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch
        .send(&create("p", "", r#","progress_notify":true,"watch_id":5"#))
        .await;
    watch.send(&create("p", "", "")).await;
    assert_eq!(watch.next().await["result"]["watch_id"], "5");
    // The second watch's creation and the first's notification race (200 ms in).
    let next = [watch.next().await, watch.next().await];
    assert!(
        next.iter()
            .any(|answer| answer["result"]["created"] == true),
        "{next:?}"
    );
    assert!(
        next.contains(&json!({"result": {"header": header(1), "watch_id": "5"}})),
        "{next:?}"
    );
}

#[tokio::test]
async fn the_end_of_the_request_body_does_not_end_the_watch() {
    let server = Server::start().await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch.send(&create("e", "", "")).await;
    watch.finish();
    assert_eq!(watch.next().await["result"]["created"], true);
    put(&server, "e", "still").await;
    assert_eq!(
        watch.next().await["result"]["events"][0]["kv"]["value"],
        b64("still")
    );
}

#[tokio::test]
async fn bad_watch_requests_end_the_stream_with_an_error() {
    let server = Server::start().await;
    let mut junk = Stream::open(server.addr, "/v3/watch").await;
    junk.send("junk").await;
    assert_eq!(junk.status().await, StatusCode::INTERNAL_SERVER_ERROR);
    let error = junk.next().await;
    assert_eq!(error["code"], 2, "{error}");
    assert_eq!(error["error"], error["message"]);

    let mut late = Stream::open(server.addr, "/v3/watch").await;
    late.send(&create("l", "", "")).await;
    assert_eq!(late.next().await["result"]["created"], true);
    late.send(r#"{"create_request":{"key":"!!"}}"#).await;
    let chunk = late.next().await;
    assert_eq!(chunk["error"]["grpc_code"], 2, "{chunk}");
    assert_eq!(chunk["error"]["http_code"], 500);
    assert_eq!(
        chunk["error"]["message"],
        "illegal base64 data at input byte 0"
    );
    assert_eq!(chunk["error"]["http_status"], "Internal Server Error");
    assert!(
        late.next_line().await.is_none(),
        "the stream ends after its error"
    );
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let server = Server::start().await;
    let mut watch = Stream::open(server.addr, "/v3/watch").await;
    watch.send(&create("s", "", "")).await;
    assert_eq!(watch.next().await["result"]["created"], true);
    tokio::time::timeout(Duration::from_secs(3), server.shutdown())
        .await
        .expect("shutdown does not wait for open watches");
    let end = tokio::time::timeout(Duration::from_secs(3), watch.next_line())
        .await
        .expect("the watch ends");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn keepalive_renews_each_requested_lease_until_the_body_ends() {
    let server = Server::start().await;
    post(server.addr, "/v3/lease/grant", r#"{"TTL":60,"ID":9}"#).await;
    let mut keepalive = Stream::open(server.addr, "/v3/lease/keepalive").await;
    keepalive.send(r#"{"ID":9}"#).await;
    keepalive.send(r#"{"ID":"9"} {"ID":12345}"#).await;
    keepalive.finish();
    let renewed = json!({"result": {"header": header(1), "ID": "9", "TTL": "60"}});
    assert_eq!(keepalive.next().await, renewed);
    assert_eq!(keepalive.next().await, renewed);
    // An unknown lease gets TTL 0, which proto3 JSON leaves out.
    assert_eq!(
        keepalive.next().await,
        json!({"result": {"header": header(1), "ID": "12345"}})
    );
    assert!(keepalive.next_line().await.is_none());

    let mut garbage = Stream::open(server.addr, "/v3/lease/keepalive").await;
    garbage.send("garbage").await;
    assert_eq!(garbage.status().await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(garbage.next().await["code"], 2);
}
