//! etcd's own client (`etcdctl`, v3 over gRPC) against a three-member cluster: through a
//! follower, and watching across a leader change.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sinew_kvd::node::ClientApi;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::cluster::harness::{get, Cluster};
use crate::support::etcd::installed;

/// etcdctl in v3 mode against `endpoint`.
fn etcdctl(endpoint: &str) -> Command {
    let mut command = Command::new(installed("etcdctl"));
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=3s")
        .kill_on_drop(true);
    command
}

/// Puts `key` through `endpoint`, retrying while the cluster elects a leader.
async fn put(endpoint: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = etcdctl(endpoint)
            .args(["put", key, "v"])
            .output()
            .await
            .expect("etcdctl runs");
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "put {key}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client listener on every member of `cluster`.
async fn client_apis(cluster: &Cluster) -> Vec<ClientApi> {
    let mut clients = Vec::new();
    for index in 0..3 {
        clients.push(
            ClientApi::start(cluster.node(index))
                .await
                .expect("client listener"),
        );
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_through_a_follower_watches_every_change_in_order_across_a_leader_change() {
    let mut cluster = Cluster::start(3).await;
    let clients = client_apis(&cluster).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let endpoint = clients[follower].addrs()[0].to_string();
    // From the first revision (nothing under k/ precedes the puts), so a watch that starts
    // late still sees them all.
    let mut watch = etcdctl(&endpoint)
        .args(["watch", "--prefix", "k/", "--rev", "1", "-w", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();

    for index in 0..10 {
        put(&endpoint, &format!("k/{index:02}")).await;
    }
    cluster.stop(leader).await;
    for index in 10..20 {
        put(&endpoint, &format!("k/{index:02}")).await;
    }

    // Every key once, in order, at increasing revisions (a put retried after an unclear
    // failure may show twice in a row, as with etcd).
    let mut seen: Vec<(String, i64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.last().is_none_or(|(key, _)| key != "k/19") {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the watch stalled after {seen:?}"))
            .expect("watch output")
            .expect("the watch ended early");
        let answer: Value = serde_json::from_str(&line).expect("etcdctl -w json");
        for event in answer["Events"].as_array().into_iter().flatten() {
            let key = event["kv"]["key"].as_str().expect("base64 key");
            let key = String::from_utf8(base64_decode(key)).expect("UTF-8 key");
            let revision = event["kv"]["mod_revision"].as_i64().expect("revision");
            seen.push((key, revision));
        }
    }
    assert!(
        seen.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "{seen:?}"
    );
    let mut keys: Vec<&str> = seen.iter().map(|(key, _)| key.as_str()).collect();
    keys.dedup();
    let expected: Vec<String> = (0..20).map(|index| format!("k/{index:02}")).collect();
    assert_eq!(keys, expected);

    watch.kill().await.expect("stop the watch");
    for client in clients {
        client.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_move_leader_hands_the_lead_to_the_target_and_writes_go_on() {
    use sinew_etcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
    use sinew_etcd_api::etcdserverpb::MoveLeaderRequest;

    let cluster = Cluster::start(3).await;
    let clients = client_apis(&cluster).await;
    let endpoints: Vec<String> = clients
        .iter()
        .map(|client| client.addrs()[0].to_string())
        .collect();
    let endpoints = endpoints.join(",");
    let leader = cluster.leader().await;
    let target = cluster.follower(leader);
    let (leader_id, target_id) = (cluster.node(leader).id(), cluster.node(target).id());
    put(&endpoints, "before").await;

    let moved = etcdctl(&endpoints)
        .args(["move-leader", &format!("{target_id:x}")])
        .output()
        .await
        .expect("etcdctl runs");

    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&moved.stdout).trim(),
        format!("Leadership transferred from {leader_id:x} to {target_id:x}")
    );
    assert_eq!(cluster.leader().await, target);
    put(&endpoints, "after").await;
    assert_eq!(
        get(cluster.node(leader), "after", false).await.as_deref(),
        Some("v")
    );
    let refused = etcdctl(&endpoints)
        .args(["move-leader", "abc"])
        .output()
        .await
        .expect("etcdctl runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("etcdserver: bad leader transferee"),
        "{refused:?}"
    );
    // Only the leader moves the lead, as in etcd.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", clients[leader].addrs()[0]))
            .expect("endpoint")
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("gRPC connection");
    let refused = MaintenanceClient::new(channel)
        .move_leader(MoveLeaderRequest {
            target_id: leader_id,
        })
        .await
        .expect_err("a follower refuses");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::FailedPrecondition, "etcdserver: not leader")
    );

    for client in clients {
        client.finish().await;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_without_a_leader_refuses_requests_that_require_one() {
    use sinew_etcd_api::etcdserverpb::kv_client::KvClient;
    use sinew_etcd_api::etcdserverpb::RangeRequest;

    let mut cluster = Cluster::start(3).await;
    // A follower left alone campaigns in vain and knows no leader (a lone openraft leader
    // would keep leading).
    let survivor = cluster.follower(cluster.leader().await);
    let client = ClientApi::start(cluster.node(survivor))
        .await
        .expect("client listener");
    for index in (0..3).filter(|index| *index != survivor) {
        cluster.stop(index).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.node(survivor).leader().is_some() {
        assert!(
            Instant::now() < deadline,
            "the lone member still sees a leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", client.addrs()[0]))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("gRPC connection");
    let mut kv = KvClient::new(channel);
    let read = || RangeRequest {
        key: b"k".to_vec(),
        serializable: true,
        ..RangeRequest::default()
    };
    // As etcd: a local read is served without a leader, unless the client requires one.
    kv.range(read()).await.expect("a serializable read");
    let mut requiring = tonic::Request::new(read());
    requiring
        .metadata_mut()
        .insert("hasleader", "true".parse().expect("metadata value"));
    let refused = kv
        .range(requiring)
        .await
        .expect_err("refused without a leader");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unavailable, "etcdserver: no leader")
    );
    tokio::time::timeout(Duration::from_secs(10), client.finish())
        .await
        .expect("finish");
    drop(kv);
}
