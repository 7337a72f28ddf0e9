//! The deploy strategies (`sinew::deploy`) on namespace hosts running schedd against kvd
//! (`SchedBed`), with `sinew-proxy` in front under a steady load for the whole test:
//! blue-green, a broken version that leaves the old one serving, a rollback and a rolling
//! deploy, with no failed request.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sinew::deploy::{self, DeployError, Timing};
use sinew::load::{KeepAliveClient, Load};
use sinew_sched::unit::{HealthCheck, Probe, Register, RestartPolicy, UnitSpec};
use sinew_support::ports::free_loopback_port;
use sinew_tests::sched_bed::{spread, BedOperator, SchedBed};

const TIMING: Timing = Timing {
    patience: Duration::from_secs(30),
    drain: Duration::from_millis(1500),
};

/// Version `version` of the service `web`: unit `web-<version>`, two instances of
/// `sinew-probe http-server` on a port of the version's own, HTTP-checked on `/healthz`.
fn version(bed: &SchedBed, version: u16, broken: bool) -> Result<UnitSpec> {
    let name = format!("web-{version}");
    let port = 7500 + version;
    let mut unit = bed.echo_unit(&name, port)?;
    unit.args = vec!["http-server".into(), port.to_string()];
    unit.env.insert("PROBE_VERSION".into(), version.to_string());
    if broken {
        unit.env.insert("PROBE_UNHEALTHY".into(), "1".into());
        unit.restart.policy = RestartPolicy::Never;
    }
    unit.placement = spread(&name, 2);
    unit.health = Some(HealthCheck {
        interval_ms: 100,
        start_period_ms: 2000,
        ..HealthCheck::new(Probe::Http {
            port,
            path: "/healthz".into(),
        })
    });
    unit.register = Some(Register {
        service: "web".into(),
        port,
        version: version.to_string(),
        metadata: Default::default(),
    });
    Ok(unit)
}

/// The versions that answer `requests` requests through the proxy at `listen`.
fn answering(listen: SocketAddr, requests: usize) -> Result<BTreeSet<String>> {
    let mut client = KeepAliveClient::new(listen);
    (0..requests)
        .map(|_| {
            let answer = client.get("/")?;
            ensure!(answer.status == 200, "{answer:?}");
            let body: serde_json::Value = serde_json::from_str(&answer.body)?;
            Ok(body["version"].as_str().context("a version")?.to_owned())
        })
        .collect()
}

#[test]
fn blue_green_rollback_and_rolling_deploys_lose_no_request_and_a_broken_version_changes_nothing(
) -> Result<()> {
    // Leases of 5 s, not 2: no machine is lost here, and with 2 s a store slowed by the
    // suite's guests could let the agents fence themselves and kill every instance.
    let bed = SchedBed::started_with(3, &["--ttl", "5"])?;
    let operator = BedOperator(&bed);
    let first = deploy::blue_green(&operator, &version(&bed, 1, false)?, TIMING)?;
    assert!(first.blue.is_empty(), "{first:?}");

    let listen = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()?));
    let mut proxy = Command::new(sinew_tests::host_bins(false)?.join("sinew-proxy"))
        .args(["--endpoints", bed.endpoint()])
        .args(["--listen", &format!("{listen}=web/http")])
        .args(["--drain-grace", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sinew-proxy")?;
    let started = Instant::now();
    while answering(listen, 1).is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the proxy never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let load = Load::start(listen, "/", 4);

    let switch = deploy::blue_green(&operator, &version(&bed, 2, false)?, TIMING)?;
    assert_eq!(switch.blue, ["web-1"]);
    assert_eq!(answering(listen, 10)?, BTreeSet::from(["2".to_owned()]));

    let broken = deploy::blue_green(&operator, &version(&bed, 3, true)?, TIMING);
    let Err(DeployError::NeverHealthy(unhealthy)) = &broken else {
        anyhow::bail!("the broken version was deployed: {broken:?}");
    };
    assert_eq!(unhealthy.kept, "web-2");
    ensure!(unhealthy.why.contains("answered 503"), "{}", unhealthy.why);
    assert_eq!(answering(listen, 10)?, BTreeSet::from(["2".to_owned()]));

    let back = deploy::roll_back(&operator, &switch, TIMING)?;
    assert_eq!(back.blue, ["web-2"]);
    assert_eq!(answering(listen, 10)?, BTreeSet::from(["1".to_owned()]));

    let roll = deploy::rolling(&operator, &version(&bed, 4, false)?, 1, TIMING)?;
    assert_eq!((roll.old.as_str(), roll.steps), ("web-1", 2));
    assert_eq!(answering(listen, 10)?, BTreeSet::from(["4".to_owned()]));

    let tally = load.finish();
    let _ = proxy.kill();
    let _ = proxy.wait();
    ensure!(tally.failures() == 0, "failed requests: {:?}", tally.failed);
    let versions = tally.values_of("version")?;
    assert_eq!(
        versions,
        ["1", "2", "4"].map(str::to_owned).into_iter().collect(),
        "version 3 never got traffic"
    );
    let snapshot = bed.snapshot()?;
    let launched: Vec<&String> = snapshot
        .units
        .iter()
        .filter(|(_, record)| record.target == sinew_sched::records::Target::Launched)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(launched, ["web-4"]);
    Ok(())
}
