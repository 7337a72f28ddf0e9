use std::time::Duration;

use sinew_kvd::node::NodeError;
use sinew_kvd::v3::{AtRevision as _, Command, EventType, KvError, PutRequest, Response, Store};

use crate::cluster::harness::{get, put, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_a_follower_is_read_linearizably_everywhere() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);

    let applied = cluster
        .node(follower)
        .propose(put("k", "v1"))
        .await
        .unwrap();

    assert!(matches!(applied.response, Response::Put(_)));
    for index in 0..3 {
        assert_eq!(
            get(cluster.node(index), "k", false).await.as_deref(),
            Some("v1")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_continue_after_the_leader_stops_and_a_new_one_is_elected() {
    let mut cluster = Cluster::start(3).await;
    let old = cluster.leader().await;
    cluster.node(old).propose(put("before", "1")).await.unwrap();

    cluster.stop(old).await;
    let new = cluster.leader().await;

    assert_ne!(new, old);
    let follower = cluster.follower(new);
    cluster
        .node(follower)
        .propose(put("after", "2"))
        .await
        .unwrap();
    assert_eq!(
        get(cluster.node(follower), "before", false)
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        get(cluster.node(new), "after", false).await.as_deref(),
        Some("2")
    );

    cluster.restart(old).await;
    assert_eq!(
        get(cluster.node(old), "after", false).await.as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_cluster_restarted_from_disk_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    // More writes than the snapshot threshold, so restart goes through a snapshot and a
    // purged log.
    for index in 0..120 {
        cluster
            .node(leader)
            .propose(put(&format!("key{index:03}"), &index.to_string()))
            .await
            .unwrap();
    }

    for index in 0..3 {
        cluster.stop(index).await;
    }
    for index in 0..3 {
        cluster.restart(index).await;
    }
    cluster.leader().await;

    for index in 0..3 {
        let node = cluster.node(index);
        assert_eq!(get(node, "key000", false).await.as_deref(), Some("0"));
        assert_eq!(get(node, "key119", false).await.as_deref(), Some("119"));
        assert_eq!(node.machine().read(sinew_kvd::v3::Store::revision), 121);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_on_a_follower_sees_every_change_in_order_across_a_leader_change() {
    let mut cluster = Cluster::start(3).await;
    let old = cluster.leader().await;
    let watcher_node = cluster.follower(old);
    let mut batches = cluster.node(watcher_node).machine().subscribe();

    for index in 0..5 {
        cluster
            .node(old)
            .propose(put("w", &index.to_string()))
            .await
            .unwrap();
    }
    cluster.stop(old).await;
    let new = cluster.leader().await;
    for index in 5..10 {
        cluster
            .node(new)
            .propose(put("w", &index.to_string()))
            .await
            .unwrap();
    }

    let mut seen = Vec::new();
    while seen.len() < 10 {
        let batch = tokio::time::timeout(Duration::from_secs(5), batches.recv())
            .await
            .expect("a batch within 5 s")
            .unwrap();
        for event in &batch.events {
            assert_eq!(event.r#type(), EventType::Put);
            let value = event
                .kv
                .as_ref()
                .map(|kv| kv.value.clone())
                .unwrap_or_default();
            seen.push(String::from_utf8(value).unwrap());
        }
    }
    let expected: Vec<String> = (0..10).map(|index| index.to_string()).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_log_entries_and_each_gets_its_own_answer() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let index_before = cluster.node(leader).status().raft_index;
    let revision_before = cluster.node(leader).machine().read(Store::revision);

    let writes: Vec<_> = (0..64)
        .map(|index| {
            // Every fourth write goes through the follower; every eighth is refused.
            let node = cluster
                .node(if index % 4 == 0 { follower } else { leader })
                .clone();
            let command = if index % 8 == 7 {
                Command::Put(PutRequest {
                    key: format!("missing{index:02}").into_bytes(),
                    ignore_value: true,
                    ..PutRequest::default()
                })
            } else {
                put(&format!("key{index:02}"), &index.to_string())
            };
            tokio::spawn(async move { node.propose(command).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for (index, write) in writes.into_iter().enumerate() {
        match write.await.unwrap() {
            Ok(applied) => {
                assert_ne!(index % 8, 7, "write {index} should have been refused");
                let Response::Put(put) = applied.response else {
                    panic!("write {index} was answered with {:?}", applied.response);
                };
                revisions.push(put.revision());
            }
            Err(error) => {
                assert_eq!(index % 8, 7, "write {index} failed: {error}");
                assert_eq!(error, NodeError::Kv(KvError::KeyNotFound));
            }
        }
    }

    // 56 accepted puts, each its own revision.
    revisions.sort_unstable();
    let expected: Vec<i64> = (revision_before + 1..=revision_before + 56).collect();
    assert_eq!(revisions, expected);
    // Fewer log entries than writes: concurrent proposals travelled together.
    let entries = cluster.node(leader).status().raft_index - index_before;
    assert!(entries < 64, "64 writes took {entries} log entries");
    for index in 0..64 {
        let value = get(cluster.node(follower), &format!("key{index:02}"), false).await;
        let expected = (index % 8 != 7).then(|| index.to_string());
        assert_eq!(value, expected, "key{index:02}");
    }
}

/// Puts `count` values of `size` bytes at once, alternately through the leader and a
/// follower, and checks every member has all of them.
async fn put_concurrently_and_read_everywhere(count: usize, size: usize) {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let value = "x".repeat(size);

    let puts = (0..count).map(|index| {
        let node = cluster.node(if index % 2 == 0 { leader } else { follower });
        let command = put(&format!("big{index}"), &value);
        async move { node.propose(command).await }
    });
    let results = futures::future::join_all(puts).await;

    for (index, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|error| panic!("put big{index} of {size} bytes: {error}"));
    }
    for index in 0..3 {
        for key in 0..count {
            let read = get(cluster.node(index), &format!("big{key}"), false).await;
            assert_eq!(
                read.map(|value| value.len()),
                Some(size),
                "big{key} on n{index}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_values_near_the_request_limit_all_commit() {
    // The harness's --max-request-bytes is 1.5 MiB; each entry then outgrows what one
    // AppendEntries may carry, so each goes alone.
    put_concurrently_and_read_everywhere(8, 1400 * 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_100_kib_values_all_commit() {
    // 6.4 MB at once: batches and AppendEntries are cut by bytes, not only by count.
    put_concurrently_and_read_everywhere(64, 100 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alarm_raised_on_one_member_refuses_writes_everywhere_and_survives_a_restart() {
    use sinew_kvd::alarm::{Alarm, AlarmKind, AlarmRequest};
    use sinew_kvd::node::NodeError;
    use sinew_kvd::v3::KvError;

    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let alarm = Alarm {
        member: cluster.node(leader).id(),
        kind: AlarmKind::Nospace,
    };
    let raised = cluster
        .node(leader)
        .alarm(AlarmRequest::Activate(alarm))
        .await
        .expect("raise");
    assert_eq!(raised, [alarm]);
    let refused = cluster.node(follower).propose(put("k", "v")).await;
    assert!(
        matches!(refused, Err(NodeError::Kv(KvError::NoSpace))),
        "{refused:?}"
    );

    cluster.stop(follower).await;
    cluster.restart(follower).await;
    let listed = cluster
        .node(follower)
        .alarm(AlarmRequest::Get)
        .await
        .expect("list");
    assert_eq!(listed, [alarm]);
    cluster
        .node(follower)
        .alarm(AlarmRequest::Deactivate(alarm))
        .await
        .expect("disarm");
    cluster
        .node(follower)
        .propose(put("k", "v"))
        .await
        .expect("a write once disarmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_stopped_with_a_peer_request_in_flight_frees_its_port_for_a_restart() {
    use tokio::io::AsyncWriteExt;

    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    // A peer request whose body never completes keeps its connection busy past the stop.
    let peer = cluster.seats[follower].config.listen_peer[0];
    let mut stuck = tokio::net::TcpStream::connect(peer).await.expect("connect");
    stuck
        .write_all(b"POST /raft/append HTTP/1.1\r\nhost: kvd\r\ncontent-length: 100\r\n\r\n{")
        .await
        .expect("a partial request");

    let started = std::time::Instant::now();
    cluster.stop(follower).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the stuck request is cut after a grace period: {:?}",
        started.elapsed()
    );
    cluster.restart(follower).await;
    cluster
        .node(follower)
        .propose(put("after", "restart"))
        .await
        .expect("a write through the restarted member");
    drop(stuck);
}

/// Linearizable reads share read-index rounds. A read that begins while a round is under way
/// must wait for the next one: the index of a round that began before it may predate a write
/// acknowledged before it, and a follower that applied only that far would serve the older
/// value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_sharing_read_index_rounds_see_every_write_acknowledged_before_them() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    cluster.node(leader).propose(put("n", "0")).await.unwrap();
    // Readers on both members keep rounds under way all along.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|reader| {
            let node = cluster.node([leader, follower][reader % 2]).clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut reads = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    get(&node, "n", false).await;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for written in 1..=150_u32 {
        cluster
            .node(leader)
            .propose(put("n", &written.to_string()))
            .await
            .unwrap();
        let read = get(cluster.node(follower), "n", false).await;
        assert_eq!(read, Some(written.to_string()), "a stale read");
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0, "every reader read");
    }
}
