//! kvd (or etcd) under faults, as Jepsen tests etcd: a cluster whose members each live in a
//! network namespace of their own ([`bed`]), faults from a seeded schedule ([`nemesis`]),
//! concurrent clients over the JSON and gRPC APIs recording every operation
//! ([`workload`]), lock clients ([`locks`]), watchers of the whole keyspace ([`watchers`]),
//! and checkers: each key's history linearizable ([`crate::linearizable`]), writes and
//! watchers against the store's history ([`checks`]), lock holders never overlapping
//! ([`locks`]). [`failover`] times a leader's loss.
//!
//! A run ends with every fault mended and the cluster whole, then final reads of every key,
//! then the store's history read afresh; the [`Report`] says what happened and, for a
//! failed run, shows the operations behind each anomaly, keeps the members' data and logs,
//! and gives the line that replays the schedule (`SINEW_FAULT_SEED` and the rest).

pub mod bed;
pub mod checks;
pub mod locks;
pub mod nemesis;
pub mod watchers;
pub mod workload;

mod failover;
mod report;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sinew_proto::kv::KvClient;

use crate::kv_cluster::Server;
use crate::linearizable::{Call, Outcome};
use bed::FaultBed;
use nemesis::Kind;
use watchers::Watcher;
use workload::{Api, Client, Ending, Record};

pub use failover::{failover, Failover};
pub use report::Report;

/// What a fault run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server under test.
    pub server: Server,
    /// Its members (3 or 5).
    pub members: usize,
    /// Concurrent clients; even ones use the JSON API, odd ones gRPC.
    pub clients: usize,
    /// How many keys they share.
    pub keys: usize,
    /// Clients taking one lock in turns; even ones over JSON, odd ones over gRPC.
    pub lockers: usize,
    /// How long the clients and the faults run.
    pub duration: Duration,
    /// The seed of the fault schedule and of the clients' choices.
    pub seed: u64,
    /// The kinds of fault to schedule.
    pub kinds: Vec<Kind>,
}

impl Config {
    /// The environment under which the `faults` benchmark runs this configuration's
    /// schedule once.
    pub fn replay(&self) -> String {
        let kinds: Vec<&str> = self.kinds.iter().map(|kind| kind.name()).collect();
        format!(
            "SINEW_FAULT_SERVER={} SINEW_FAULT_SEED={} SINEW_FAULT_KINDS={} SINEW_FAULT_MEMBERS={} SINEW_BENCH_SECONDS={} SINEW_BENCH_RUNS=1",
            self.server.name(),
            self.seed,
            kinds.join(","),
            self.members,
            self.duration.as_secs(),
        )
    }
}

/// The seed from `SINEW_FAULT_SEED`, else a new one from the clock.
pub fn seed() -> u64 {
    std::env::var("SINEW_FAULT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            u64::try_from(now.as_nanos() % u128::from(u64::MAX)).unwrap_or_default()
        })
}

/// How long the cluster may take to become whole and the watchers to catch up after the
/// faults.
const RECOVERY: Duration = Duration::from_secs(30);

/// Runs `config` and checks what happened.
pub fn run(config: &Config) -> Result<Report> {
    let mut bed = FaultBed::start(config.server.clone(), config.members)?;
    let endpoints = bed.endpoints();
    let runtime = tokio::runtime::Runtime::new()?;
    let start_revision = runtime.block_on(revision(&endpoints))? + 1;
    let watchers = {
        let _entered = runtime.enter();
        [Api::Json, Api::Grpc]
            .into_iter()
            .map(|api| Watcher::start(api, &endpoints, start_revision))
            .collect::<Result<Vec<_>>>()?
    };
    let started = Instant::now();
    let until = started + config.duration;
    let clients = (0..config.clients)
        .map(|index| {
            let _entered = runtime.enter();
            let api = Api::by_turns(index);
            let client = Client::new(index, api, &endpoints, started)?;
            let seed = config.seed.wrapping_add(index as u64 + 1);
            Ok(runtime.spawn(drive(client, seed, config.keys, until)))
        })
        .collect::<Result<Vec<_>>>()?;
    let lockers = (0..config.lockers)
        .map(|index| {
            let api = Api::by_turns(index);
            let seed = config.seed.wrapping_sub(index as u64 + 1);
            runtime.spawn(locks::drive(index, api, endpoints.clone(), seed, until))
        })
        .collect::<Vec<_>>();
    let steps = nemesis::schedule(config.seed, config.duration, config.members, &config.kinds);
    let happened = nemesis::run(&mut bed, &steps, config.seed, started, until);
    bed.mend()?;
    let happened = happened?;
    let mut records = Vec::new();
    for client in clients {
        records.extend(runtime.block_on(client)?);
    }
    let mut held = Vec::new();
    let mut lock_failures = 0;
    for locker in lockers {
        let (holdings, failures) = runtime.block_on(locker)?;
        held.extend(holdings);
        lock_failures += failures;
    }
    bed.cluster.wait_healthy(RECOVERY)?;
    let finals = Client::new(config.clients, Api::Json, &endpoints, started)?;
    records.extend(runtime.block_on(final_reads(finals, config.keys))?);
    let end_revision = runtime.block_on(revision(&endpoints))?;
    let mut seen = Vec::new();
    for watcher in watchers {
        runtime.block_on(watcher.caught_up(end_revision, RECOVERY));
        let api = watcher.api;
        let (mut events, errors) = watcher.finish();
        // Compared with the history up to `end_revision`; a lock's lease can still end
        // after it, and its deletion reach the watcher.
        events.retain(|event| event.revision <= end_revision);
        seen.push((api, events, errors));
    }
    let history = runtime
        .block_on(watchers::history(&endpoints, start_revision, end_revision))
        .context("reading the store's history after the run")?;
    let run = Run {
        happened,
        records,
        held,
        lock_failures,
        seen,
        history,
        revisions: (start_revision, end_revision),
    };
    let mut report = Report::new(config, run);
    if !report.passed() {
        report.kept = Some(bed.keep_dir().to_path_buf());
    }
    Ok(report)
}

/// Everything a run recorded, for the checkers.
#[derive(Debug)]
struct Run {
    happened: Vec<nemesis::Happened>,
    records: Vec<Record>,
    held: Vec<locks::Held>,
    lock_failures: usize,
    seen: Vec<(Api, Vec<watchers::Seen>, Vec<String>)>,
    history: Vec<watchers::Seen>,
    revisions: (i64, i64),
}

/// The store's current revision, from the first member that answers.
async fn revision(endpoints: &[String]) -> Result<i64> {
    let client = KvClient::new(endpoints.to_vec())?;
    let response = client.get_prefix(workload::PREFIX).await?;
    Ok(workload::revision(response.header))
}

/// One client's operations until `until`: reads, writes and compare-and-sets of random
/// keys, each compare-and-set expecting what the client last knew of the key.
async fn drive(mut client: Client, seed: u64, keys: usize, until: Instant) -> Vec<Record> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut known: HashMap<String, Option<String>> = HashMap::new();
    let mut records = Vec::new();
    while Instant::now() < until {
        let key = format!("k{}", rng.usize(..keys));
        let call = match rng.u8(..10) {
            0..=3 => Call::Read,
            4..=6 => Call::Write(client.fresh_value()),
            _ => Call::Cas {
                expected: known.get(&key).cloned().flatten(),
                new: client.fresh_value(),
            },
        };
        let record = client.run(&key, call).await;
        match (&record.operation.call, &record.operation.outcome) {
            (_, Outcome::Read(value)) => {
                known.insert(key, value.clone());
            }
            (
                Call::Write(value) | Call::Cas { new: value, .. },
                Outcome::Written | Outcome::Cas(true),
            ) => {
                known.insert(key, Some(value.clone()));
            }
            _ => {}
        }
        if !matches!(record.ending, Ending::Answered { .. }) {
            // A dead member refuses at once: do not spin on it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        records.push(record);
    }
    records
}

/// A read of every key once the cluster is whole again (retried until answered): the last
/// word on each key for the linearizability checker.
async fn final_reads(mut client: Client, keys: usize) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for key in (0..keys).map(|key| format!("k{key}")) {
        let mut attempts = 0;
        loop {
            let record = client.run(&key, Call::Read).await;
            if matches!(record.ending, Ending::Answered { .. }) {
                records.push(record);
                break;
            }
            attempts += 1;
            anyhow::ensure!(
                attempts < 20,
                "the final read of {key} failed: {:?}",
                record.ending
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(records)
}
