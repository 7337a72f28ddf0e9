//! Scheduler benchmark, on namespace hosts running schedd against kvd (`SchedBed`).
//!
//! 1. Failover: a replicated echo service (TCP health-checked, one instance per machine) on
//!    four machines; each trial takes one machine that runs an instance away, by turns
//!    killing its schedd outright (its instances die with it) and cutting it off the
//!    network (its agent must fence itself), and times how long until every instance it
//!    ran is running and healthy elsewhere. A double run is an instance that started on a
//!    new machine before its process on the old one was seen dead (polled every 5 ms).
//! 2. Placement throughput: 1,000 single-instance units on 100 simulated machines (records
//!    under a lease, no agents), launched before one engine starts; from its start until
//!    every unit is placed.
//!
//! `cargo bench -p sinew-tests --bench schedule`; `SINEW_BENCH_TRIALS=N` failover trials
//! (default 10). The line before the last counts double runs over all trials; the last is
//! `RATIO reschedule_s=<p95 seconds to healthy elsewhere>`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use sinew_sched::client::{SchedClient, Snapshot};
use sinew_sched::engine::{self, EngineConfig};
use sinew_sched::InstanceId;
use sinew_tests::kv_cluster::{KvCluster, Server};
use sinew_tests::sched_bed::{
    pid_alive, simulated_machines, simulated_unit, spread, tcp_health, SchedBed,
};
use sinew_tests::{median, percentile};

const HOSTS: usize = 4;
const REPLICAS: u32 = 3;
const PATIENCE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let trials: usize = sinew_tests::bench_setting("SINEW_BENCH_TRIALS", 10);
    let (mut seconds, double_runs) = failover(trials)?;
    let units_per_second = placement_throughput(1000, 100)?;
    let (p50, p95) = (median(&mut seconds.clone()), percentile(&mut seconds, 95.0));
    println!(
        "failover trials: {trials} (kill and cut in turn), {HOSTS} machines, {REPLICAS} instances"
    );
    println!("reschedule to healthy: p50 {p50:.3} s, p95 {p95:.3} s");
    println!("placement: {units_per_second:.0} units/s (1000 units, 100 simulated machines)");
    println!("double runs: {double_runs} in {trials} trials");
    println!("RATIO reschedule_s={p95:.3}");
    Ok(())
}

/// Runs the failover trials; returns each trial's seconds and the double runs seen.
fn failover(trials: usize) -> Result<(Vec<f64>, usize)> {
    let mut bed = SchedBed::new(HOSTS, true)?;
    for index in 0..HOSTS {
        bed.start(index, &[])?;
    }
    let starts = bed.dir().join("starts");
    std::fs::create_dir_all(&starts)?;
    let mut unit = bed.shell_unit(
        "echo",
        &format!(
            "date +%s%N > {}/$SINEW_INSTANCE.$SINEW_FENCING_TOKEN; exec {} echo-server 7000",
            starts.display(),
            bed.probe().display()
        ),
    )?;
    unit.health = Some(tcp_health(7000));
    unit.placement = spread("echo", REPLICAS);
    bed.launch(&unit)?;
    let mut seconds = Vec::new();
    let mut double_runs = 0;
    for trial in 0..trials {
        let before = bed.wait_for("every instance healthy", PATIENCE, all_healthy)?;
        let victim = SchedBed::machine(trial % HOSTS);
        let victim = if before.placed.values().any(|(m, _)| *m == victim) {
            victim
        } else {
            // The machine without an instance this time: take the next one.
            SchedBed::machine((trial + 1) % HOSTS)
        };
        let index: usize = victim.trim_start_matches('h').parse()?;
        let moving: BTreeMap<InstanceId, u32> = before
            .placed
            .iter()
            .filter(|(_, (machine, _))| *machine == victim)
            .map(|(instance, _)| {
                Ok((
                    instance.clone(),
                    before.states[instance].pid.context("a pid")?,
                ))
            })
            .collect::<Result<_>>()?;
        let cut = trial % 2 == 1;
        let began = Instant::now();
        if cut {
            bed.cut(index)?;
        } else {
            bed.kill(index)?;
        }
        let mut died: BTreeMap<u32, SystemTime> = BTreeMap::new();
        let after = loop {
            for pid in moving.values() {
                if !died.contains_key(pid) && !pid_alive(*pid) {
                    died.insert(*pid, SystemTime::now());
                }
            }
            let snapshot = bed.snapshot()?;
            if all_healthy(&snapshot)
                && moving
                    .keys()
                    .all(|instance| snapshot.placed[instance].0 != victim)
            {
                break snapshot;
            }
            ensure!(
                began.elapsed() < PATIENCE,
                "trial {trial}: not rescheduled:\n{}",
                bed.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        seconds.push(began.elapsed().as_secs_f64());
        for (instance, pid) in &moving {
            let token = after.placed[instance].1;
            let started = start_time(&starts, instance, token)?;
            match died.get(pid) {
                Some(death) if *death < started => {}
                _ => {
                    double_runs += 1;
                    eprintln!(
                        "trial {trial}: {instance} started again before pid {pid} was seen dead"
                    );
                }
            }
        }
        eprintln!(
            "trial {trial}: {} {victim}: {} rescheduled in {:.3} s",
            if cut { "cut" } else { "killed" },
            moving.len(),
            began.elapsed().as_secs_f64()
        );
        if cut {
            bed.mend(index)?;
        } else {
            bed.start(index, &[])?;
        }
        bed.wait_for("the machine back", PATIENCE, |s| {
            s.machines.contains_key(&victim)
        })?;
    }
    Ok((seconds, double_runs))
}

/// When the instance under `token` started, by its own record.
fn start_time(starts: &Path, instance: &InstanceId, token: i64) -> Result<SystemTime> {
    let path = starts.join(format!("{instance}.{token}"));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(nanos) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
        {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos));
        }
        ensure!(
            Instant::now() < deadline,
            "{} was never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all_healthy(snapshot: &Snapshot) -> bool {
    let mut unit = simulated_unit("echo");
    unit.placement.replicas = REPLICAS;
    snapshot.all_healthy(&unit)
}

/// Units placed per second by one engine: `units` units on `machines` simulated machines.
fn placement_throughput(units: usize, machines: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let kv = KvCluster::start(Server::kvd(true)?, dir.path(), 1)?;
    let client = SchedClient::new(sinew_proto::kv::KvClient::new(kv.endpoints())?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        simulated_machines(&client, machines, 60).await?;
        // Launched before the engine starts, so the time is the engine's alone: one read,
        // one plan, a transaction per placement.
        for index in 0..units {
            let unit = simulated_unit(&format!("u{index:04}"));
            client.submit(&unit).await?;
            client.start(&unit.name).await?;
        }
        let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
        let began = Instant::now();
        let engine = tokio::spawn(engine::run(
            client.kv().clone(),
            EngineConfig::default(),
            async {
                let _ = stopping.await;
            },
        ));
        loop {
            let placed = client.snapshot().await?.placed.len();
            if placed == units {
                break;
            }
            ensure!(
                began.elapsed() < Duration::from_secs(120),
                "only {placed} of {units} placed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = began.elapsed().as_secs_f64();
        let _ = stop.send(());
        engine.await?;
        Ok(units as f64 / seconds)
    })
}
