//! KV benchmark: a three-member kvd cluster and a three-member etcd 3.4 cluster on loopback,
//! in the same run, driven by the same load generator through the same v3 JSON API, both
//! syncing every write to disk (etcd always does; kvd commits its Raft log durably).
//!
//! Phases per cluster: puts with 1 client, puts with 64 concurrent clients, and linearizable
//! ranges with 64 concurrent clients, each for `SINEW_BENCH_SECONDS` (default 5) against the
//! leader. Prints throughput and p50/p99 latency per phase; the last line is
//! `RATIO kv_put_64=<kvd/etcd put throughput at 64 clients>`.
//!
//! `cargo bench -p sinew-tests --bench kv`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sinew_proto::kv::{KvClient, RangeRequest};
use sinew_tests::kv_cluster::{KvCluster, Server};

/// One phase's outcome.
#[derive(Debug, Clone, Copy)]
struct Measured {
    ops_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Range,
}

fn main() -> Result<()> {
    let seconds: u64 = std::env::var("SINEW_BENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    for server in [Server::kvd(true)?, Server::Etcd] {
        let dir = tempfile::tempdir()?;
        let cluster = KvCluster::start(server.clone(), dir.path(), 3)?;
        let leader = runtime.block_on(leader_url(&cluster))?;
        let client = KvClient::with_timeout([leader], Duration::from_secs(10))?;
        for (op, clients) in [(Op::Put, 1), (Op::Put, 64), (Op::Range, 64)] {
            let measured = runtime.block_on(drive(&client, op, clients, duration))?;
            rows.push((server.name(), op, clients, measured));
        }
    }
    println!(
        "{:<6} {:<6} {:>8} {:>12} {:>9} {:>9}",
        "server", "op", "clients", "ops/s", "p50 ms", "p99 ms"
    );
    for (server, op, clients, measured) in &rows {
        println!(
            "{server:<6} {:<6} {clients:>8} {:>12.0} {:>9.2} {:>9.2}",
            format!("{op:?}").to_lowercase(),
            measured.ops_per_second,
            measured.p50_ms,
            measured.p99_ms
        );
    }
    let find = |server: &str, op: Op, clients: usize| {
        rows.iter()
            .find(|row| row.0 == server && row.1 == op && row.2 == clients)
            .map(|row| row.3)
            .context("a phase is missing")
    };
    let (kvd, etcd) = (find("kvd", Op::Put, 64)?, find("etcd", Op::Put, 64)?);
    println!(
        "p99 put at 64 clients: kvd {:.2} ms, etcd {:.2} ms ({})",
        kvd.p99_ms,
        etcd.p99_ms,
        if kvd.p99_ms <= etcd.p99_ms {
            "kvd no worse"
        } else {
            "kvd worse"
        }
    );
    println!(
        "RATIO kv_put_64={:.3}",
        kvd.ops_per_second / etcd.ops_per_second
    );
    Ok(())
}

/// The leader's client URL, as the members report it.
async fn leader_url(cluster: &KvCluster) -> Result<String> {
    let client = KvClient::new(cluster.endpoints())?;
    for _ in 0..100 {
        for member in &cluster.members {
            let Ok(status) = client.status(&member.client_url).await else {
                continue;
            };
            if status.leader != 0 && status.leader == status.header.member_id {
                return Ok(member.client_url.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no leader within 10 s")
}

/// Runs `clients` concurrent loops of `op` for `duration` and measures them.
async fn drive(client: &KvClient, op: Op, clients: usize, duration: Duration) -> Result<Measured> {
    // Ranges read keys the puts wrote; write a few first so they find something.
    for index in 0..64 {
        client
            .put(format!("bench/{index:04}"), vec![b'x'; 256])
            .await?;
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let value = Arc::new(vec![b'v'; 256]);
    let tasks: Vec<_> = (0..clients)
        .map(|worker| {
            let client = client.clone();
            let value = Arc::clone(&value);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut index = 0_usize;
                while Instant::now() < deadline {
                    let key = format!("bench/{:04}", (worker * 7919 + index) % 64);
                    let began = Instant::now();
                    match op {
                        Op::Put => {
                            client.put(key, value.as_slice()).await?;
                        }
                        Op::Range => {
                            client
                                .range(&RangeRequest {
                                    key: key.into_bytes(),
                                    ..RangeRequest::default()
                                })
                                .await?;
                        }
                    }
                    latencies.push(began.elapsed());
                    index += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |fraction: f64| {
        // `fraction` is in 0..=1, so the rounded rank is in 0..len (an empty list gives -1 or
        // -0, which saturates to 0 and finds nothing): the cast neither truncates nor wraps.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = ((latencies.len() as f64 - 1.0) * fraction).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
    };
    Ok(Measured {
        ops_per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    })
}
