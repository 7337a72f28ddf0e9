//! Proxy benchmark: `sinew-proxy` against HAProxy (Debian's `haproxy`) on the same
//! machine, in the same run, in front of the same backends (`sinew-probe http-server`, two
//! blue and two green, on loopback).
//!
//! 1. Throughput, p99 latency and the proxy's CPU time per request for small HTTP requests
//!    at 64 kept-alive connections, each proxy measured in several short rounds, in turns
//!    (which one goes first alternates), so that a drift in the machine's speed during the
//!    run weighs on both alike, after a warm-up round each that is not counted. Both
//!    proxies do the same work per request: HAProxy adds `x-forwarded-for`
//!    (`option forwardfor`), as sinew-proxy always does, and the backends date their
//!    answers, so neither proxy adds a Date to them (sinew-proxy would). The clients
//!    share one thread's event loop, as wrk's do: with a thread per client
//!    (`sinew::load::Load`) the clients spent six times the CPU per request that wrk does,
//!    nearly as much of the machine as the proxy they loaded, and the proxies' difference
//!    drowned in it.
//! 2. Failed requests during consecutive switches between the blue and the green pair under
//!    that load: sinew-proxy switches in process (one write of the routing record in the
//!    store); HAProxy gets its configuration rewritten and is reloaded (`-sf`, a new
//!    process taking over from the old one), as SmartStack's synapse does it.
//!
//! `cargo bench -p sinew-tests --bench proxy`; `SINEW_BENCH_ROUNDS=N` throughput rounds
//! per proxy (default 10: a round's rate moves by up to a tenth with the machine) of
//! `SINEW_BENCH_SECONDS=N` each (default 5),
//! `SINEW_BENCH_SWITCHES=N` (default 100). The line before the last
//! gives both proxies' failed requests across the switches; the last is
//! `RATIO proxy_throughput=<sinew-proxy/haproxy requests per second>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use sinew::load::{KeepAliveClient, Load, Tally};
use sinew::setup::Tool;
use sinew_support::ports::free_loopback_port;
use sinew_tests::proxy_bed::{Backend, ProxyBed};

const CONNECTIONS: usize = 64;
/// How long a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Load on each proxy before the rounds that count.
const WARM_UP: Duration = Duration::from_secs(2);
/// Between two switches.
const SWITCH_EVERY: Duration = Duration::from_millis(100);

fn main() -> Result<()> {
    let rounds: usize = sinew_tests::bench_setting("SINEW_BENCH_ROUNDS", 10);
    let seconds: u64 = sinew_tests::bench_setting("SINEW_BENCH_SECONDS", 5);
    let switches: usize = sinew_tests::bench_setting("SINEW_BENCH_SWITCHES", 100);
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    sinew_tests::tools_installed(
        &READY,
        &[Tool {
            program: "haproxy",
            package: "haproxy",
        }],
    )?;
    let bed = ProxyBed::new(true, &[])?;
    let blue = [
        bed.backend("blue@0", "blue")?,
        bed.backend("blue@1", "blue")?,
    ];
    let green = [
        bed.backend("green@0", "green")?,
        bed.backend("green@1", "green")?,
    ];
    bed.route(&["blue"])?;
    for backend in blue.iter().chain(&green) {
        bed.register(&backend.registration)?;
    }
    bed.wait_applied()?;
    let mut haproxy = Haproxy::start(bed.dir(), &blue)?;

    let round = Duration::from_secs(seconds);
    // Not counted: each proxy opens its backend connections, and the machine settles.
    for address in [bed.http, haproxy.address] {
        clean_load(address, WARM_UP)?;
    }
    let mut sinew_rounds = Vec::new();
    let mut haproxy_rounds = Vec::new();
    for index in 0..rounds {
        let sinew_first = index % 2 == 0;
        if sinew_first {
            sinew_rounds.push(measure(bed.http, &[bed.proxy_pid()], round)?);
        }
        haproxy_rounds.push(measure(haproxy.address, &haproxy.pids(), round)?);
        if !sinew_first {
            sinew_rounds.push(measure(bed.http, &[bed.proxy_pid()], round)?);
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = |rounds: &[Round]| rounds[index].tally.ok as f64 / round.as_secs_f64();
        eprintln!(
            "round {}: sinew-proxy {:.0} requests/s, haproxy {:.0}",
            index + 1,
            rate(&sinew_rounds),
            rate(&haproxy_rounds)
        );
    }
    let (sinew_rate, sinew_p99, sinew_cpu) = summary(&sinew_rounds, round);
    let (haproxy_rate, haproxy_p99, haproxy_cpu) = summary(&haproxy_rounds, round);
    println!(
        "sinew-proxy: {sinew_rate:.0} requests/s, p99 {sinew_p99:.2} ms, {sinew_cpu:.1} µs of CPU per request ({CONNECTIONS} connections, {rounds} rounds of {seconds} s)"
    );
    println!(
        "haproxy:     {haproxy_rate:.0} requests/s, p99 {haproxy_p99:.2} ms, {haproxy_cpu:.1} µs of CPU per request ({CONNECTIONS} connections, {rounds} rounds of {seconds} s)"
    );

    let sinew_switching = under_switches(bed.http, switches, |to_green| {
        bed.route(&[if to_green { "green" } else { "blue" }])
    })?;
    let haproxy_switching = under_switches(haproxy.address, switches, |to_green| {
        haproxy.reload(if to_green { &green } else { &blue })
    })?;
    for (name, tally) in [
        ("sinew-proxy", &sinew_switching),
        ("haproxy", &haproxy_switching),
    ] {
        println!(
            "{name} across {switches} switches: {} requests, {} failed {:?}",
            tally.ok + tally.failures(),
            tally.failures(),
            tally.failed
        );
    }
    println!(
        "failed requests across {switches} switches: sinew-proxy {}, haproxy {}",
        sinew_switching.failures(),
        haproxy_switching.failures()
    );
    println!("RATIO proxy_throughput={:.3}", sinew_rate / haproxy_rate);
    Ok(())
}

/// One round of load on a proxy, and the CPU time the proxy spent on it.
struct Round {
    tally: Tally,
    cpu: Duration,
}

/// A load of [`CONNECTIONS`] clients on `address` for `duration`, served by the processes
/// `pids`.
fn measure(address: SocketAddr, pids: &[u32], duration: Duration) -> Result<Round> {
    let cpu = || -> Result<Duration> { pids.iter().map(|pid| sinew_tests::cpu_time(*pid)).sum() };
    let before = cpu()?;
    let tally = clean_load(address, duration)?;
    let cpu = cpu()? - before;
    Ok(Round { tally, cpu })
}

/// [`event_loop_load`] that no request may fail: outside the switches, a failure is the
/// proxy's fault or the machine's, and a rate with failures in it means nothing.
fn clean_load(address: SocketAddr, duration: Duration) -> Result<Tally> {
    let tally = event_loop_load(address, duration)?;
    if tally.failures() > 0 {
        bail!(
            "{address}: {} failed requests: {:?}",
            tally.failures(),
            tally.failed
        );
    }
    Ok(tally)
}

/// [`CONNECTIONS`] clients, each on a kept-alive connection of its own, sending `GET /` to
/// `address` back to back for `duration`, all on one thread.
fn event_loop_load(address: SocketAddr, duration: Duration) -> Result<Tally> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let until = tokio::time::Instant::now() + duration;
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(event_loop_client(address, until)))
            .collect();
        let mut tally = Tally::default();
        for client in clients {
            tally.add(&client.await?);
        }
        Ok(tally)
    })
}

/// One client of [`event_loop_load`]; a failed request costs it its connection.
async fn event_loop_client(address: SocketAddr, until: tokio::time::Instant) -> Tally {
    let mut tally = Tally::default();
    let host = HeaderValue::from_str(&address.to_string())
        .expect("a socket address is a valid header value");
    let mut connection = None;
    while tokio::time::Instant::now() < until {
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            REQUEST_TIMEOUT,
            event_loop_request(&mut connection, address, &host),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        match outcome {
            Ok(StatusCode::OK) => tally.ok += 1,
            Ok(status) => tally.fail(status.to_string()),
            Err(error) => {
                connection = None;
                tally.fail(format!("{error:#}"));
            }
        }
        tally.took(started.elapsed());
    }
    tally
}

/// `GET /` with the Host header `host` on `connection`, opened first if it is not; the
/// answer's status, once its body has been read.
async fn event_loop_request(
    connection: &mut Option<SendRequest<Empty<Bytes>>>,
    address: SocketAddr,
    host: &HeaderValue,
) -> Result<StatusCode> {
    let sender = match connection {
        Some(sender) => sender,
        None => {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .with_context(|| format!("connecting to {address}"))?;
            stream.set_nodelay(true)?;
            let (sender, serving) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(serving);
            connection.insert(sender)
        }
    };
    let request = Request::get("/")
        .header(header::HOST, host.clone())
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// Mean requests per second, p99 latency in milliseconds, and the proxy's CPU time per
/// request in microseconds, over the rounds.
fn summary(rounds: &[Round], round: Duration) -> (f64, f64, f64) {
    let requests: u64 = rounds.iter().map(|round| round.tally.ok).sum();
    let cpu: Duration = rounds.iter().map(|round| round.cpu).sum();
    #[allow(clippy::cast_precision_loss)]
    let (rate, cpu_per_request) = (
        requests as f64 / (round.as_secs_f64() * rounds.len() as f64),
        cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
    );
    let mut latencies: Vec<f64> = rounds
        .iter()
        .flat_map(|round| {
            round
                .tally
                .latencies_us
                .iter()
                .map(|us| f64::from(*us) / 1000.0)
        })
        .collect();
    (
        rate,
        sinew_tests::percentile(&mut latencies, 99.0),
        cpu_per_request,
    )
}

/// A load on `address` while `switch` is called `switches` times, to green and back in
/// turn, every [`SWITCH_EVERY`].
fn under_switches(
    address: SocketAddr,
    switches: usize,
    mut switch: impl FnMut(bool) -> Result<()>,
) -> Result<Tally> {
    let load = Load::start(address, "/", CONNECTIONS);
    std::thread::sleep(Duration::from_millis(500));
    for index in 0..switches {
        switch(index % 2 == 0)?;
        std::thread::sleep(SWITCH_EVERY);
    }
    switch(false)?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(load.finish())
}

/// HAProxy with a static configuration for two backends, reloaded as synapse reloads it.
struct Haproxy {
    address: SocketAddr,
    config: PathBuf,
    processes: Vec<Child>,
}

impl Haproxy {
    fn start(dir: &Path, backends: &[Backend]) -> Result<Self> {
        let mut haproxy = Self {
            address: SocketAddr::from(([127, 0, 0, 1], free_loopback_port()?)),
            config: dir.join("haproxy.cfg"),
            processes: Vec::new(),
        };
        haproxy.reload(backends)?;
        let started = Instant::now();
        while !KeepAliveClient::new(haproxy.address)
            .get("/")
            .is_ok_and(|answer| answer.status == 200)
        {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("haproxy does not answer on {}", haproxy.address);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(haproxy)
    }

    /// Writes the configuration for `backends` and starts a new process that takes over
    /// from the running one (`-sf`): it finishes its connections and exits.
    fn reload(&mut self, backends: &[Backend]) -> Result<()> {
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(index, backend)| format!("    server s{index} {}\n", backend.address()))
            .collect();
        std::fs::write(
            &self.config,
            format!(
                "global\n    maxconn 4096\n\ndefaults\n    mode http\n    option http-keep-alive\n    option forwardfor\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\nfrontend front\n    bind {}\n    default_backend back\n\nbackend back\n    balance roundrobin\n{servers}",
                self.address
            ),
        )?;
        let mut command = Command::new("haproxy");
        command
            .arg("-f")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(running) = self.processes.last() {
            command.arg("-sf").arg(running.id().to_string());
        }
        self.processes
            .push(command.spawn().context("starting haproxy")?);
        self.processes
            .retain_mut(|child| child.try_wait().is_ok_and(|ended| ended.is_none()));
        Ok(())
    }

    /// The processes serving now.
    fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Child::id).collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
