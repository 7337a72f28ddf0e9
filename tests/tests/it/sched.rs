//! The scheduler on namespace hosts (`SchedBed`): schedd in each host against kvd, units
//! that are real processes, and faults that are real: SIGKILL, SIGSTOP, a host cut off the
//! network.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use sinew_sched::client::Snapshot;
use sinew_sched::engine::{self, EngineConfig};
use sinew_sched::records::Phase;
use sinew_sched::unit::{HealthCheck, Probe, Resources, RestartPolicy, UnitSpec};
use sinew_sched::{keys, InstanceId};
use sinew_tests::eventually;
use sinew_tests::kv_cluster::{KvCluster, Server};
use sinew_tests::sched_bed::{
    pid_alive, simulated_machines, simulated_unit, spread, tcp_health, SchedBed,
};
use sinew_tests::underlay::block_on;

const PATIENCE: Duration = Duration::from_secs(20);

/// An echo server on `port` with a TCP health check, `replicas` of them, never two on one
/// machine.
fn echo_service(bed: &SchedBed, name: &str, replicas: u32) -> Result<UnitSpec> {
    let mut unit = bed.echo_unit(name, 7000)?;
    unit.health = Some(tcp_health(7000));
    unit.placement = spread(name, replicas);
    Ok(unit)
}

/// A stand-in spec for `Snapshot::all_healthy`: `unit` with `replicas` instances.
fn replicated(unit: &str, replicas: u32) -> UnitSpec {
    let mut spec = simulated_unit(unit);
    spec.placement.replicas = replicas;
    spec
}

#[test]
fn units_run_placed_by_the_rules_see_their_fencing_token_and_say_why_they_wait() -> Result<()> {
    let mut bed = SchedBed::new(3, false)?;
    for index in 0..2 {
        bed.start(index, &[])?;
    }
    let client = bed.client()?;
    let web = echo_service(&bed, "web", 3)?;
    let tokens = bed.dir().join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let token_writer = bed.shell_unit(
        "token",
        &format!(
            "echo $SINEW_FENCING_TOKEN > {}/$SINEW_INSTANCE; exec sleep 1000",
            tokens.display()
        ),
    )?;
    let mut riscv = bed.echo_unit("rv", 7001)?;
    riscv.exec.builds[0].arch = "riscv64".into();
    let mut huge = bed.echo_unit("huge", 7002)?;
    huge.resources = Resources {
        memory_mb: 1 << 40,
        cpu_millis: 0,
    };
    for unit in [&web, &token_writer, &riscv, &huge] {
        bed.launch(unit)?;
    }
    let web2 = InstanceId::replica("web", 2);
    let snapshot = bed.wait_for(
        "two web instances healthy, the third waiting",
        PATIENCE,
        |s| {
            s.all_healthy(&replicated("web", 2))
                && s.healthy(&InstanceId::replica("token", 0))
                && s.waiting.contains_key(&web2)
                && s.waiting.len() == 3
        },
    )?;
    let machines: Vec<&String> = (0..2)
        .map(|index| &snapshot.placed[&InstanceId::replica("web", index)].0)
        .collect();
    ensure!(
        machines[0] != machines[1],
        "web@0 and web@1 share {}",
        machines[0]
    );
    // The reason names the conflict on the last machine in id order, wherever web@0 went.
    let (last_machine, last) = machines
        .iter()
        .zip(0..)
        .map(|(machine, index)| (*machine, InstanceId::replica("web", index)))
        .max()
        .context("two web instances")?;
    assert_eq!(
        snapshot.waiting[&web2],
        format!(
            "every machine that fits runs a conflicting instance (last: {last} on {last_machine})"
        )
    );
    assert_eq!(
        snapshot.waiting[&InstanceId::replica("rv", 0)],
        "no machine of arch riscv64 (the unit's builds)"
    );
    assert_eq!(
        snapshot.waiting[&InstanceId::replica("huge", 0)],
        format!("no machine has room for {} MiB and 0 millicpus", 1u64 << 40)
    );
    let token = InstanceId::replica("token", 0);
    // Healthy means spawned for a unit without a check; the shell writes a moment later.
    let written = tokens.join(token.to_string());
    let read = || std::fs::read_to_string(&written).unwrap_or_default();
    eventually("token@0 writes its token", PATIENCE, || !read().is_empty())?;
    assert_eq!(read().trim(), snapshot.placed[&token].1.to_string());

    // A third machine takes the waiting instance.
    bed.start(2, &[])?;
    bed.wait_for("web@2 healthy on the new machine", PATIENCE, |s| {
        s.all_healthy(&replicated("web", 3)) && s.placed[&web2].0 == SchedBed::machine(2)
    })?;

    // Stopping takes the instances off; destroying removes the unit; the others stay.
    block_on(client.stop("web"))??;
    block_on(client.destroy("token"))??;
    bed.wait_for("web and token off every machine", PATIENCE, |s| {
        !s.placed
            .keys()
            .any(|i| i.unit == "web" || i.unit == "token")
            && s.states.is_empty()
    })?;
    Ok(())
}

#[test]
fn schedctl_journal_prints_and_follows_an_instance_log_from_its_machine() -> Result<()> {
    let bed = SchedBed::started(2)?;
    let unit = bed.shell_unit(
        "talk",
        "echo first line; echo on stderr >&2; sleep 1; echo later line; exec sleep 1000",
    )?;
    bed.launch(&unit)?;
    bed.wait_for("talk running", PATIENCE, |s| {
        s.healthy(&InstanceId::replica("talk", 0))
    })?;
    let mut follow = bed
        .schedctl(&["journal", "talk@0", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut followed = String::new();
    let mut reader = std::io::BufReader::new(follow.stdout.take().context("stdout")?);
    let started = Instant::now();
    while !followed.contains("later line") {
        ensure!(started.elapsed() < PATIENCE, "followed only {followed:?}");
        std::io::BufRead::read_line(&mut reader, &mut followed)?;
    }
    follow.kill()?;
    follow.wait()?;
    ensure!(followed.contains("first line\non stderr\n"), "{followed:?}");
    let last = bed.schedctl(&["journal", "talk@0", "-n", "1"]).output()?;
    ensure!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&last.stdout), "later line\n");
    let unplaced = bed.schedctl(&["journal", "nothing@0"]).output()?;
    assert!(!unplaced.status.success());
    assert_eq!(
        String::from_utf8_lossy(&unplaced.stderr).trim(),
        "schedctl: nothing@0 is not placed on any machine"
    );
    Ok(())
}

#[test]
fn a_unit_that_keeps_failing_fails_for_good_and_stays_failed_when_its_machine_is_lost() -> Result<()>
{
    let mut bed = SchedBed::started(2)?;
    let client = bed.client()?;
    let mut unit = bed.shell_unit("crash", "exit 3")?;
    unit.restart.max_restarts = 2;
    bed.launch(&unit)?;
    let crash = InstanceId::replica("crash", 0);
    let failed = bed.wait_for("crash@0 failed", PATIENCE, |s| {
        s.failed.contains_key(&crash)
    })?;
    assert_eq!(
        failed.failed[&crash].reason,
        "exited with code 3, after 2 restarts in a row"
    );
    let machine = failed.placed[&crash].0.clone();
    let index: usize = machine.trim_start_matches('h').parse()?;
    bed.kill(index)?;
    let waiting = bed.wait_for("crash@0 not run elsewhere", PATIENCE, |s| {
        !s.machines.contains_key(&machine) && s.waiting.contains_key(&crash)
    })?;
    assert!(!waiting.placed.contains_key(&crash));
    assert_eq!(
        waiting.waiting[&crash],
        "failed: exited with code 3, after 2 restarts in a row; start the unit again to run it"
    );
    // Starting it again clears the failure: it is placed and run (and fails) anew.
    block_on(client.start("crash"))??;
    bed.wait_for("crash@0 placed again", PATIENCE, |s| {
        s.placed.contains_key(&crash)
    })?;
    Ok(())
}

#[test]
fn command_and_http_checks_decide_health_restart_an_unhealthy_instance_and_fail_one_never_healthy(
) -> Result<()> {
    let bed = SchedBed::started(1)?;
    let ready = bed.dir().join("ready");
    let mut unit = bed.shell_unit("cmd", "exec sleep 1000")?;
    unit.health = Some(HealthCheck {
        interval_ms: 100,
        start_period_ms: 60_000,
        ..HealthCheck::new(Probe::Command {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("test -e {}", ready.display()),
            ],
        })
    });
    bed.launch(&unit)?;
    let cmd = InstanceId::replica("cmd", 0);
    let state = |s: &Snapshot| s.states.get(&cmd).cloned();
    bed.wait_for("cmd@0 running", PATIENCE, |s| {
        state(s).is_some_and(|state| state.phase == Phase::Running)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let starting = state(&bed.snapshot()?).context("cmd@0's state")?;
    ensure!(
        !starting.healthy,
        "healthy before its check passed: {starting:?}"
    );
    std::fs::write(&ready, "")?;
    let healthy = bed.wait_for("cmd@0 healthy once its command passes", PATIENCE, |s| {
        s.healthy(&cmd)
    })?;
    let first = state(&healthy).context("cmd@0's state")?;
    std::fs::remove_file(&ready)?;
    let restarted = bed.wait_for("cmd@0 restarted after 3 failed checks", PATIENCE, |s| {
        state(s).is_some_and(|state| state.restarts == 1 && state.pid.is_some())
    })?;
    let second = state(&restarted).context("cmd@0's state")?;
    ensure!(second.pid != first.pid, "the same process: {second:?}");
    ensure!(
        !pid_alive(first.pid.context("a pid")?),
        "the unhealthy process lives on"
    );
    ensure!(
        bed.log(0).contains(&format!(
            "health check failed 3 times in a row: (/bin/sh -c test -e {}): ended: exit status: 1",
            ready.display()
        )),
        "{}",
        bed.log(0)
    );

    // A real HTTP server answering 404 on the checked path never becomes healthy.
    let www = bed.dir().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "here\n")?;
    let mut web = bed.shell_unit(
        "web",
        &format!("exec /bin/busybox httpd -f -p 7301 -h {}", www.display()),
    )?;
    web.restart.policy = RestartPolicy::Never;
    web.health = Some(HealthCheck {
        interval_ms: 100,
        start_period_ms: 1500,
        ..HealthCheck::new(Probe::Http {
            port: 7301,
            path: "/missing".into(),
        })
    });
    bed.launch(&web)?;
    let web0 = InstanceId::replica("web", 0);
    let failed = bed.wait_for("web@0 failed", PATIENCE, |s| s.failed.contains_key(&web0))?;
    assert_eq!(
        failed.failed[&web0].reason,
        "never healthy within 1.5s: (GET http://127.0.0.1:7301/missing): answered 404 Not Found"
    );
    Ok(())
}

#[test]
fn bad_records_are_skipped_naming_the_key_and_the_engine_keeps_placing() -> Result<()> {
    let bed = SchedBed::started(1)?;
    let client = bed.client()?;
    let kv = client.kv().clone();
    block_on(kv.put(keys::unit("garbage"), "{not json"))??;
    block_on(kv.put(format!("{}units/", keys::ROOT), "{}"))??;
    let web = echo_service(&bed, "web", 1)?;
    bed.launch(&web)?;
    bed.wait_for("web healthy despite the bad records", PATIENCE, |s| {
        s.all_healthy(&replicated("web", 1))
    })?;
    let log = bed.log(0);
    ensure!(
        log.contains("ignoring /sinew/sched/units/garbage: not a valid unit record"),
        "the engine's log does not name the bad record:\n{log}"
    );
    // The operator is refused at once for a spec that contradicts itself.
    let mut bad = web.clone();
    bad.placement.global = true;
    bad.placement.replicas = 3;
    let refusal = block_on(client.submit(&bad))?.expect_err("a contradictory spec is refused");
    assert!(
        refusal.to_string().contains("placement.replicas"),
        "{refusal}"
    );
    Ok(())
}

#[test]
fn a_killed_agents_instances_run_elsewhere_within_seconds_and_never_twice() -> Result<()> {
    let mut bed = SchedBed::started(3)?;
    bed.launch(&echo_service(&bed, "web", 2)?)?;
    let before = bed.wait_for("web healthy", PATIENCE, |s| {
        s.all_healthy(&replicated("web", 2))
    })?;
    let web0 = InstanceId::replica("web", 0);
    let victim = before.placed[&web0].0.clone();
    let old_pid = before.states[&web0].pid.context("web@0's pid")?;
    let index: usize = victim.trim_start_matches('h').parse()?;
    let killed = Instant::now();
    bed.kill(index)?;
    // The instance dies with its agent, at once (PR_SET_PDEATHSIG), long before a lease ends.
    eventually(
        &format!("web@0 (pid {old_pid}) dies with its agent"),
        Duration::from_millis(500),
        || !pid_alive(old_pid),
    )?;
    let after = bed.wait_for("web@0 healthy elsewhere", PATIENCE, |s| {
        s.all_healthy(&replicated("web", 2)) && s.placed[&web0].0 != victim
    })?;
    let took = killed.elapsed();
    ensure!(
        took < Duration::from_secs(6),
        "web@0 took {took:?} to run elsewhere"
    );
    assert_ne!(
        after.placed[&web0].1, before.placed[&web0].1,
        "a new fencing token"
    );
    // The other instance was not touched.
    let web1 = InstanceId::replica("web", 1);
    assert_eq!(after.placed[&web1], before.placed[&web1]);
    assert_eq!(after.states[&web1].pid, before.states[&web1].pid);
    Ok(())
}

#[test]
fn a_machine_cut_off_from_the_store_stops_its_instances_before_they_start_elsewhere() -> Result<()>
{
    let bed = SchedBed::started(3)?;
    let starts = bed.dir().join("starts");
    std::fs::create_dir_all(&starts)?;
    let unit = bed.shell_unit(
        "job",
        &format!(
            "date +%s%N > {}/$SINEW_INSTANCE.$SINEW_MACHINE.$SINEW_FENCING_TOKEN; exec sleep 1000",
            starts.display()
        ),
    )?;
    bed.launch(&unit)?;
    let job = InstanceId::replica("job", 0);
    let before = bed.wait_for("job running", PATIENCE, |s| s.healthy(&job))?;
    let (victim, old_token) = before.placed[&job].clone();
    let old_pid = before.states[&job].pid.context("job@0's pid")?;
    let index: usize = victim.trim_start_matches('h').parse()?;
    bed.cut(index)?;
    let cut = Instant::now();
    let mut died: Option<SystemTime> = None;
    let new_start = loop {
        if died.is_none() && !pid_alive(old_pid) {
            died = Some(SystemTime::now());
        }
        let started_elsewhere = std::fs::read_dir(&starts)?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .find(|name| !name.starts_with(&format!("job@0.{victim}.")));
        // The shell creates the file before `date` writes to it.
        let written = started_elsewhere.and_then(|name| {
            let nanos = std::fs::read_to_string(starts.join(&name)).ok()?;
            Some((name, nanos.trim().parse::<u128>().ok()?))
        });
        if let Some(started) = written {
            break started;
        }
        ensure!(
            cut.elapsed() < PATIENCE,
            "job@0 never started elsewhere:\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let died =
        died.context("the cut-off machine's instance was still alive when another started")?;
    let died_nanos = died.duration_since(SystemTime::UNIX_EPOCH)?.as_nanos();
    ensure!(
        died_nanos < new_start.1,
        "job@0 started as {} {} ms before the old one was seen dead",
        new_start.0,
        (died_nanos - new_start.1) / 1_000_000
    );
    ensure!(
        bed.log(index)
            .contains("killing every instance before the lease can end"),
        "the cut-off agent did not fence itself:\n{}",
        bed.log(index)
    );
    // Back on the network, the machine registers anew and runs nothing of job@0.
    bed.mend(index)?;
    let after = bed.wait_for("the mended machine registered again", PATIENCE, |s| {
        s.machines.contains_key(&victim) && s.healthy(&job)
    })?;
    ensure!(after.placed[&job].0 != victim && after.placed[&job].1 != old_token);
    Ok(())
}

#[test]
fn an_engine_that_dies_hands_over_without_restarting_anything() -> Result<()> {
    let mut bed = SchedBed::new(4, false)?;
    for index in 0..2 {
        bed.start(index, &["--role", "agent"])?;
    }
    for index in 2..4 {
        bed.start(index, &["--role", "engine"])?;
    }
    bed.launch(&echo_service(&bed, "web", 2)?)?;
    let before = bed.wait_for("web healthy", PATIENCE, |s| {
        s.all_healthy(&replicated("web", 2))
    })?;
    let leader = before.engine.clone().context("an engine leads")?;
    let index: usize = leader.trim_start_matches('h').parse()?;
    bed.kill(index)?;
    let other = SchedBed::machine(5 - index);
    bed.wait_for("the other engine leads", PATIENCE, |s| {
        s.engine.as_deref() == Some(other.as_str())
    })?;
    // The new engine places what is submitted now, and moved nothing that ran.
    bed.launch(&echo_service(&bed, "api", 1)?)?;
    let after = bed.wait_for("api healthy", PATIENCE, |s| {
        s.all_healthy(&replicated("api", 1))
    })?;
    for index in 0..2 {
        let web = InstanceId::replica("web", index);
        assert_eq!(after.placed[&web], before.placed[&web], "{web}'s placement");
        assert_eq!(
            after.states[&web].pid, before.states[&web].pid,
            "{web}'s process"
        );
    }
    Ok(())
}

/// The engine a snapshot names is the election queue's head, the earliest campaigner, even
/// when a later one's key (named by its lease id) sorts first.
#[test]
fn the_engine_named_is_the_earliest_campaigner_whatever_its_lease_id() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = KvCluster::start(Server::kvd(false)?, dir.path(), 1)?;
    let client = sinew_proto::kv::KvClient::new(kv.endpoints())?;
    let snapshot = block_on(async {
        let mut campaigns = Vec::new();
        for _ in 0..2 {
            let lease = client.lease_grant(60).await?.id;
            campaigns.push((format!("{}/{lease:x}", keys::ENGINE_ELECTION), lease));
        }
        // The key that sorts last campaigns first.
        campaigns.sort();
        for (order, (key, lease)) in campaigns.iter().rev().enumerate() {
            client
                .put_request(&sinew_proto::kv::PutRequest {
                    key: key.clone().into_bytes(),
                    value: format!("engine-{order}").into_bytes(),
                    lease: *lease,
                    ..sinew_proto::kv::PutRequest::default()
                })
                .await?;
        }
        sinew_sched::client::SchedClient::new(client.clone())
            .snapshot()
            .await
            .context("a snapshot")
    })??;
    assert_eq!(snapshot.engine.as_deref(), Some("engine-0"));
    Ok(())
}

#[test]
fn a_thousand_units_on_a_hundred_machines_are_placed_from_one_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = KvCluster::start(Server::kvd(false)?, dir.path(), 1)?;
    let client =
        sinew_sched::client::SchedClient::new(sinew_proto::kv::KvClient::new(kv.endpoints())?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Nothing renews their lease: it outlives the test's patience.
        simulated_machines(&client, 100, 600).await?;
        let config = EngineConfig {
            name: "test-engine".into(),
            ..EngineConfig::default()
        };
        let stats = Arc::clone(&config.stats);
        let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
        let engine = tokio::spawn(engine::run(client.kv().clone(), config, async {
            let _ = stopping.await;
        }));
        let started = Instant::now();
        for index in 0..1000 {
            let unit = simulated_unit(&format!("u{index:04}"));
            client.submit(&unit).await?;
            client.start(&unit.name).await?;
        }
        loop {
            let snapshot = client.snapshot().await?;
            if snapshot.placed.len() == 1000 {
                let mut per_machine: BTreeMap<&str, usize> = BTreeMap::new();
                for (machine, _) in snapshot.placed.values() {
                    *per_machine.entry(machine).or_default() += 1;
                }
                ensure!(per_machine.values().all(|&n| n == 10), "{per_machine:?}");
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "only {} placed",
                snapshot.placed.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(());
        engine.await?;
        ensure!(
            stats.reads.load(std::sync::atomic::Ordering::Relaxed) == 1,
            "the engine read the whole store {} times",
            stats.reads.load(std::sync::atomic::Ordering::Relaxed)
        );
        Ok(())
    })
}
