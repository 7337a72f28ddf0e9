//! kvd under faults, at length, and its failover against etcd's.
//!
//! 1. `SINEW_BENCH_RUNS` (default 10; 100 for a long soak) seeded fault runs of
//!    `SINEW_BENCH_SECONDS` (default 30) each on a release kvd (`SINEW_FAULT_SERVER=etcd`:
//!    Debian's etcd, to check the checkers against the reference), alternating three and
//!    five members: kills of one member or all, pauses, partitions (majority/minority,
//!    isolated leader, bridge, ring), clock jumps and member replacements, six clients over
//!    JSON and gRPC, four lock clients, every checker. Run `i` uses seed `base + i`
//!    (`SINEW_FAULT_SEED` sets the base; `SINEW_FAULT_KINDS` picks kinds from
//!    `kill,kill-all,pause,partition,clock-jump,membership`; `SINEW_FAULT_MEMBERS` fixes the
//!    size). Each run prints its report; a failed one adds the operations behind each
//!    anomaly and the environment that replays its schedule.
//! 2. Failover, kvd and Debian's etcd 3.4 in the same run, each a three-member cluster in
//!    network namespaces with etcd's default timings (heartbeat 100 ms, election 1 s):
//!    `SINEW_BENCH_ROUNDS` (default 7) SIGKILLs of the leader, timing the first
//!    acknowledged write and the first linearizable read after each.
//!
//! `cargo bench -p sinew-tests --bench faults`. The line before last counts violations
//! (goal 0); the last is `RATIO failover=<kvd/etcd median time to first write after a
//! leader kill>` (goal ≤ 1.0).

use std::time::Duration;

use anyhow::{ensure, Result};
use sinew_tests::faults::{self, nemesis::Kind, Config, Failover};
use sinew_tests::kv_cluster::Server;
use sinew_tests::{bench_setting, median};

fn main() -> Result<()> {
    let runs: u64 = bench_setting("SINEW_BENCH_RUNS", 10);
    let seconds: u64 = bench_setting("SINEW_BENCH_SECONDS", 30);
    let rounds: usize = bench_setting("SINEW_BENCH_ROUNDS", 7);
    ensure!(rounds >= 1, "need at least one failover round");
    let kvd = Server::kvd(true)?;
    let soaked = match bench_setting("SINEW_FAULT_SERVER", "kvd".to_owned()).as_str() {
        "etcd" => Server::Etcd,
        _ => kvd.clone(),
    };
    let base = faults::seed();
    let kinds = match std::env::var("SINEW_FAULT_KINDS") {
        Ok(list) => Kind::parse_list(&list)?,
        Err(_) => Kind::ALL.to_vec(),
    };
    let members: Option<usize> = std::env::var("SINEW_FAULT_MEMBERS")
        .ok()
        .map(|members| members.parse())
        .transpose()?;
    let mut failed = Vec::new();
    let mut violations = 0;
    for run in 0..runs {
        let config = Config {
            server: soaked.clone(),
            members: members.unwrap_or(if run % 2 == 0 { 3 } else { 5 }),
            clients: 6,
            lockers: 4,
            keys: 3,
            duration: Duration::from_secs(seconds),
            seed: base.wrapping_add(run),
            kinds: kinds.clone(),
        };
        let report = faults::run(&config)?;
        println!("run {run}: {report}");
        if !report.passed() {
            violations += report.violations.len();
            failed.push(config.seed);
        }
    }
    let mut medians = Vec::new();
    for server in [kvd, Server::Etcd] {
        let times = faults::failover(server.clone(), 3, rounds)?;
        let (write, read) = summary(&times);
        println!(
            "failover {:<4}: {rounds} leader kills, median first write {write:.0} ms, first linearizable read {read:.0} ms",
            server.name()
        );
        medians.push(write);
    }
    println!(
        "violations: {violations} in {runs} runs{}",
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (seeds {failed:?})")
        }
    );
    println!("RATIO failover={:.3}", medians[0] / medians[1]);
    Ok(())
}

/// The median time to the first write and to the first read, in milliseconds.
fn summary(times: &[Failover]) -> (f64, f64) {
    let mut writes: Vec<f64> = times.iter().map(|t| t.write.as_secs_f64() * 1e3).collect();
    let mut reads: Vec<f64> = times.iter().map(|t| t.read.as_secs_f64() * 1e3).collect();
    (median(&mut writes), median(&mut reads))
}
