//! `fleet`: fleet's job on four guests of both architectures. kvd runs on three of them and
//! schedd on all four; the playbook starts a replicated echo service (two instances, never
//! on one machine, health-checked), a global unit (one on every machine) and a unit that
//! conflicts with the echo service (so it takes a machine the service left free), and shows
//! where each went. Then it pulls the plug on a guest that runs an echo instance and shows
//! the instance placed again on the machine still free, healthy and answering, with the
//! time it took.
//!
//! `cargo run --bin fleet [-- --dry-run | -v]`

use std::time::{Duration, Instant};

use anyhow::Context;
use sinew::sched::{binary_exec, HealthCheck, Probe, SchedulerSpec, Snapshot, UnitSpec};
use sinew::{Arch, Artifacts, Build, Host, LabSpec, MachineSpec, Run};

/// Where the probe is installed on every guest.
const PROBE_PATH: &str = "/usr/local/bin/sinew-probe";
const ECHO_PORT: u16 = 7000;
/// How long the cluster may take to place and start units (emulated guests).
const PATIENCE: Duration = Duration::from_secs(180);

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("fleet")?;
    let bins = run.build(&Build::bins(&[
        "kvd",
        "kvctl",
        "schedd",
        "schedctl",
        "sinew-probe",
    ]))?;
    let lab = run.boot(
        &LabSpec::new("fleet")
            .machine(MachineSpec::new("f1", Arch::X86_64))
            .machine(MachineSpec::new("f2", Arch::Aarch64))
            .machine(MachineSpec::new("f3", Arch::X86_64))
            .machine(MachineSpec::new("f4", Arch::Aarch64)),
    )?;
    let hosts = lab.hosts();
    let kv = run.deploy_kv(&hosts[..3], &bins)?;
    run.each(hosts, "install sinew-probe", |host| {
        Ok::<_, anyhow::Error>(host.install(bins.get("sinew-probe", host.arch())?, PROBE_PATH)?)
    })?;
    let scheduler = run.deploy_scheduler(hosts, &bins, &kv, &SchedulerSpec::default())?;

    let echo = echo_service(&bins)?;
    let global = global_unit(&bins)?;
    let batch = batch_unit(&bins)?;
    for unit in [&echo, &global, &batch] {
        run.task(&format!("start unit {}", unit.name), || {
            scheduler.start(unit)
        })?;
    }
    if run.is_dry_run() {
        run.shutdown(lab)?;
        run.finish()?;
        return Ok(());
    }
    let placed = run.task("every unit healthy", || {
        scheduler.wait_until("every unit healthy", PATIENCE, |snapshot| {
            [&echo, &global, &batch]
                .iter()
                .all(|unit| snapshot.all_healthy(unit))
                && snapshot
                    .placed
                    .keys()
                    .filter(|i| i.unit == global.name)
                    .count()
                    == hosts.len()
        })
    })?;
    show_placement(&run, &placed);
    answer(&run, hosts, &placed, "before")?;

    let (victim, _) = placed
        .placed
        .iter()
        .find(|(instance, _)| instance.unit == echo.name)
        .map(|(_, placement)| placement.clone())
        .context("an echo instance is placed")?;
    let moving: Vec<String> = placed
        .placed
        .iter()
        .filter(|(instance, (machine, _))| *machine == victim && instance.unit != global.name)
        .map(|(instance, _)| instance.to_string())
        .collect();
    run.say(format!(
        "pulling the plug on {victim}, which runs {}",
        moving.join(", ")
    ));
    let crashed = Instant::now();
    run.crash(&lab, &victim)?;
    let alive: Vec<Host> = hosts
        .iter()
        .filter(|host| host.name() != victim)
        .cloned()
        .collect();
    let replaced = run.task("instances placed again and healthy", || {
        scheduler.wait_until("instances placed again", PATIENCE, |snapshot| {
            [&echo, &batch]
                .iter()
                .all(|unit| snapshot.all_healthy(unit))
                && !snapshot.machines.contains_key(&victim)
                && snapshot
                    .placed
                    .values()
                    .all(|(machine, _)| *machine != victim)
        })
    });
    let after = match replaced {
        Ok(after) => after,
        Err(failed) => {
            // What the remaining agents and engines saw says why.
            for host in &alive {
                let lines = host.service_logs(sinew::sched::SERVICE, 40)?;
                run.say(format!(
                    "{host}: schedd's last lines:\n{}",
                    lines.join("\n")
                ));
            }
            return Err(failed.into());
        }
    };
    let took = crashed.elapsed();
    show_placement(&run, &after);
    run.say(format!(
        "{} running again elsewhere {:.1} s after {victim} died",
        moving.join(", "),
        took.as_secs_f64()
    ));
    answer(&run, &alive, &after, "after")?;
    run.shutdown(lab)?;
    run.finish()?;
    Ok(())
}

fn probe_unit(bins: &Artifacts, name: &str, port: u16) -> anyhow::Result<UnitSpec> {
    let mut unit = UnitSpec::new(name, binary_exec(bins, "sinew-probe", PROBE_PATH)?);
    unit.args = vec!["echo-server".to_owned(), port.to_string()];
    unit.health = Some(HealthCheck::new(Probe::Tcp { port }));
    Ok(unit)
}

/// Two echo servers, never two on one machine.
fn echo_service(bins: &Artifacts) -> anyhow::Result<UnitSpec> {
    let mut unit = probe_unit(bins, "echo", ECHO_PORT)?;
    unit.placement.replicas = 2;
    unit.placement.conflicts = vec!["echo@*".to_owned()];
    Ok(unit)
}

/// One instance on every machine (a log shipper's shape).
fn global_unit(bins: &Artifacts) -> anyhow::Result<UnitSpec> {
    let mut unit = probe_unit(bins, "node-agent", 7100)?;
    unit.placement.global = true;
    Ok(unit)
}

/// A unit that must not share a machine with the echo service.
fn batch_unit(bins: &Artifacts) -> anyhow::Result<UnitSpec> {
    let mut unit = probe_unit(bins, "batch", 7200)?;
    unit.placement.conflicts = vec!["echo".to_owned()];
    Ok(unit)
}

fn show_placement(run: &Run, snapshot: &Snapshot) {
    for (machine, record) in &snapshot.machines {
        let instances: Vec<String> = snapshot
            .placed
            .iter()
            .filter(|(_, (placed_on, _))| placed_on == machine)
            .map(|(instance, (_, token))| format!("{instance} (token {token})"))
            .collect();
        run.say(format!(
            "{machine} ({}): {}",
            record.arch,
            instances.join(", ")
        ));
    }
}

/// Asks every echo instance, from the first of `hosts`, which machine answers.
fn answer(run: &Run, hosts: &[Host], snapshot: &Snapshot, when: &str) -> anyhow::Result<()> {
    let client = hosts.first().context("a host to ask from")?;
    for (instance, (machine, _)) in snapshot.placed.iter().filter(|(i, _)| i.unit == "echo") {
        let target = hosts
            .iter()
            .find(|host| host.name() == machine)
            .with_context(|| format!("{machine} is a lab host"))?;
        let address = format!("{}:{ECHO_PORT}", target.data_ip());
        let reply = run.task(
            &format!("ask {instance} at {address} ({when}) [{client}]"),
            || client.exec(&[PROBE_PATH, "echo-client", &address, "hello"]),
        )?;
        run.say(format!("{instance}: {}", reply.stdout_text()));
    }
    Ok(())
}
