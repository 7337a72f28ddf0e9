//! KV benchmark: a three-member kvd cluster and a three-member etcd 3.4 cluster on loopback,
//! in the same run, driven by the same load generator, both syncing every write to disk
//! (etcd always does; kvd commits its Raft log durably).
//!
//! Phases, through the v3 JSON API and through gRPC (one HTTP/2 connection, as etcd's
//! clients use): puts with 1 client, puts with 64 concurrent clients, and linearizable
//! ranges with 64 concurrent clients, against the leader. Each phase runs in
//! `SINEW_BENCH_ROUNDS` rounds (default 3) of `SINEW_BENCH_SECONDS` (default 5) per cluster,
//! the two clusters in turns (which one goes first alternates), so that a drift in the
//! machine's speed during the run weighs on both alike. The load comes from one thread
//! (tokio's current-thread runtime), the leanest client for both. Prints each round's rate
//! to stderr, then throughput and p50/p99 latency per phase over its rounds, then
//! `RATIO kv_grpc_put_64=...` and `RATIO kv_put_1=...`; the last line is
//! `RATIO kv_put_64=<kvd/etcd put throughput at 64 clients over JSON>`.
//!
//! `cargo bench -p sinew-tests --bench kv`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sinew_etcd_api::etcdserverpb::kv_client::KvClient as GrpcKv;
use sinew_etcd_api::etcdserverpb::{PutRequest as GrpcPut, RangeRequest as GrpcRange};
use sinew_proto::kv::{KvClient, RangeRequest};
use sinew_tests::kv_cluster::{KvCluster, Server};
use tonic::transport::{Channel, Endpoint};

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

/// The API a phase goes through.
#[derive(Debug, Clone)]
enum Api {
    /// etcd's v3 JSON gateway.
    Json(KvClient),
    /// etcd's gRPC API, over one connection shared by every client task.
    Grpc(GrpcKv<Channel>),
}

impl Api {
    fn name(&self) -> &'static str {
        match self {
            Self::Json(_) => "json",
            Self::Grpc(_) => "grpc",
        }
    }

    async fn run(&mut self, op: Op, key: String, value: &[u8]) -> Result<()> {
        match (self, op) {
            (Self::Json(client), Op::Put) => {
                client.put(key, value).await?;
            }
            (Self::Json(client), Op::Range) => {
                client
                    .range(&RangeRequest {
                        key: key.into_bytes(),
                        ..RangeRequest::default()
                    })
                    .await?;
            }
            (Self::Grpc(client), Op::Put) => {
                client
                    .put(GrpcPut {
                        key: key.into_bytes(),
                        value: value.to_vec(),
                        ..GrpcPut::default()
                    })
                    .await?;
            }
            (Self::Grpc(client), Op::Range) => {
                client
                    .range(GrpcRange {
                        key: key.into_bytes(),
                        ..GrpcRange::default()
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// A row of the results.
struct Row {
    server: &'static str,
    api: &'static str,
    op: Op,
    clients: usize,
    measured: Measured,
}

/// A cluster under test and its two ways in: JSON, then gRPC.
struct Target {
    name: &'static str,
    apis: [Api; 2],
    _cluster: KvCluster,
    // Dropped after the cluster, which keeps its data there.
    _dir: tempfile::TempDir,
}

impl Target {
    fn start(server: Server, runtime: &tokio::runtime::Runtime) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let cluster = KvCluster::start(server.clone(), dir.path(), 3)?;
        let leader = runtime.block_on(leader_url(&cluster))?;
        let json = Api::Json(KvClient::with_timeout(
            [leader.clone()],
            Duration::from_secs(10),
        )?);
        let grpc = runtime.block_on(async {
            let channel = Endpoint::from_shared(leader.clone())?
                .timeout(Duration::from_secs(10))
                .connect()
                .await
                .with_context(|| format!("connecting to {leader} over gRPC"))?;
            anyhow::Ok(Api::Grpc(GrpcKv::new(channel)))
        })?;
        Ok(Self {
            name: server.name(),
            apis: [json, grpc],
            _cluster: cluster,
            _dir: dir,
        })
    }
}

fn main() -> Result<()> {
    let seconds: u64 = sinew_tests::bench_setting("SINEW_BENCH_SECONDS", 5);
    let rounds: usize = sinew_tests::bench_setting("SINEW_BENCH_ROUNDS", 3);
    let duration = Duration::from_secs(seconds);
    // The load generator runs on one thread: the machine's cores are the six members'
    // and a second client thread only adds handoffs between threads, which cost both
    // clusters' rates (etcd's less, being slower) without adding load.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let targets = [
        Target::start(Server::kvd(true)?, &runtime)?,
        Target::start(Server::Etcd, &runtime)?,
    ];
    let mut rows = Vec::new();
    for way in 0..2 {
        let api = targets[0].apis[way].name();
        for (op, clients) in [(Op::Put, 1), (Op::Put, 64), (Op::Range, 64)] {
            let mut samples = [Samples::default(), Samples::default()];
            for round in 0..rounds {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for index in order {
                    let target = &targets[index];
                    let sample =
                        runtime.block_on(drive(&target.apis[way], op, clients, duration))?;
                    eprintln!(
                        "{} {api} {op:?} {clients}, round {}/{rounds}: {:.0}/s",
                        target.name,
                        round + 1,
                        sample.rate()
                    );
                    samples[index].add(sample);
                }
            }
            for (target, samples) in targets.iter().zip(samples) {
                rows.push(Row {
                    server: target.name,
                    api,
                    op,
                    clients,
                    measured: samples.measured(),
                });
            }
        }
    }
    println!(
        "{:<6} {:<5} {:<6} {:>8} {:>12} {:>9} {:>9}",
        "server", "api", "op", "clients", "ops/s", "p50 ms", "p99 ms"
    );
    for row in &rows {
        println!(
            "{:<6} {:<5} {:<6} {:>8} {:>12.0} {:>9.2} {:>9.2}",
            row.server,
            row.api,
            format!("{:?}", row.op).to_lowercase(),
            row.clients,
            row.measured.ops_per_second,
            row.measured.p50_ms,
            row.measured.p99_ms
        );
    }
    let find = |server: &str, api: &str, op: Op, clients: usize| {
        rows.iter()
            .find(|row| {
                row.server == server && row.api == api && row.op == op && row.clients == clients
            })
            .map(|row| row.measured)
            .context("a phase is missing")
    };
    let compare = |api: &str, op: Op, clients: usize| -> Result<(Measured, Measured)> {
        Ok((
            find("kvd", api, op, clients)?,
            find("etcd", api, op, clients)?,
        ))
    };
    for (api, op, clients) in [
        ("json", Op::Put, 64),
        ("grpc", Op::Put, 64),
        ("grpc", Op::Put, 1),
    ] {
        let (kvd, etcd) = compare(api, op, clients)?;
        println!(
            "p99 {api} put at {clients} clients: kvd {:.2} ms, etcd {:.2} ms ({})",
            kvd.p99_ms,
            etcd.p99_ms,
            if kvd.p99_ms <= etcd.p99_ms {
                "kvd no worse"
            } else {
                "kvd worse"
            }
        );
    }
    let ratio = |(kvd, etcd): (Measured, Measured)| kvd.ops_per_second / etcd.ops_per_second;
    println!(
        "RATIO kv_grpc_put_64={:.3}",
        ratio(compare("grpc", Op::Put, 64)?)
    );
    println!("RATIO kv_put_1={:.3}", ratio(compare("json", Op::Put, 1)?));
    println!(
        "RATIO kv_put_64={:.3}",
        ratio(compare("json", Op::Put, 64)?)
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
            if status.leader != 0
                && Some(status.leader) == status.header.as_ref().map(|header| header.member_id)
            {
                return Ok(member.client_url.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no leader within 10 s")
}

/// Runs `clients` concurrent loops of `op` through `api` for `duration` and times each.
async fn drive(api: &Api, op: Op, clients: usize, duration: Duration) -> Result<Samples> {
    // Ranges read keys the puts wrote; write a few first so they find something.
    let mut setup = api.clone();
    for index in 0..64 {
        setup
            .run(Op::Put, format!("bench/{index:04}"), &[b'x'; 256])
            .await?;
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let value = Arc::new(vec![b'v'; 256]);
    let tasks: Vec<_> = (0..clients)
        .map(|worker| {
            let mut api = api.clone();
            let value = Arc::clone(&value);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut index = 0_usize;
                while Instant::now() < deadline {
                    let key = format!("bench/{:04}", (worker * 7919 + index) % 64);
                    let began = Instant::now();
                    api.run(op, key, &value).await?;
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
    Ok(Samples {
        latencies,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every operation's latency over one or more rounds, and the time they took.
#[derive(Debug, Default)]
struct Samples {
    latencies: Vec<Duration>,
    seconds: f64,
}

impl Samples {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }

    fn add(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.seconds += other.seconds;
    }

    fn measured(mut self) -> Measured {
        self.latencies.sort_unstable();
        let percentile = |fraction: f64| {
            // `fraction` is in 0..=1, so the rounded rank is in 0..len (an empty list gives -1
            // or -0, which saturates to 0 and finds nothing): the cast neither truncates nor
            // wraps.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
            self.latencies
                .get(index)
                .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
        };
        Measured {
            ops_per_second: self.rate(),
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
        }
    }
}
