//! `blue-green`: blue-green and rolling deploys behind sinew-proxy, on two guests of both
//! architectures, under a steady load from this playbook for the whole run.
//!
//! Both guests boot a signed machine image (one per architecture) that carries every
//! binary the playbook runs, so nothing is installed on them afterwards. kvd runs on `edge`
//! (x86_64) and schedd on both guests. sinew-proxy runs as a unit on
//! `edge`, whose port 8080 the lab publishes to this machine; the load goes through it. The
//! service `web` (`sinew-probe http-server`, which answers with its version and instance)
//! runs two instances per version, one on each guest, so one of each pair is the aarch64
//! build. The playbook deploys version 1, then version 2 blue-green (green healthy and
//! registered, one routing write, blue drained and stopped), then a broken version 3 in a
//! rolling deploy, which never becomes healthy and is rolled back on its own. For each
//! phase it prints the requests, the failures (which must be none) and the versions that
//! answered; any failed request fails the run.
//!
//! `cargo run --bin blue-green [-- --dry-run | -v]`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use sinew::deploy::{self, DeployError, Timing};
use sinew::kv::deploy::{KVCTL_PATH, KVD_PATH};
use sinew::load::{Load, Tally};
use sinew::sched::{
    binary_exec, proxy_unit, HealthCheck, Listen, Mode, Placement, Probe, Register, Restart,
    SchedulerSpec, UnitSpec, PROXY_PATH, SCHEDCTL_PATH, SCHEDD_PATH,
};
use sinew::{Arch, Artifacts, Build, LabSpec, MachineImageSpec, MachineSpec, Run};

/// Where the probe is on every guest.
const PROBE_PATH: &str = "/usr/local/bin/sinew-probe";
/// The binaries in the guests' machine image, where the SDK runs them from.
const NODE_BINS: [(&str, &str); 6] = [
    ("kvd", KVD_PATH),
    ("kvctl", KVCTL_PATH),
    ("schedd", SCHEDD_PATH),
    ("schedctl", SCHEDCTL_PATH),
    ("sinew-probe", PROBE_PATH),
    ("sinew-proxy", PROXY_PATH),
];
/// The proxy's port on `edge`, published to this machine.
const PROXY_PORT: u16 = 8080;
/// The load's kept-alive connections.
const CLIENTS: usize = 4;
/// Emulated guests place, start and health-check units slowly.
const TIMING: Timing = Timing {
    patience: Duration::from_secs(180),
    drain: Duration::from_secs(2),
};

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("blue-green")?;
    let key = run.signing_key("sinew playbooks <playbooks@sinew.example>")?;
    let mut node = MachineImageSpec::new("blue-green-node", "1");
    for (bin, path) in NODE_BINS {
        node = node.bin(bin, path);
    }
    let images = run.build_machine_image(&node, &key)?;
    // The same build as the image's (cached): the units' digests are the image's files'.
    let bins = run.build(&Build::bins(&NODE_BINS.map(|(bin, _)| bin)))?;
    let mut lab = LabSpec::new("blue-green");
    for (name, arch) in [("edge", Arch::X86_64), ("arm", Arch::Aarch64)] {
        let mut machine = MachineSpec::new(name, arch);
        if let Some(image) = images.iter().find(|image| image.arch == arch) {
            machine = machine.image(image);
        }
        if name == "edge" {
            machine = machine.publish(PROXY_PORT);
        }
        lab = lab.machine(machine);
    }
    let lab = run.boot(&lab)?;
    let hosts = lab.hosts();
    let edge = &hosts[0];
    let kv = run.deploy_kv(std::slice::from_ref(edge), &bins)?;
    let spec = SchedulerSpec {
        metadata: BTreeMap::from([(
            edge.name().to_owned(),
            BTreeMap::from([("role".to_owned(), "edge".to_owned())]),
        )]),
        ttl_s: None,
    };
    let scheduler = run.deploy_scheduler(hosts, &bins, &kv, &spec)?;

    let mut proxy = proxy_unit(
        "proxy",
        &bins,
        &kv.endpoints(),
        &[Listen {
            address: SocketAddr::from(([0, 0, 0, 0], PROXY_PORT)),
            service: "web".into(),
            mode: Mode::Http,
        }],
        TIMING.drain,
    )?;
    proxy.placement.metadata = BTreeMap::from([("role".to_owned(), vec!["edge".to_owned()])]);
    run.task("start the proxy on edge", || scheduler.start(&proxy))?;
    if run.is_dry_run() {
        run.shutdown(lab)?;
        run.finish()?;
        return Ok(());
    }
    run.task("version 1 of web, healthy and routed", || {
        deploy::blue_green(&scheduler, &web(&bins, 1, false)?, TIMING).map_err(anyhow::Error::from)
    })?;
    run.task("the proxy healthy", || {
        scheduler.wait_healthy(&proxy, TIMING.patience)
    })?;

    let address = edge
        .published(PROXY_PORT)
        .context("the proxy's port is published")?;
    run.say(format!(
        "load: {CLIENTS} kept-alive clients sending GET / to the proxy on edge ({address}) back to back, for the whole run"
    ));
    let load = Load::start(address, "/", CLIENTS);
    let mut phases = Phases::new(&run);
    std::thread::sleep(Duration::from_secs(5));
    phases.end("version 1 serving", &load)?;

    let switch = run.task("blue-green deploy of version 2", || {
        deploy::blue_green(&scheduler, &web(&bins, 2, false)?, TIMING).map_err(anyhow::Error::from)
    })?;
    run.say(format!(
        "{} drained and stopped, kept for a rollback",
        switch.blue.join(", ")
    ));
    phases.end("blue-green to version 2", &load)?;

    let mut refused = None;
    run.task(
        "rolling deploy of version 3, which never becomes healthy",
        || match deploy::rolling(&scheduler, &web(&bins, 3, true)?, 1, TIMING) {
            Err(DeployError::NeverHealthy(unhealthy)) => {
                refused = Some(unhealthy);
                Ok(())
            }
            Err(other) => Err(anyhow::Error::from(other)),
            Ok(roll) => bail!("the broken version was deployed: {roll:?}"),
        },
    )?;
    if let Some(unhealthy) = refused {
        run.say(format!("rolled back on its own: {unhealthy}"));
    }
    phases.end("rolling deploy of version 3, rolled back", &load)?;

    let total = load.finish();
    phases.total(&total);
    run.shutdown(lab)?;
    run.finish()?;
    if total.failures() > 0 {
        bail!(
            "{} of {} requests failed: {:?}",
            total.failures(),
            total.requests(),
            total.failed
        );
    }
    Ok(())
}

/// Version `version` of the service `web`: unit `web-<version>`, two instances of the
/// probe's HTTP server on a port of the version's own, one on each guest, checked on
/// `/healthz` and registered when healthy. A broken version's `/healthz` answers 503.
fn web(bins: &Artifacts, version: u16, broken: bool) -> anyhow::Result<UnitSpec> {
    let name = format!("web-{version}");
    let port = 7500 + version;
    let mut unit = UnitSpec::new(&name, binary_exec(bins, "sinew-probe", PROBE_PATH)?);
    unit.args = vec!["http-server".into(), port.to_string()];
    unit.env.insert("PROBE_VERSION".into(), version.to_string());
    if broken {
        unit.env.insert("PROBE_UNHEALTHY".into(), "1".into());
        unit.restart = Restart {
            policy: sinew::RestartPolicy::Never,
            ..unit.restart
        };
    }
    unit.placement = Placement {
        conflicts: vec![format!("{name}@*")],
        replicas: 2,
        ..Placement::default()
    };
    unit.health = Some(HealthCheck {
        start_period_ms: 20_000,
        ..HealthCheck::new(Probe::Http {
            port,
            path: "/healthz".into(),
        })
    });
    unit.register = Some(Register {
        service: "web".into(),
        port,
        version: version.to_string(),
        metadata: BTreeMap::new(),
    });
    Ok(unit)
}

/// The load's counts, phase by phase.
struct Phases<'a> {
    run: &'a Run,
    before: Tally,
}

impl<'a> Phases<'a> {
    fn new(run: &'a Run) -> Self {
        Self {
            run,
            before: Tally::default(),
        }
    }

    /// Says what the load saw since the last phase ended.
    fn end(&mut self, phase: &str, load: &Load) -> anyhow::Result<()> {
        let now = load.so_far();
        let answered: Vec<String> = now
            .bodies
            .iter()
            .filter(|(body, count)| self.before.bodies.get(*body) != Some(count))
            .map(|(body, _)| version_of(body))
            .collect::<anyhow::Result<std::collections::BTreeSet<_>>>()?
            .into_iter()
            .collect();
        self.run.say(format!(
            "{phase}: {} requests, {} failed; versions answering: {}",
            now.requests() - self.before.requests(),
            now.failures() - self.before.failures(),
            answered.join(", ")
        ));
        self.before = now;
        Ok(())
    }

    fn total(&self, total: &Tally) {
        self.run.say(format!(
            "whole run: {} requests, {} failed, slowest {:.0} ms",
            total.requests(),
            total.failures(),
            total.slowest.as_secs_f64() * 1000.0
        ));
    }
}

/// The version in one of the probe's answers.
fn version_of(body: &str) -> anyhow::Result<String> {
    let answer: serde_json::Value =
        serde_json::from_str(body).with_context(|| format!("the probe's answer {body:?}"))?;
    Ok(answer["version"]
        .as_str()
        .context("the probe's answer has a version")?
        .to_owned())
}
