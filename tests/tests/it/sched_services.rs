//! Service registration by the scheduler's agents on namespace hosts (`SchedBed`), with
//! `sinew-proxy` in front: a healthy instance is registered at its machine's address, a
//! killed one is deregistered at once and registered again when healthy, a lost machine's
//! registration ends with its lease while the proxy loses no request, and a failing health
//! check deregisters at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sinew::load::{KeepAliveClient, Load};
use sinew_proto::discovery::{self, Registration};
use sinew_proto::kv::{prefix_end, RangeRequest};
use sinew_sched::unit::{HealthCheck, Probe, Register};
use sinew_sched::InstanceId;
use sinew_support::ports::free_loopback_port;
use sinew_tests::sched_bed::{spread, SchedBed};
use sinew_tests::underlay::block_on;

const PATIENCE: Duration = Duration::from_secs(20);
const PORT: u16 = 7400;

/// The registrations of `web`, by instance.
fn registrations(bed: &SchedBed) -> Result<BTreeMap<String, Registration>> {
    let prefix = discovery::service_prefix("web").into_bytes();
    let client = bed.client()?;
    let answer = block_on(client.kv().range(&RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        ..RangeRequest::default()
    }))??;
    answer
        .kvs
        .iter()
        .map(|kv| {
            let registration: Registration = serde_json::from_slice(&kv.value)?;
            Ok((registration.instance.clone(), registration))
        })
        .collect()
}

/// Polls the registrations until `check` holds.
fn wait_registrations(
    bed: &SchedBed,
    what: &str,
    check: impl Fn(&BTreeMap<String, Registration>) -> bool,
) -> Result<(BTreeMap<String, Registration>, Duration)> {
    let started = Instant::now();
    loop {
        let found = registrations(bed)?;
        if check(&found) {
            return Ok((found, started.elapsed()));
        }
        ensure!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}; registered: {found:#?}\n{}",
            bed.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sinew-proxy` in the root namespace for `web`, on a loopback port.
fn proxy(bed: &SchedBed) -> Result<(Child, SocketAddr)> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()?));
    let child = Command::new(sinew_tests::host_bins(false)?.join("sinew-proxy"))
        .args(["--endpoints", bed.endpoint()])
        .args(["--listen", &format!("{listen}=web/http")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sinew-proxy")?;
    Ok((child, listen))
}

#[test]
fn registrations_follow_health_and_life_and_a_proxy_in_front_loses_no_request() -> Result<()> {
    let mut bed = SchedBed::started(2)?;
    let ready = bed.dir().join("ready");
    std::fs::write(&ready, "")?;
    let mut web = bed.echo_unit("web", PORT)?;
    web.args = vec!["http-server".into(), PORT.to_string()];
    web.env.insert("PROBE_VERSION".into(), "1".into());
    web.placement = spread("web", 2);
    // Healthy while the file exists and the server takes connections.
    let check = format!(
        "test -e {} && : < /dev/tcp/127.0.0.1/{PORT}",
        ready.display()
    );
    web.health = Some(HealthCheck {
        interval_ms: 100,
        ..HealthCheck::new(Probe::Command {
            argv: vec!["/bin/bash".into(), "-c".into(), check],
        })
    });
    web.register = Some(Register {
        service: "web".into(),
        port: PORT,
        version: "1".into(),
        metadata: BTreeMap::from([("tier".into(), "front".into())]),
    });
    bed.launch(&web)?;
    let (found, _) = wait_registrations(&bed, "both instances registered", |r| r.len() == 2)?;
    let snapshot = bed.snapshot()?;
    for (instance, registration) in &found {
        let id: InstanceId = instance.parse().map_err(anyhow::Error::msg)?;
        let machine = &snapshot.placed[&id].0;
        let index: usize = machine.trim_start_matches('h').parse()?;
        assert_eq!(registration.machine, *machine);
        assert_eq!(registration.address, bed.address(index).to_string());
        assert_eq!(
            (registration.port, registration.version.as_str()),
            (PORT, "1")
        );
        assert_eq!(registration.metadata["tier"], "front");
    }

    // schedctl shows them, and switches their traffic off and on by version.
    let schedctl = |args: &[&str]| -> Result<String> {
        let out = bed.schedctl(args).output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let traffic = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
            .collect()
    };
    assert_eq!(traffic(&schedctl(&["list-services"])?), ["yes", "yes"]);
    assert_eq!(schedctl(&["route", "web", "2"])?, "web: traffic to 2\n");
    assert_eq!(traffic(&schedctl(&["list-services"])?), ["no", "no"]);
    schedctl(&["route", "web"])?;
    assert_eq!(traffic(&schedctl(&["list-services"])?), ["yes", "yes"]);

    // A killed instance is deregistered at once and registered again once healthy.
    let web0 = InstanceId::replica("web", 0);
    let pid = snapshot.states[&web0].pid.context("web@0's pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let (_, gone) = wait_registrations(&bed, "web@0 deregistered", |r| !r.contains_key("web@0"))?;
    ensure!(
        gone < Duration::from_secs(1),
        "deregistered {gone:?} after the kill"
    );
    wait_registrations(&bed, "web@0 registered again", |r| r.contains_key("web@0"))?;

    // A lost machine's registration ends with its lease; the proxy loses no request.
    let (mut proxy, listen) = proxy(&bed)?;
    let started = Instant::now();
    while !KeepAliveClient::new(listen)
        .get("/")
        .is_ok_and(|answer| answer.status == 200)
    {
        ensure!(started.elapsed() < PATIENCE, "the proxy never answered 200");
        std::thread::sleep(Duration::from_millis(50));
    }
    let load = Load::start(listen, "/", 4);
    std::thread::sleep(Duration::from_millis(500));
    let web1_machine = snapshot.placed[&InstanceId::replica("web", 1)].0.clone();
    let lost: usize = web1_machine.trim_start_matches('h').parse()?;
    bed.kill(lost)?;
    let (_, ended) = wait_registrations(&bed, "the lost machine's registration ended", |r| {
        r.values()
            .all(|registration| registration.machine != web1_machine)
    })?;
    ensure!(
        ended < Duration::from_secs(4),
        "ended {ended:?} after the machine (TTL 2 s)"
    );
    std::thread::sleep(Duration::from_millis(500));
    let tally = load.finish();
    let _ = proxy.kill();
    let _ = proxy.wait();
    ensure!(tally.failures() == 0, "failed requests: {:?}", tally.failed);
    ensure!(tally.ok > 100, "too little load to tell: {tally:?}");

    // A failing check deregisters at once.
    std::fs::remove_file(&ready)?;
    let (_, gone) = wait_registrations(&bed, "every instance deregistered", |r| r.is_empty())?;
    ensure!(
        gone < Duration::from_secs(2),
        "deregistered {gone:?} after the check failed"
    );
    Ok(())
}
