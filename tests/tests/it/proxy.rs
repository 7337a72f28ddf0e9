//! `sinew-proxy` against kvd and real HTTP backends on loopback (`ProxyBed`): it follows
//! registrations and routing, retries a dead backend, answers 503 with none, drains a
//! leaving backend's connections within the grace period, switches versions under load
//! without a failed request, and resyncs after its watch is compacted away.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sinew::load::{KeepAliveClient, Load};
use sinew_proto::kv::{AtRevision as _, RangeRequest};
use sinew_tests::proxy_bed::{ProxyBed, SERVICE};
use sinew_tests::underlay::block_on;

/// The instance that answered a probe's body.
fn instance(body: &str) -> Result<String> {
    let answer: serde_json::Value = serde_json::from_str(body).with_context(|| body.to_owned())?;
    Ok(answer["instance"]
        .as_str()
        .context("an instance")?
        .to_owned())
}

#[test]
fn requests_follow_registrations_and_routing_skip_a_dead_backend_and_get_503_with_none(
) -> Result<()> {
    let bed = ProxyBed::new(false, &[])?;
    let mut client = KeepAliveClient::new(bed.http);
    let answer = client.get("/")?;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body, format!("no healthy instance of {SERVICE}\n"));

    let blue: Vec<_> = ["blue@0", "blue@1"]
        .iter()
        .map(|name| bed.backend(name, "blue"))
        .collect::<Result<_>>()?;
    let mut dead = bed.backend("dead@0", "blue")?;
    dead.kill();
    for backend in blue.iter().chain([&dead]) {
        bed.register(&backend.registration)?;
    }
    bed.wait_applied()?;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let answer = client.get("/")?;
        assert_eq!(answer.status, 200, "{answer:?}");
        seen.push(instance(&answer.body)?);
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "round robin over both live backends: {seen:?}"
    );

    let green = bed.backend("green@0", "green")?;
    bed.register(&green.registration)?;
    bed.route(&["green"])?;
    bed.wait_applied()?;
    for _ in 0..4 {
        assert_eq!(instance(&client.get("/")?.body)?, "green@0");
    }
    let status = bed.service_status()?;
    assert_eq!(status["routing"], serde_json::json!(["green"]));
    let backends = status["backends"].as_array().context("backends")?;
    let serving: Vec<&str> = backends
        .iter()
        .filter(|b| b["state"] == "serving")
        .filter_map(|b| b["instance"].as_str())
        .collect();
    assert_eq!(serving, ["green@0"]);

    // The dead backend refused its connections; every request went elsewhere.
    bed.route(&["blue"])?;
    bed.wait_applied()?;
    for _ in 0..6 {
        assert_eq!(client.get("/")?.status, 200);
    }
    let status = bed.service_status()?;
    let dead_status = status["backends"]
        .as_array()
        .context("backends")?
        .iter()
        .find(|b| b["instance"] == "dead@0")
        .context("dead@0 listed")?
        .clone();
    ensure!(dead_status["failures"].as_u64() >= Some(1), "{dead_status}");

    for backend in blue.iter().chain([&dead]) {
        bed.deregister(&backend.registration)?;
    }
    bed.wait_applied()?;
    assert_eq!(client.get("/")?.status, 503);
    ensure!(
        bed.log().contains("no healthy backend; answering 503"),
        "{}",
        bed.log()
    );
    Ok(())
}

/// Sends `GET /` on an open TCP connection and returns the instance that answered.
fn ask(stream: &mut TcpStream) -> Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        ensure!(read > 0, "the connection closed mid-answer: {answer:?}");
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .context("a Content-Length")?
            .parse()?;
        if body.len() >= length {
            return instance(body);
        }
    }
}

#[test]
fn a_leaving_backend_keeps_its_open_connection_until_the_grace_ends_and_gets_no_new_one(
) -> Result<()> {
    let bed = ProxyBed::new(false, &["--drain-grace", "2s"])?;
    let a = bed.backend("a@0", "1")?;
    bed.register(&a.registration)?;
    bed.wait_applied()?;
    let mut open = TcpStream::connect(bed.tcp)?;
    open.set_read_timeout(Some(Duration::from_secs(5)))?;
    assert_eq!(ask(&mut open)?, "a@0");

    let b = bed.backend("b@0", "1")?;
    bed.register(&b.registration)?;
    bed.deregister(&a.registration)?;
    bed.wait_applied()?;
    let left = Instant::now();
    for _ in 0..3 {
        let mut fresh = TcpStream::connect(bed.tcp)?;
        fresh.set_read_timeout(Some(Duration::from_secs(5)))?;
        assert_eq!(ask(&mut fresh)?, "b@0");
    }
    assert_eq!(
        ask(&mut open)?,
        "a@0",
        "the open connection still reaches a@0"
    );
    let status = bed.service_status()?;
    let draining: Vec<&serde_json::Value> = status["backends"]
        .as_array()
        .context("backends")?
        .iter()
        .filter(|b| b["state"] == "draining")
        .collect();
    assert_eq!(draining.len(), 1, "{status:#}");
    assert_eq!(draining[0]["instance"], "a@0");
    assert_eq!(draining[0]["active"], 1);

    let mut rest = Vec::new();
    let closed = open.read_to_end(&mut rest);
    let waited = left.elapsed();
    ensure!(
        matches!(closed, Ok(0)),
        "the proxy closes the drained connection: {closed:?}"
    );
    ensure!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "closed {waited:?} after the backend left; the grace is 2 s"
    );
    bed.wait(
        "the drained backend leaves the status",
        Duration::from_secs(5),
        || Ok(bed.service_status()?["backends"].as_array().map(Vec::len) == Some(1)),
    )?;
    Ok(())
}

#[test]
fn blue_green_switches_under_load_fail_no_request() -> Result<()> {
    let bed = ProxyBed::new(false, &[])?;
    let blue: Vec<_> = (0..2)
        .map(|index| bed.backend(&format!("blue@{index}"), "blue"))
        .collect::<Result<_>>()?;
    let green: Vec<_> = (0..2)
        .map(|index| bed.backend(&format!("green@{index}"), "green"))
        .collect::<Result<_>>()?;
    bed.route(&["blue"])?;
    for backend in blue.iter().chain(&green) {
        bed.register(&backend.registration)?;
    }
    bed.wait_applied()?;
    let load = Load::start(bed.http, "/", 4);
    for switch in 0..20 {
        bed.route(&[if switch % 2 == 0 { "green" } else { "blue" }])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Blue retires: switched away, deregistered, then stopped.
    bed.route(&["green"])?;
    for backend in &blue {
        bed.deregister(&backend.registration)?;
    }
    bed.wait_applied()?;
    drop(blue);
    std::thread::sleep(Duration::from_millis(300));
    let tally = load.finish();
    ensure!(tally.failures() == 0, "failed requests: {:?}", tally.failed);
    ensure!(tally.ok > 200, "too little load to tell: {tally:?}");
    let versions = tally.values_of("version")?;
    assert_eq!(
        versions,
        BTreeSet::from(["blue".to_owned(), "green".to_owned()])
    );
    Ok(())
}

#[test]
fn a_watch_compacted_away_while_the_store_was_out_of_reach_is_resynced() -> Result<()> {
    let bed = ProxyBed::new(false, &[])?;
    let old = bed.backend("old@0", "1")?;
    bed.register(&old.registration)?;
    bed.wait_applied()?;
    assert_eq!(
        instance(&KeepAliveClient::new(bed.http).get("/")?.body)?,
        "old@0"
    );

    // Cut off from the store, the proxy misses a change that is then compacted away.
    bed.relay.cut();
    let new = bed.backend("new@0", "1")?;
    bed.register(&new.registration)?;
    bed.deregister(&old.registration)?;
    let client = bed.client()?;
    let revision = block_on(client.range(&RangeRequest {
        key: b"/".to_vec(),
        ..RangeRequest::default()
    }))??
    .revision();
    block_on(client.compact(revision))??;
    assert_eq!(
        instance(&KeepAliveClient::new(bed.http).get("/")?.body)?,
        "old@0",
        "the last known backends serve while the store is out of reach"
    );
    bed.relay.mend();
    bed.wait("the proxy routes to new@0", Duration::from_secs(30), || {
        let answer = KeepAliveClient::new(bed.http).get("/")?;
        Ok(answer.status == 200 && instance(&answer.body)? == "new@0")
    })?;
    ensure!(bed.log().contains("resynced"), "{}", bed.log());
    Ok(())
}

#[test]
fn a_stopping_proxy_refuses_new_connections_while_an_open_one_drains() -> Result<()> {
    let mut bed = ProxyBed::new(false, &["--drain-grace", "3s"])?;
    let a = bed.backend("a@0", "1")?;
    bed.register(&a.registration)?;
    bed.wait_applied()?;
    let mut open = TcpStream::connect(bed.tcp)?;
    open.set_read_timeout(Some(Duration::from_secs(5)))?;
    assert_eq!(ask(&mut open)?, "a@0");
    bed.signal_stop()?;
    for listener in [bed.http, bed.tcp] {
        bed.wait(
            &format!("{listener} refusing connections"),
            Duration::from_secs(2),
            || Ok(TcpStream::connect(listener).is_err()),
        )?;
    }
    assert_eq!(
        ask(&mut open)?,
        "a@0",
        "the open connection is served on through the drain"
    );
    let status = bed.terminate()?;
    ensure!(status.success(), "sinew-proxy exited with {status}");
    Ok(())
}

#[test]
fn sigterm_stops_cleanly_without_waiting_on_an_idle_kept_alive_connection() -> Result<()> {
    let mut bed = ProxyBed::new(false, &["--drain-grace", "5s"])?;
    let a = bed.backend("a@0", "1")?;
    bed.register(&a.registration)?;
    bed.wait_applied()?;
    let mut open = KeepAliveClient::new(bed.http);
    assert_eq!(instance(&open.get("/")?.body)?, "a@0");
    let started = Instant::now();
    let status = bed.terminate()?;
    ensure!(status.success(), "sinew-proxy exited with {status}");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "an idle kept-alive connection held the stop for {:?}",
        started.elapsed()
    );
    ensure!(
        TcpStream::connect(bed.http).is_err(),
        "the listener is closed once stopped"
    );
    let log = bed.log();
    ensure!(
        log.contains("stopping: no new connections") && log.contains("stopped"),
        "{log}"
    );
    Ok(())
}
