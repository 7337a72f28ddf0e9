//! `overlay`: flannel's job across guests of both architectures. Three guests run kvd, then
//! overlayd, which leases each a subnet in the KV store and builds the VXLAN mesh over the
//! data-plane segment. A signed container on the aarch64 guest serves a TCP echo on its
//! overlay address; containers on both x86_64 guests reach it across the overlay. Each
//! guest then says which data path overlayd took (its eBPF fast path where the kernel can).
//!
//! `cargo run --bin overlay [-- --dry-run | -v]`

use anyhow::Context;
use sinew::image::{host_archive_path, ImageSpec, SINEW_RUN_PATH};
use sinew::overlay::{data_path, NetworkConfig, GUEST_MODULES};
use sinew::{Arch, Build, Host, LabSpec, MachineSpec, Run, Status};

const IMAGE: &str = "sinew.example/demo/probe:1";
const ECHO_PORT: &str = "7777";

fn machine(name: &str, arch: Arch) -> MachineSpec {
    let mut spec = MachineSpec::new(name, arch);
    spec.modules = GUEST_MODULES.iter().map(|m| (*m).to_owned()).collect();
    spec
}

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("overlay")?;
    let bins = run.build(&Build::bins(&[
        "kvd",
        "kvctl",
        "overlayd",
        "sinew-run",
        "sinew-probe",
    ]))?;
    let key = run.signing_key("sinew playbooks <playbooks@sinew.example>")?;
    let image = run.build_image(&ImageSpec::new(IMAGE, "sinew-probe"), &bins, &key)?;
    let lab = run.boot(
        &LabSpec::new("overlay")
            .machine(machine("n1", Arch::X86_64))
            .machine(machine("n2", Arch::Aarch64))
            .machine(machine("n3", Arch::X86_64)),
    )?;
    let kv = run.deploy_kv(lab.hosts(), &bins)?;
    let overlay =
        run.deploy_overlay(lab.hosts(), &bins, &kv, &NetworkConfig::new("10.5.0.0/16"))?;
    run.install_image(lab.hosts(), &image, &key, &bins)?;
    let archive = host_archive_path(&image);
    run.each(lab.hosts(), "fetch and verify the image", |host| {
        host.exec(&[SINEW_RUN_PATH, "fetch", &archive])
    })?;

    if run.is_dry_run() {
        run.shutdown(lab)?;
        run.finish()?;
        return Ok(());
    }
    let server = &lab.hosts()[1];
    let echo = run.task(&format!("start the echo container [{server}]"), || {
        start_echo(server)
    })?;
    for (host, subnet) in &overlay.subnets {
        run.say(format!("{host}: subnet {subnet}"));
    }
    let clients: Vec<Host> = lab
        .hosts()
        .iter()
        .filter(|host| host.name() != server.name())
        .cloned()
        .collect();
    let target = format!("{}:{ECHO_PORT}", echo.0);
    let replies = run.each(
        &clients,
        &format!("reach {target} over the overlay"),
        |host| {
            let message = format!("hello from a container on {}", host.name());
            host.exec(&[
                SINEW_RUN_PATH,
                "run",
                "--net",
                "overlay",
                IMAGE,
                "--",
                "echo-client",
                &target,
                &message,
            ])
        },
    )?;
    for (host, reply) in clients.iter().zip(&replies) {
        run.say(format!("{host} -> {target}: {}", reply.stdout_text()));
    }
    for host in lab.hosts() {
        run.say(format!("{host}: data path: {}", data_path(host)?));
    }
    run.shutdown(lab)?;
    run.finish()?;
    Ok(())
}

/// The echo container's overlay address.
#[derive(Debug)]
struct Address(String);

impl sinew::Outcome for Address {
    fn status(&self) -> Status {
        Status::Changed
    }

    fn detail(&self) -> Option<String> {
        Some(format!("listening on {}:{ECHO_PORT}", self.0))
    }
}

/// Starts the echo server in a detached container on the overlay; returns its address.
fn start_echo(host: &Host) -> anyhow::Result<Address> {
    let started = host.exec(&[
        SINEW_RUN_PATH,
        "run",
        "--detach",
        "--net",
        "overlay",
        "--hostname",
        "echo",
        IMAGE,
        "--",
        "echo-server",
        ECHO_PORT,
    ])?;
    let id = started.stdout_text();
    let status = host.exec(&[SINEW_RUN_PATH, "status", &id, "--format", "json"])?;
    let state: serde_json::Value = serde_json::from_str(&status.stdout_text())
        .with_context(|| format!("sinew-run status {id}"))?;
    let address = state["address"]
        .as_str()
        .with_context(|| format!("container {id} has no overlay address: {state}"))?;
    Ok(Address(address.to_owned()))
}
