//! The KV client (`sinew_proto::kv`) against real etcd 3.4: the same client kvd's users get,
//! checked first against the server it imitates.

use std::time::Duration;

use anyhow::Result;
use sinew_proto::kv::{
    txn, AtRevision as _, CompareResult, DeleteRangeRequest, EventType, KvClient, KvClientError,
    PutRequest, RangeRequest, TargetUnion, TxnRequest, WatchCreateRequest,
};
use sinew_tests::free_port;
use sinew_tests::kv_cluster::{KvCluster, Server};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

#[test]
fn reads_writes_transactions_and_leases_against_etcd() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = KvCluster::start(Server::Etcd, dir.path(), 1)?;
    runtime().block_on(async {
        let kv = KvClient::new(etcd.endpoints())?;
        let first = kv.put("app/a", "1").await?;
        kv.put("app/b", "2").await?;
        kv.put("other", "3").await?;

        assert_eq!(
            kv.get("app/a").await?.map(|kv| kv.value),
            Some(b"1".to_vec())
        );
        assert_eq!(kv.get("missing").await?, None);
        let listed = kv.get_prefix("app/").await?;
        assert_eq!(listed.count, 2);
        assert_eq!(listed.kvs[1].key, b"app/b");

        let swap = TxnRequest {
            compare: vec![txn::compare(
                "app/a",
                CompareResult::Equal,
                TargetUnion::ModRevision(first.revision()),
            )],
            success: vec![txn::put(PutRequest {
                key: b"app/a".to_vec(),
                value: b"swapped".to_vec(),
                ..PutRequest::default()
            })],
            failure: Vec::new(),
        };
        assert!(kv.txn(&swap).await?.succeeded);
        assert!(!kv.txn(&swap).await?.succeeded, "the revision moved on");

        let lease = kv.lease_grant(60).await?;
        kv.put_request(&PutRequest {
            key: b"leased".to_vec(),
            value: b"x".to_vec(),
            lease: lease.id,
            ..PutRequest::default()
        })
        .await?;
        let ttl = kv.lease_time_to_live(lease.id, true).await?;
        assert_eq!(
            (ttl.granted_ttl, ttl.keys.clone()),
            (60, vec![b"leased".to_vec()])
        );
        assert!(kv.lease_keepalive_once(lease.id).await?.ttl > 0);
        kv.lease_revoke(lease.id).await?;
        assert_eq!(kv.get("leased").await?, None);
        assert_eq!(kv.lease_time_to_live(lease.id, false).await?.ttl, -1);
        assert_eq!(kv.lease_keepalive_once(lease.id).await?.ttl, 0);

        let deleted = kv
            .delete(&DeleteRangeRequest {
                key: b"app/".to_vec(),
                range_end: sinew_proto::kv::prefix_end(b"app/"),
                prev_kv: true,
            })
            .await?;
        assert_eq!(deleted.deleted, 2);
        assert_eq!(deleted.prev_kvs[0].value, b"swapped");

        let refused = kv.put("", "x").await.expect_err("an empty key is refused");
        assert_eq!(
            refused.server_message(),
            Some("etcdserver: key is not provided"),
            "{refused}"
        );
        Ok(())
    })
}

#[test]
fn calls_fail_over_from_a_dead_endpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = KvCluster::start(Server::Etcd, dir.path(), 1)?;
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    runtime().block_on(async {
        let kv = KvClient::new([dead.clone(), etcd.endpoints()[0].clone()])?;
        kv.put("k", "v").await?;
        assert_eq!(kv.get("k").await?.map(|kv| kv.value), Some(b"v".to_vec()));

        let only_dead = KvClient::new([dead])?;
        let error = only_dead.get("k").await.expect_err("nothing answers");
        assert!(
            matches!(error, KvClientError::Unreachable { .. }),
            "{error}"
        );
        Ok(())
    })
}

/// An endpoint that answers every request with etcd's error `message` (gRPC code 14,
/// unavailable, as HTTP 503), as a member does when a request times out or has no leader.
async fn refusing_endpoint(message: &'static str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).await;
            let body = format!(r#"{{"error":"{message}","message":"{message}","code":14}}"#);
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    Ok(url)
}

/// A write whose member answered that it timed out may still be applied: sending it to
/// the next member could apply it twice, so the client says it is in doubt. A read, or a
/// write refused for want of a leader, goes on to the next member.
#[test]
fn a_write_in_doubt_is_not_sent_again_but_a_read_or_a_refused_write_is() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = KvCluster::start(Server::Etcd, dir.path(), 1)?;
    runtime().block_on(async {
        for message in [
            "etcdserver: request timed out",
            "etcdserver: request timed out, possibly due to previous leader failure",
            "etcdserver: leader changed",
        ] {
            let doubtful = refusing_endpoint(message).await?;
            let kv = KvClient::new([doubtful, etcd.endpoints()[0].clone()])?;
            let error = kv.put("k", message).await.expect_err("in doubt");
            assert!(
                matches!(error, KvClientError::Ambiguous { .. }),
                "{message}: {error}"
            );
            let direct = KvClient::new(etcd.endpoints())?;
            assert_eq!(direct.get("k").await?, None, "{message}: sent again");
            assert_eq!(kv.get("k").await?, None);
        }
        let leaderless = refusing_endpoint("etcdserver: no leader").await?;
        let kv = KvClient::new([leaderless, etcd.endpoints()[0].clone()])?;
        kv.put("k", "v").await?;
        assert_eq!(kv.get("k").await?.map(|kv| kv.value), Some(b"v".to_vec()));
        Ok(())
    })
}

#[test]
fn a_watch_resumes_after_its_server_is_killed_and_restarted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut etcd = KvCluster::start(Server::Etcd, dir.path(), 1)?;
    let runtime = runtime();
    let kv = KvClient::new(etcd.endpoints())?;
    let mut watch = runtime.block_on(async {
        // From the next revision, however late the watch is created.
        let now = kv
            .range(&RangeRequest {
                key: b"w/".to_vec(),
                ..RangeRequest::default()
            })
            .await?;
        let watch = kv.watch(WatchCreateRequest {
            key: b"w/".to_vec(),
            range_end: sinew_proto::kv::prefix_end(b"w/"),
            prev_kv: true,
            start_revision: now.revision() + 1,
            ..WatchCreateRequest::default()
        });
        for index in 0..3 {
            kv.put(format!("w/{index}"), index.to_string()).await?;
        }
        anyhow::Ok(watch)
    })?;

    etcd.kill(0)?;
    etcd.restart(0)?;
    etcd.wait_healthy(Duration::from_secs(30))?;

    runtime.block_on(async {
        for index in 3..6 {
            kv.put(format!("w/{index}"), index.to_string()).await?;
        }
        kv.delete(&DeleteRangeRequest {
            key: b"w/0".to_vec(),
            ..DeleteRangeRequest::default()
        })
        .await?;
        let mut seen = Vec::new();
        while seen.len() < 7 {
            let batch = tokio::time::timeout(Duration::from_secs(20), watch.next())
                .await?
                .expect("the watch goes on")?;
            for event in batch.events {
                let key = event.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
                seen.push((event.r#type(), String::from_utf8_lossy(key).into_owned()));
            }
        }
        let mut expected: Vec<(EventType, String)> = (0..6)
            .map(|index| (EventType::Put, format!("w/{index}")))
            .collect();
        expected.push((EventType::Delete, "w/0".to_owned()));
        assert_eq!(seen, expected, "every change once, in order");
        Ok(())
    })
}

#[test]
fn a_kept_alive_lease_outlives_its_ttl_and_expires_once_dropped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = KvCluster::start(Server::Etcd, dir.path(), 1)?;
    runtime().block_on(async {
        let kv = KvClient::new(etcd.endpoints())?;
        let lease = kv.lease_grant(2).await?;
        let keeper = kv.keep_alive(lease.id, lease.ttl);

        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(keeper.is_alive());
        assert!(kv.lease_time_to_live(lease.id, false).await?.ttl > 0);

        drop(keeper);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(kv.lease_time_to_live(lease.id, false).await?.ttl, -1);
        Ok(())
    })
}

#[test]
fn a_lock_excludes_until_released_and_passes_on_when_a_holders_lease_expires() -> Result<()> {
    use sinew::kv::{Election, Lock};

    let dir = tempfile::tempdir()?;
    let etcd = KvCluster::start(Server::Etcd, dir.path(), 1)?;
    runtime().block_on(async {
        let kv = KvClient::new(etcd.endpoints())?;
        let first = Lock::acquire(&kv, "locks/job", 5).await?;

        let waiter_kv = kv.clone();
        let mut waiter =
            tokio::spawn(async move { Lock::acquire(&waiter_kv, "locks/job", 5).await });
        let early = tokio::time::timeout(Duration::from_secs(1), &mut waiter).await;
        assert!(
            early.is_err(),
            "the second contender waits while the lock is held"
        );

        let first_token = first.revision();
        first.unlock().await?;
        let second = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
        assert!(second.revision() > first_token, "fencing tokens grow");

        // A holder that stops renewing loses the lock once its lease expires.
        let stale_compare = second.is_held_compare();
        drop(second);
        let third =
            tokio::time::timeout(Duration::from_secs(15), Lock::acquire(&kv, "locks/job", 5))
                .await??;
        let fenced = kv
            .txn(&TxnRequest {
                compare: vec![stale_compare],
                success: vec![txn::put(PutRequest {
                    key: b"protected".to_vec(),
                    value: b"stale writer".to_vec(),
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            })
            .await?;
        assert!(
            !fenced.succeeded,
            "the old holder's guarded write is refused"
        );
        third.unlock().await?;

        let election = Election::new(&kv, "elections/db");
        assert_eq!(election.leader().await?, None);
        let leader = election.campaign("node-a", 5).await?;
        assert!(leader.proclaim("node-a:v2").await?);
        assert_eq!(
            election.leader().await?.map(|kv| kv.value),
            Some(b"node-a:v2".to_vec())
        );
        let follower_election = election.clone();
        let next = tokio::spawn(async move { follower_election.campaign("node-b", 5).await });
        leader.resign().await?;
        let next = tokio::time::timeout(Duration::from_secs(5), next).await???;
        assert_eq!(
            election.leader().await?.map(|kv| kv.value),
            Some(b"node-b".to_vec())
        );
        next.resign().await?;
        Ok(())
    })
}
