//! The gateway behind the real hyper server over an in-memory single-node backend: every
//! unary endpoint, the wire format, and every kind of bad request.

use crate::support;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sinew_kvd::gateway::Config;
use support::client::{call, post};
use support::memory::{CLUSTER_ID, MEMBER_ID};
use support::{b64, MemoryBackend, Server};

fn header(revision: i64) -> Value {
    json!({
        "cluster_id": CLUSTER_ID.to_string(),
        "member_id": MEMBER_ID.to_string(),
        "revision": revision.to_string(),
        "raft_term": "3",
    })
}

fn error(message: &str, code: i64) -> Value {
    json!({"error": message, "message": message, "code": code})
}

#[tokio::test]
async fn put_and_range_speak_etcds_json() {
    let server = Server::start().await;
    let put = post(
        server.addr,
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","value":"{}"}}"#, b64("foo"), b64("bar")),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.content_type, "application/json");
    assert_eq!(
        put.headers["content-length"],
        put.body.len().to_string().as_str()
    );
    assert_eq!(put.json(), json!({"header": header(2)}));
    // Numbers as strings in, prev_kv out.
    let again = post(
        server.addr,
        "/v3beta/kv/put",
        &format!(
            r#"{{"key":"{}","value":"{}","prev_kv":true,"lease":"0"}}"#,
            b64("foo"),
            b64("baz")
        ),
    )
    .await;
    assert_eq!(
        again.json(),
        json!({"header": header(3), "prev_kv": {
            "key": b64("foo"), "create_revision": "2", "mod_revision": "2", "version": "1", "value": b64("bar")
        }})
    );
    let range = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("foo")),
    )
    .await;
    // Exact bytes: field order and string integers as etcd writes them.
    assert_eq!(
        range.body,
        format!(
            r#"{{"header":{{"cluster_id":"{CLUSTER_ID}","member_id":"{MEMBER_ID}","revision":"3","raft_term":"3"}},"kvs":[{{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}}],"count":"1"}}"#
        )
    );
    let missing = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("nope")),
    )
    .await;
    assert_eq!(missing.json(), json!({"header": header(3)}));
}

#[tokio::test]
async fn range_options_prefix_limit_sort_keys_and_count_only() {
    let server = Server::start().await;
    for (key, value) in [("a", "3"), ("ab", "1"), ("b", "2"), ("c", "0")] {
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        assert_eq!(
            post(server.addr, "/v3/kv/put", &body).await.status,
            StatusCode::OK
        );
    }
    let keys = |answer: &Value| -> Vec<String> {
        answer["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| kv["key"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let prefix = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64("a"), b64("b")),
    )
    .await
    .json();
    assert_eq!(keys(&prefix), [b64("a"), b64("ab")]);
    assert_eq!(prefix["count"], "2");
    let limited = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}","range_end":"AA==","limit":2,"sort_order":"DESCEND","sort_target":"VALUE"}}"#, b64("a")),
    )
    .await
    .json();
    assert_eq!(keys(&limited), [b64("a"), b64("b")]);
    assert_eq!(
        (limited["more"].clone(), limited["count"].clone()),
        (json!(true), json!("4"))
    );
    let keys_only = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}","keysOnly":true}}"#, b64("c")),
    )
    .await
    .json();
    assert!(keys_only["kvs"][0].get("value").is_none(), "{keys_only}");
    let count_only = post(
        server.addr,
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
    )
    .await
    .json();
    assert_eq!(count_only, json!({"header": header(5), "count": "4"}));
    let old = post(
        server.addr,
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","revision":"3","serializable":true}"#,
    )
    .await
    .json();
    assert_eq!(keys(&old), [b64("a"), b64("ab")]);
}

#[tokio::test]
async fn delete_txn_and_compaction() {
    let server = Server::start().await;
    for key in ["k1", "k2", "k3"] {
        post(
            server.addr,
            "/v3/kv/put",
            &format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64("v")),
        )
        .await;
    }
    let deleted = post(
        server.addr,
        "/v3/kv/deleterange",
        &format!(
            r#"{{"key":"{}","range_end":"{}","prev_kv":true}}"#,
            b64("k1"),
            b64("k3")
        ),
    )
    .await
    .json();
    assert_eq!(deleted["deleted"], "2");
    assert_eq!(deleted["prev_kvs"].as_array().unwrap().len(), 2);
    assert_eq!(deleted["header"], header(5));

    let txn = format!(
        r#"{{"compare":[{{"key":"{k3}","target":"VALUE","result":"EQUAL","value":"{v}"}},
            {{"key":"{k3}","target":"VERSION","result":"LESS","version":"2"}}],
            "success":[{{"request_range":{{"key":"{k3}"}}}},{{"request_put":{{"key":"{k4}","value":"{v}"}}}},
                       {{"request_txn":{{"success":[{{"request_delete_range":{{"key":"{k3}"}}}}]}}}}],
            "failure":[{{"request_put":{{"key":"{k5}","value":"{v}"}}}}]}}"#,
        k3 = b64("k3"),
        k4 = b64("k4"),
        k5 = b64("k5"),
        v = b64("v"),
    );
    let answer = post(server.addr, "/v3/kv/txn", &txn).await.json();
    assert_eq!(answer["succeeded"], true);
    assert_eq!(answer["header"], header(6));
    let responses = answer["responses"].as_array().unwrap();
    assert_eq!(
        responses[0]["response_range"]["header"],
        json!({"revision": "5"})
    );
    assert_eq!(responses[0]["response_range"]["count"], "1");
    assert_eq!(
        responses[1]["response_put"]["header"],
        json!({"revision": "6"})
    );
    // A nested transaction's header is empty, as etcd's.
    assert_eq!(
        responses[2]["response_txn"],
        json!({"header": {}, "succeeded": true, "responses": [{"response_delete_range": {"header": {"revision": "6"}, "deleted": "1"}}]})
    );
    let failed = post(server.addr, "/v3/kv/txn", &txn).await.json();
    assert!(failed.get("succeeded").is_none(), "{failed}");
    assert_eq!(
        failed["responses"][0]["response_put"]["header"],
        json!({"revision": "7"})
    );

    let compact = post(
        server.addr,
        "/v3/kv/compaction",
        r#"{"revision":"6","physical":true}"#,
    )
    .await;
    assert_eq!(compact.json(), json!({"header": header(7)}));
    let compacted = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}","revision":5}}"#, b64("k4")),
    )
    .await;
    assert_eq!(compacted.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        compacted.json(),
        error("etcdserver: mvcc: required revision has been compacted", 11)
    );
    let future = post(server.addr, "/v3/kv/compaction", r#"{"revision":100}"#).await;
    assert_eq!(
        future.json(),
        error(
            "etcdserver: mvcc: required revision is a future revision",
            11
        )
    );
}

#[tokio::test]
async fn leases_grant_attach_ttl_list_and_revoke() {
    let server = Server::start().await;
    let grant = post(server.addr, "/v3/lease/grant", r#"{"TTL":60,"ID":"4242"}"#).await;
    assert_eq!(
        grant.json(),
        json!({"header": header(1), "ID": "4242", "TTL": "60"})
    );
    let exists = post(server.addr, "/v3/lease/grant", r#"{"TTL":60,"ID":4242}"#).await;
    assert_eq!(exists.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(exists.json(), error("etcdserver: lease already exists", 9));
    let too_long = post(server.addr, "/v3/lease/grant", r#"{"TTL":9000000001}"#).await;
    assert_eq!(
        (too_long.status, too_long.json()),
        (
            StatusCode::BAD_REQUEST,
            error("etcdserver: too large lease TTL", 11)
        )
    );
    let auto = post(server.addr, "/v3/lease/grant", r#"{"TTL":"30"}"#)
        .await
        .json();
    assert_eq!(auto["ID"], "1");

    post(
        server.addr,
        "/v3/kv/put",
        &format!(
            r#"{{"key":"{}","value":"{}","lease":4242}}"#,
            b64("held"),
            b64("x")
        ),
    )
    .await;
    let ttl = post(
        server.addr,
        "/v3/lease/timetolive",
        r#"{"ID":4242,"keys":true}"#,
    )
    .await
    .json();
    assert_eq!(ttl["grantedTTL"], "60");
    assert_eq!(ttl["keys"], json!([b64("held")]));
    let remaining: i64 = ttl["TTL"].as_str().unwrap().parse().unwrap();
    assert!((58..=60).contains(&remaining), "{ttl}");
    let without_keys = post(server.addr, "/v3/kv/lease/timetolive", r#"{"ID":4242}"#)
        .await
        .json();
    assert!(without_keys.get("keys").is_none());
    let leases = post(server.addr, "/v3/lease/leases", "{}").await.json();
    assert_eq!(leases["leases"], json!([{"ID": "1"}, {"ID": "4242"}]));
    assert_eq!(
        post(server.addr, "/v3/kv/lease/leases", "").await.json(),
        leases
    );

    let revoke = post(server.addr, "/v3/lease/revoke", r#"{"ID":"4242"}"#).await;
    assert_eq!(revoke.json(), json!({"header": header(3)}));
    let gone = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("held")),
    )
    .await
    .json();
    assert!(gone.get("kvs").is_none());
    let again = post(server.addr, "/v3/kv/lease/revoke", r#"{"ID":"4242"}"#).await;
    assert_eq!(
        (again.status, again.json()),
        (
            StatusCode::NOT_FOUND,
            error("etcdserver: requested lease not found", 5)
        )
    );
    let dead = post(server.addr, "/v3/lease/timetolive", r#"{"ID":4242}"#)
        .await
        .json();
    assert_eq!(
        dead,
        json!({"header": header(3), "ID": "4242", "TTL": "-1"})
    );
    let orphan = post(
        server.addr,
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","lease":"77"}}"#, b64("k")),
    )
    .await;
    assert_eq!(
        (orphan.status, orphan.json()),
        (
            StatusCode::NOT_FOUND,
            error("etcdserver: requested lease not found", 5)
        )
    );
}

#[tokio::test]
async fn cluster_members_and_status() {
    let server = Server::start().await;
    let cluster_header = json!({"cluster_id": CLUSTER_ID.to_string(), "member_id": MEMBER_ID.to_string(), "raft_term": "3"});
    let solo = json!({"ID": MEMBER_ID.to_string(), "name": "solo", "peerURLs": ["http://127.0.0.1:2380"], "clientURLs": ["http://127.0.0.1:2379"]});
    let list = post(server.addr, "/v3/cluster/member/list", "{}").await;
    assert_eq!(
        list.json(),
        json!({"header": cluster_header, "members": [solo]})
    );

    let add = post(
        server.addr,
        "/v3/cluster/member/add",
        r#"{"peerURLs":["http://127.0.0.2:2380"],"isLearner":true}"#,
    )
    .await;
    let learner = json!({"ID": "100", "peerURLs": ["http://127.0.0.2:2380"], "isLearner": true});
    assert_eq!(
        add.json(),
        json!({"header": cluster_header, "member": learner, "members": [solo, learner]})
    );
    let taken = post(
        server.addr,
        "/v3/cluster/member/add",
        r#"{"peerURLs":["http://127.0.0.1:2380"]}"#,
    )
    .await;
    assert_eq!(
        (taken.status, taken.json()),
        (
            StatusCode::PRECONDITION_FAILED,
            error("etcdserver: Peer URLs already exists", 9)
        )
    );
    let bad = post(
        server.addr,
        "/v3/cluster/member/add",
        r#"{"peerURLs":["bad url"]}"#,
    )
    .await;
    assert_eq!(
        (bad.status, bad.json()),
        (
            StatusCode::BAD_REQUEST,
            error("etcdserver: given member URLs are invalid", 3)
        )
    );

    let voter = post(
        server.addr,
        "/v3/cluster/member/promote",
        &format!(r#"{{"ID":"{MEMBER_ID}"}}"#),
    )
    .await;
    assert_eq!(
        (voter.status, voter.json()),
        (
            StatusCode::PRECONDITION_FAILED,
            error("etcdserver: can only promote a learner member", 9)
        )
    );
    let promoted = post(server.addr, "/v3/cluster/member/promote", r#"{"ID":100}"#)
        .await
        .json();
    assert!(
        promoted["members"][1].get("isLearner").is_none(),
        "{promoted}"
    );
    let removed = post(server.addr, "/v3/cluster/member/remove", r#"{"ID":"100"}"#)
        .await
        .json();
    assert_eq!(
        removed,
        json!({"header": cluster_header, "members": [solo]})
    );
    let unknown = post(server.addr, "/v3/cluster/member/remove", r#"{"ID":"100"}"#).await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (
            StatusCode::NOT_FOUND,
            error("etcdserver: member not found", 5)
        )
    );

    let status = post(server.addr, "/v3/maintenance/status", "{}")
        .await
        .json();
    // No entry applied yet: the zero indexes are left out, as proto3 JSON does.
    assert_eq!(
        status,
        json!({"header": header(1), "version": "3.4.23", "dbSize": "4096",
               "leader": MEMBER_ID.to_string(), "raftTerm": "3", "dbSizeInUse": "2048"})
    );
}

#[tokio::test]
async fn bad_requests_get_etcds_answers() {
    let server = Server::start().await;
    let cases: [(&str, &str, StatusCode, Value); 9] = [
        (
            "/v3/kv/range",
            r#"{"key":""}"#,
            StatusCode::BAD_REQUEST,
            error("etcdserver: key is not provided", 3),
        ),
        (
            "/v3/kv/put",
            "",
            StatusCode::BAD_REQUEST,
            error("etcdserver: key is not provided", 3),
        ),
        (
            "/v3/kv/put",
            "null",
            StatusCode::BAD_REQUEST,
            error("etcdserver: key is not provided", 3),
        ),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v"#,
            StatusCode::BAD_REQUEST,
            error("unexpected EOF", 3),
        ),
        (
            "/v3/kv/range",
            r#"{"key":"!!"}"#,
            StatusCode::BAD_REQUEST,
            error("illegal base64 data at input byte 0", 3),
        ),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v","limit":1.5}"#,
            StatusCode::BAD_REQUEST,
            error(
                "json: cannot unmarshal number 1.5 into Go value of type int64",
                3,
            ),
        ),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v","sort_order":"BOGUS"}"#,
            StatusCode::BAD_REQUEST,
            error(
                "unknown value \"BOGUS\" for enum etcdserverpb.RangeRequest_SortOrder",
                3,
            ),
        ),
        (
            "/v3/kv/put",
            "[1]",
            StatusCode::BAD_REQUEST,
            error(
                "json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
                3,
            ),
        ),
        (
            "/v3/kv/txn",
            r#"{"success":[{}]}"#,
            StatusCode::BAD_REQUEST,
            error("etcdserver: key not found", 3),
        ),
    ];
    for (path, body, status, expected) in cases {
        let answer = post(server.addr, path, body).await;
        assert_eq!(
            (answer.status, answer.json()),
            (status, expected),
            "{path} {body}"
        );
    }
    let put = |key: &str, extra: &str| format!(r#"{{"key":"{}"{extra}}}"#, b64(key));
    let cases = [
        (
            put("nokey", r#","ignore_value":true"#),
            error("etcdserver: key not found", 3),
        ),
        (
            put("k", r#","value":"eA==","ignore_value":true"#),
            error("etcdserver: value is provided", 3),
        ),
        (
            put("k", r#","lease":5,"ignore_lease":true"#),
            error("etcdserver: lease is provided", 3),
        ),
        (
            put("k", r#","prev_kv":"yes""#),
            error(
                "json: cannot unmarshal string into Go value of type bool",
                3,
            ),
        ),
    ];
    for (body, expected) in cases {
        let answer = post(server.addr, "/v3/kv/put", &body).await;
        assert_eq!(answer.json()["code"], expected["code"], "{body}");
        if !body.contains("yes") {
            assert_eq!(answer.json(), expected, "{body}");
        }
    }
    let duplicate = format!(
        r#"{{"success":[{{"request_put":{{"key":"{k}"}}}},{{"request_put":{{"key":"{k}"}}}}]}}"#,
        k = b64("d")
    );
    let answer = post(server.addr, "/v3/kv/txn", &duplicate).await;
    assert_eq!(
        answer.json(),
        error("etcdserver: duplicate key given in txn request", 3)
    );

    // Unknown fields are ignored, trailing bytes after the request too, as etcd does.
    let lenient = post(
        server.addr,
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","foo":1}} trailing"#, b64("k")),
    )
    .await;
    assert_eq!(lenient.status, StatusCode::OK);

    let unknown = post(server.addr, "/v3/kv/bogus", "{}").await;
    assert_eq!(
        (
            unknown.status,
            unknown.body.as_str(),
            unknown.content_type.as_str()
        ),
        (
            StatusCode::NOT_FOUND,
            "Not Found\n",
            "text/plain; charset=utf-8"
        )
    );
    let elsewhere = post(server.addr, "/v2/keys/a", "").await;
    assert_eq!(
        (elsewhere.status, elsewhere.body.as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
    let get = call(server.addr, Method::GET, "/v3/kv/range", "").await;
    assert_eq!(
        (get.status, get.body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
    );
    // Preflight requests are answered, and every answer allows any origin, as etcd's.
    let preflight = call(server.addr, Method::OPTIONS, "/v3/kv/put", "").await;
    assert_eq!(
        (preflight.status, preflight.body.as_str()),
        (StatusCode::OK, "")
    );
    for answer in [&preflight, &get, &unknown] {
        assert_eq!(answer.headers["access-control-allow-origin"], "*");
        assert_eq!(
            answer.headers["access-control-allow-methods"],
            "POST, GET, OPTIONS, PUT, DELETE"
        );
    }
    assert!(elsewhere
        .headers
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn oversized_requests_are_refused_as_etcd_does() {
    let server = Server::start().await;
    let put = |size: usize| {
        format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64("big"),
            b64(&"x".repeat(size))
        )
    };
    let fits = post(server.addr, "/v3/kv/put", &put(1_572_864 - 100)).await;
    assert_eq!(fits.status, StatusCode::OK);
    let large = post(server.addr, "/v3/kv/put", &put(1_572_864)).await;
    assert_eq!(
        (large.status, large.json()),
        (
            StatusCode::BAD_REQUEST,
            error("etcdserver: request is too large", 3)
        )
    );
    let huge = post(server.addr, "/v3/kv/put", &put(2_200_000)).await;
    assert_eq!(huge.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(huge.json()["code"], 8);
    let message = huge.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("grpc: received message larger than max (")
            && message.ends_with(" vs. 2097152)"),
        "{message}"
    );
    // A body far beyond any request is cut off without being read whole.
    let flood = post(server.addr, "/v3/kv/put", &"x".repeat(8 << 20)).await;
    assert_eq!(flood.status, StatusCode::TOO_MANY_REQUESTS);

    // A smaller configured limit applies.
    let small = Server::start_with(
        MemoryBackend::new(),
        Config {
            max_request_bytes: 1024,
            ..Config::default()
        },
    )
    .await;
    let refused = post(small.addr, "/v3/kv/put", &put(2000)).await;
    assert_eq!(refused.json(), error("etcdserver: request is too large", 3));
}

#[tokio::test]
async fn the_free_serve_function_serves_and_shuts_down() {
    let backend = std::sync::Arc::new(MemoryBackend::new());
    let (addr, stop) = support::start_default_serve(backend).await;
    let answer = post(
        addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("a")),
    )
    .await;
    assert_eq!(answer.json(), json!({"header": header(1)}));
    stop.send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after shutdown"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_input_makes_the_gateway_fail_or_hang() {
    let server = Server::start().await;
    let paths = [
        "/v3/kv/range",
        "/v3/kv/put",
        "/v3/kv/deleterange",
        "/v3/kv/txn",
        "/v3/kv/compaction",
        "/v3/lease/grant",
        "/v3/lease/revoke",
        "/v3/lease/timetolive",
        "/v3/lease/leases",
        "/v3/cluster/member/list",
        "/v3/cluster/member/add",
        "/v3/cluster/member/remove",
        "/v3/cluster/member/promote",
        "/v3/maintenance/status",
    ];
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut bodies: Vec<Vec<u8>> = [
        "{",
        "}",
        "[]",
        "1",
        "-1",
        "\"s\"",
        "true",
        "{\"key\":123}",
        "{\"key\":{\"a\":1}}",
        "{\"key\":\"YQ==\",\"range_end\":[1,2]}",
        "{\"revision\":\"-9223372036854775809\"}",
        "{\"TTL\":-5}",
        "{\"ID\":\"18446744073709551616\"}",
        "{\"peerURLs\":[1]}",
        "{\"compare\":[{\"key\":\"YQ==\",\"target\":\"VALUE\",\"value\":null}],\"success\":null}",
        "{\"success\":[{\"request_txn\":{\"success\":[{\"request_txn\":{}}]}}]}",
        "{\"key\":\"\u{1F600}\"}",
        "\u{feff}{}",
    ]
    .iter()
    .map(|body| body.as_bytes().to_vec())
    .collect();
    bodies.push(deep.into_bytes());
    bodies.push(b"{\"key\":\"\xff\xfe\"}".to_vec());
    for path in paths {
        for body in &bodies {
            let answer = call(server.addr, Method::POST, path, body.clone()).await;
            let shown = String::from_utf8_lossy(body);
            assert!(
                answer.status.is_success() || answer.status.is_client_error(),
                "{path} {shown:.80}: {} {}",
                answer.status,
                answer.body
            );
            let json = answer.json();
            if !answer.status.is_success() {
                assert_eq!(json["error"], json["message"], "{path} {shown:.80}");
                assert!(json["code"].as_i64().is_some_and(|code| code > 0));
            }
        }
    }
    // The server still answers.
    let alive = post(
        server.addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("a")),
    )
    .await;
    assert_eq!(alive.status, StatusCode::OK);
}

/// What the node's router does: the gateway first, its own answer for what it hands back.
#[tokio::test]
async fn handle_hands_back_what_is_not_the_gateways() {
    use std::convert::Infallible;
    use std::sync::Arc;

    use bytes::Bytes;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use sinew_kvd::gateway::{self, GatewayBody, Handled};

    let backend = Arc::new(MemoryBackend::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let backend = Arc::clone(&backend);
            let service = service_fn(move |request: Request<Incoming>| {
                let backend = Arc::clone(&backend);
                async move {
                    let response = match gateway::handle(&backend, request).await {
                        Handled::Response(response) => response,
                        Handled::NotMine(request) => Response::new(GatewayBody::from(Bytes::from(
                            format!("v2 router: {}", request.uri().path()),
                        ))),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    let v2 = post(addr, "/v2/keys/a", "").await;
    assert_eq!(
        (v2.status, v2.body.as_str()),
        (StatusCode::OK, "v2 router: /v2/keys/a")
    );
    let v3 = post(addr, "/v3/kv/put", &format!(r#"{{"key":"{}"}}"#, b64("a"))).await;
    assert_eq!(v3.json(), json!({"header": header(2)}));
    let mut watch = support::client::Stream::open(addr, "/v3/watch").await;
    watch.send(r#"{"create_request":{"key":"YQ=="}}"#).await;
    assert_eq!(watch.next().await["result"]["created"], true);
    post(addr, "/v3/kv/put", &format!(r#"{{"key":"{}"}}"#, b64("a"))).await;
    assert_eq!(
        watch.next().await["result"]["events"][0]["kv"]["version"],
        "2"
    );
}
