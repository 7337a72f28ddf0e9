//! The scheduler on guests of both architectures, deployed by the SDK as the `fleet`
//! playbook deploys it: a unit with a build per architecture, placed, and placed again on
//! the other architecture's guest when its own guest is pulled from under it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sinew::sched::{binary_exec, HealthCheck, InstanceId, Probe, SchedulerSpec, UnitSpec};
use sinew::{Arch, Artifacts, Build, LabSpec, MachineSpec};
use sinew_tests::{prepared, run};

const PROBE_PATH: &str = "/usr/local/bin/sinew-probe";
/// Emulated guests place, start and health-check units slowly.
const PATIENCE: Duration = Duration::from_secs(120);

/// The probe's echo server on `port`, from the build for each guest's architecture.
fn echo_unit(bins: &Artifacts, name: &str, port: u16) -> Result<UnitSpec> {
    let mut unit = UnitSpec::new(name, binary_exec(bins, "sinew-probe", PROBE_PATH)?);
    unit.args = vec!["echo-server".to_owned(), port.to_string()];
    unit.health = Some(HealthCheck {
        start_period_ms: 60_000,
        ..HealthCheck::new(Probe::Tcp { port })
    });
    Ok(unit)
}

#[test]
fn a_unit_moves_to_the_other_architecture_when_its_guest_dies() -> Result<()> {
    prepared();
    let run = run("it-sched-guests");
    let bins = run.build(&Build::bins(&[
        "kvd",
        "kvctl",
        "schedd",
        "schedctl",
        "sinew-probe",
    ]))?;
    let lab = run.boot(
        &LabSpec::new("it-sched")
            .machine(MachineSpec::new("amd", Arch::X86_64))
            .machine(MachineSpec::new("arm", Arch::Aarch64)),
    )?;
    let hosts = lab.hosts();
    let arm = hosts
        .iter()
        .find(|host| host.arch() == Arch::Aarch64)
        .context("the arm guest")?;
    // The store lives on the guest that stays.
    let kv = run.deploy_kv(std::slice::from_ref(arm), &bins)?;
    run.each(hosts, "install sinew-probe", |host| {
        Ok::<_, anyhow::Error>(host.install(bins.get("sinew-probe", host.arch())?, PROBE_PATH)?)
    })?;
    let spec = SchedulerSpec {
        metadata: BTreeMap::from([(
            "arm".to_owned(),
            BTreeMap::from([("role".to_owned(), "store".to_owned())]),
        )]),
        ttl_s: None,
    };
    let scheduler = run.deploy_scheduler(hosts, &bins, &kv, &spec)?;

    // The anchor is held to arm by its metadata; the echo service then goes to the machine
    // with fewer units, amd.
    let mut anchor = echo_unit(&bins, "anchor", 7100)?;
    anchor.placement.metadata = BTreeMap::from([("role".to_owned(), vec!["store".to_owned()])]);
    let echo = echo_unit(&bins, "echo", 7000)?;
    scheduler.start(&anchor)?;
    scheduler.start(&echo)?;
    let placed = scheduler.wait_until("both units healthy", PATIENCE, |snapshot| {
        snapshot.all_healthy(&anchor) && snapshot.all_healthy(&echo)
    })?;
    let echo_id = InstanceId::replica("echo", 0);
    let anchor_id = InstanceId::replica("anchor", 0);
    let on = |id: &InstanceId| placed.placed.get(id).map(|(machine, _)| machine.as_str());
    assert_eq!(on(&anchor_id), Some("arm"), "{placed:?}");
    assert_eq!(on(&echo_id), Some("amd"), "{placed:?}");
    let anchor_before = placed.states[&anchor_id].clone();

    run.crash(&lab, "amd")?;
    let moved = scheduler.wait_until("echo healthy on arm", PATIENCE, |snapshot| {
        snapshot.all_healthy(&echo)
            && snapshot
                .placed
                .get(&echo_id)
                .map(|(machine, _)| machine.as_str())
                == Some("arm")
            && !snapshot.machines.contains_key("amd")
    })?;
    // The aarch64 build answers now, and the anchor ran on undisturbed.
    let answer = arm
        .exec(&[
            PROBE_PATH,
            "echo-client",
            &format!("{}:7000", arm.data_ip()),
            "hello",
        ])?
        .stdout_text();
    ensure!(
        answer.contains(Arch::Aarch64.uname_machine()) && answer.contains("hello"),
        "the moved echo server answered {answer:?}"
    );
    let anchor_after = &moved.states[&anchor_id];
    ensure!(
        anchor_after.pid == anchor_before.pid
            && anchor_after.fencing_token == anchor_before.fencing_token
            && anchor_after.restarts == 0,
        "the anchor was disturbed: {anchor_before:?} then {anchor_after:?}"
    );
    run.shutdown(lab)?;
    Ok(())
}
