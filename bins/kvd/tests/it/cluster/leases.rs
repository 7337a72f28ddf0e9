use std::time::Duration;

use sinew_kvd::v3::{Command, LeaseGrantRequest, PutRequest, Response};

use crate::cluster::harness::{get, Cluster};

async fn grant(cluster: &Cluster, node: usize, ttl: i64) -> (i64, i64) {
    let applied = cluster
        .node(node)
        .propose(Command::LeaseGrant(LeaseGrantRequest { id: 0, ttl }))
        .await
        .expect("grant");
    let Response::LeaseGrant(granted) = applied.response else {
        panic!("not a grant: {applied:?}")
    };
    (granted.id, granted.ttl)
}

async fn put_with_lease(cluster: &Cluster, node: usize, key: &str, lease: i64) {
    cluster
        .node(node)
        .propose(Command::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"x".to_vec(),
            lease,
            ..PutRequest::default()
        }))
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_takes_its_keys_while_a_kept_alive_one_keeps_them() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    // TTL 1 is raised to the minimum: 1.5 election timeouts of 500 ms, rounded up.
    let (dying, ttl) = grant(&cluster, follower, 1).await;
    assert_eq!(ttl, 1);
    let (kept, _) = grant(&cluster, follower, 1).await;
    put_with_lease(&cluster, follower, "dies", dying).await;
    put_with_lease(&cluster, follower, "stays", kept).await;

    // Renewed well inside its second, so that a stalled commit does not end it; 3 s in all.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            cluster.node(follower).lease_keepalive(kept).await.unwrap(),
            Some(1)
        );
    }

    assert_eq!(get(cluster.node(follower), "dies", false).await, None);
    assert_eq!(
        get(cluster.node(follower), "stays", false).await.as_deref(),
        Some("x")
    );
    assert_eq!(
        cluster.node(follower).lease_remaining(dying).await.unwrap(),
        None
    );
    assert_eq!(
        cluster.node(follower).lease_keepalive(dying).await.unwrap(),
        None
    );
}
