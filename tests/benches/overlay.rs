//! Overlay benchmark on the namespace test bed: three hosts running release overlayd
//! against a release kvd, the underlay a 1500-MTU veth/bridge segment.
//!
//! 1. Convergence: a new lease is written (a host joining) and the clock runs until every
//!    host's VXLAN device has its route, neighbour and FDB entry, polled with `ip` and
//!    `bridge`; p50/p99 over `SINEW_BENCH_JOINS` joins (default 40).
//! 2. Throughput: iperf3 TCP container→container across hosts over the overlay, and
//!    host→host over the underlay, `SINEW_BENCH_SECONDS` (default 5) each, in
//!    `SINEW_BENCH_ROUNDS` (default 9) back-to-back pairs whose order alternates; the ratio is
//!    the median of the pairs' ratios. On the kernel's path (`--fast-path off`, flannel's
//!    data path) once with the underlay veths' GRO off (a veth's default) and once on (a
//!    physical NIC's default); then, GRO on, through overlayd's eBPF fast path
//!    (`--fast-path on`; its default `auto` uses it wherever the kernel can), whose ratio
//!    is the `RATIO`. Each host gets a CPU of its own, as separate machines would have:
//!    its iperf3 is pinned there and its received frames are processed there
//!    (`Bed::give_hosts_cpus`), for both measurements.
//! 3. The same throughput pairs with flannel's DirectRouting on (hosts on one segment
//!    route to each other without VXLAN), printed apart from the ratio.
//!
//! Prints a table, then `convergence p50=..ms p99=..ms (goal p99 <= 100 ms)`, and last
//! `RATIO overlay_throughput=<overlay/underlay>`.
//!
//! `cargo bench -p sinew-tests --bench overlay`

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew_proto::overlay::SubnetEnv;
use sinew_tests::kv_cluster::Server;
use sinew_tests::median;
use sinew_tests::overlay_bed::{
    block_on, container_of, entries_in, Bed, DEFAULT_CONFIG, DIRECT_CONFIG, PREFIX,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let joins = sinew_tests::bench_setting("SINEW_BENCH_JOINS", 40_u64);
    let seconds = sinew_tests::bench_setting("SINEW_BENCH_SECONDS", 5_u64);
    let rounds = sinew_tests::bench_setting("SINEW_BENCH_ROUNDS", 9_u64);
    sinew::setup::ensure_tools(
        &[sinew::setup::Tool {
            program: "iperf3",
            package: "iperf3",
        }],
        false,
    )?;
    let mut bed = Bed::new(3, Server::kvd(true)?, Some(DEFAULT_CONFIG), true)?;
    bed.set_fast_path("off");
    let mut subnets = Vec::new();
    for index in 0..3 {
        bed.start(index)?;
    }
    for index in 0..3 {
        subnets.push(bed.attach_container(index)?);
    }
    bed.wait_converged(&subnets, PATIENCE)?;
    bed.give_hosts_cpus()?;

    let mut convergence = measure_convergence(&bed, &subnets, joins)?;
    // Veths do no GRO by default; physical NICs do. The ratio is taken with GRO on the
    // underlay, as on an ordinary network; without it is printed for reference.
    let mut rows = Vec::new();
    for gro in [false, true] {
        bed.set_underlay_gro(gro)?;
        rows.push((gro, throughput(&bed, &subnets, seconds, rounds)?));
    }
    turn_fast_path_on(&mut bed, &subnets)?;
    let fast = throughput(&bed, &subnets, seconds, rounds)?;
    // flannel's DirectRouting on the same underlay, reported on its own (no VXLAN at all
    // between hosts on one segment, so not the overlay's ratio).
    bed.put(&format!("{PREFIX}/config"), DIRECT_CONFIG)?;
    bed.wait_converged_directly(&subnets, PATIENCE)?;
    let direct = throughput(&bed, &subnets, seconds, rounds)?;
    let (p50, p99) = (
        percentile(&mut convergence, 0.50),
        percentile(&mut convergence, 0.99),
    );
    let congestion = bed.exec(
        &bed.hosts[0].netns,
        "cat",
        &["/proc/sys/net/ipv4/tcp_congestion_control"],
    )?;
    println!(
        "TCP congestion control: {} (the machine's default)",
        congestion.trim()
    );
    println!("{:<62} {:>10}", "measure", "value");
    println!("{:<62} {:>10}", "joins measured", convergence.len());
    println!("{:<62} {:>10.1}", "convergence p50 (ms)", p50);
    println!("{:<62} {:>10.1}", "convergence p99 (ms)", p99);
    let max = convergence.iter().copied().fold(0.0, f64::max);
    println!("{:<62} {:>10.1}", "convergence max (ms)", max);
    for (gro, measured) in &rows {
        let gro = if *gro { "on" } else { "off" };
        println!(
            "{:<62} {:>10.2}",
            format!("underlay TCP host→host, MTU 1500, GRO {gro} (Gbit/s)"),
            measured.underlay / 1e9
        );
        println!(
            "{:<62} {:>10.2}",
            format!("overlay TCP container→container, kernel path, GRO {gro} (Gbit/s)"),
            measured.overlay / 1e9
        );
        println!(
            "{:<62} {:>10.3}",
            format!("kernel-path overlay/underlay, median of {rounds} pairs, GRO {gro}"),
            measured.ratio
        );
    }
    println!(
        "{:<62} {:>10.2}",
        "overlay TCP container→container, eBPF fast path, GRO on (Gbit/s)",
        fast.overlay / 1e9
    );
    println!(
        "{:<62} {:>10.3}",
        format!("fast-path overlay/underlay, median of {rounds} pairs, GRO on"),
        fast.ratio
    );
    println!(
        "{:<62} {:>10.2}",
        "DirectRouting TCP container→container, GRO on (Gbit/s)",
        direct.overlay / 1e9
    );
    println!(
        "{:<62} {:>10.3}",
        format!("DirectRouting/underlay, median of {rounds} paired rounds"),
        direct.ratio
    );
    println!("convergence p50={p50:.1}ms p99={p99:.1}ms (goal p99 <= 100 ms)");
    println!("RATIO overlay_throughput={:.3}", fast.ratio);
    Ok(())
}

/// Restarts every host's overlayd with `--fast-path on` and waits until the overlay works
/// again with the fast path's programs in place.
fn turn_fast_path_on(bed: &mut Bed, subnets: &[SubnetEnv]) -> Result<()> {
    bed.set_fast_path("on");
    for index in 0..bed.hosts.len() {
        bed.stop(index)?;
        bed.start(index)?;
    }
    bed.wait_converged(subnets, PATIENCE)?;
    for index in 0..bed.hosts.len() {
        // A packet each way teaches each bridge where its container is.
        let next = &subnets[(index + 1) % subnets.len()];
        bed.exec(
            &bed.hosts[index].container_netns,
            "ping",
            &["-c", "1", "-W", "2", &container_of(next).to_string()],
        )?;
    }
    for index in 0..bed.hosts.len() {
        bed.wait_fast_path(index, PATIENCE)?;
    }
    Ok(())
}

/// TCP throughput over the underlay and the overlay, measured in pairs.
struct Throughput {
    /// Median bit/s host→host over the underlay.
    underlay: f64,
    /// Median bit/s container→container over the overlay.
    overlay: f64,
    /// Median of each round's overlay/underlay: a pair runs back to back, so load that comes
    /// and goes on the machine weighs on both sides of a ratio alike.
    ratio: f64,
}

/// `rounds` pairs of iperf3 runs, host→host over the underlay and container→container over
/// the overlay, the order of the pair alternating from round to round.
fn throughput(bed: &Bed, subnets: &[SubnetEnv], seconds: u64, rounds: u64) -> Result<Throughput> {
    let mut underlay = Vec::new();
    let mut overlay = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (server, client) = (bed.host_cpu(1), bed.host_cpu(0));
        let host = || {
            iperf(
                bed,
                (&bed.hosts[1].netns, server),
                (&bed.hosts[0].netns, client),
                bed.hosts[1].address,
                seconds,
            )
        };
        let container = || {
            iperf(
                bed,
                (&bed.hosts[1].container_netns, server),
                (&bed.hosts[0].container_netns, client),
                container_of(&subnets[1]),
                seconds,
            )
        };
        let (under, over) = if round % 2 == 0 {
            let under = host()?;
            (under, container()?)
        } else {
            let over = container()?;
            (host()?, over)
        };
        underlay.push(under);
        overlay.push(over);
        ratios.push(over / under);
    }
    Ok(Throughput {
        underlay: median(&mut underlay),
        overlay: median(&mut overlay),
        ratio: median(&mut ratios),
    })
}

/// Nearest-rank percentile of `samples` (sorted in place).
fn percentile(samples: &mut [f64], fraction: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    if samples.is_empty() {
        return f64::NAN;
    }
    // `fraction` is in 0..=1, so the rank is in 0..=len, and it is clamped to 1..=len below.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (fraction * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Writes `joins` leases of made-up hosts, one at a time, and times each until all three
/// hosts have its entries; each is deleted (and seen gone) before the next.
fn measure_convergence(bed: &Bed, subnets: &[SubnetEnv], joins: u64) -> Result<Vec<f64>> {
    let kv = bed.kv()?;
    let taken: Vec<String> = subnets
        .iter()
        .map(|subnet| subnet.subnet().to_string())
        .collect();
    let free: Vec<u8> = (100..=250u8)
        .filter(|third| !taken.contains(&format!("10.5.{third}.0/24")))
        .collect();
    let [a, b, c, _] = bed.gateway().octets();
    let mut samples = Vec::new();
    for join in 0..joins {
        let index = usize::try_from(join)? % free.len();
        let subnet = format!("10.5.{}.0/24", free[index]);
        let public_ip = Ipv4Addr::new(a, b, c, 100 + u8::try_from(join % 100)?);
        let key = format!("{PREFIX}/subnets/10.5.{}.0-24", free[index]);
        let value = format!(
            r#"{{"PublicIP":"{public_ip}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"0a:58:ff:00:00:{:02x}"}}}}"#,
            join % 256
        );
        let written = Instant::now();
        block_on(kv.put(key.clone(), value))??;
        let mut pollers = Vec::new();
        for host in 0..3 {
            let netns = bed.hosts[host].netns.clone();
            let subnet = subnet.clone();
            pollers.push(std::thread::spawn(move || -> Result<Duration> {
                loop {
                    if entries_in(&netns)?.reaches(&subnet, public_ip) {
                        return Ok(written.elapsed());
                    }
                    if written.elapsed() > PATIENCE {
                        bail!("{netns} never got {subnet}");
                    }
                    // Leave the CPU to overlayd between polls.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        let mut slowest = Duration::ZERO;
        for poller in pollers {
            let took = poller
                .join()
                .map_err(|_| anyhow::anyhow!("a poller panicked"))??;
            slowest = slowest.max(took);
        }
        samples.push(slowest.as_secs_f64() * 1000.0);
        block_on(kv.delete(&sinew_proto::kv::DeleteRangeRequest {
            key: key.into_bytes(),
            ..Default::default()
        }))??;
        for host in 0..3 {
            bed.wait_entries(host, PATIENCE, |entries| entries.forgot(&subnet, public_ip))?;
        }
    }
    Ok(samples)
}

/// TCP throughput in bit/s from an iperf3 client to an iperf3 server, each given as its
/// network namespace and the CPU it is pinned to.
fn iperf(
    bed: &Bed,
    (server_netns, server_cpu): (&str, usize),
    (client_netns, client_cpu): (&str, usize),
    server: Ipv4Addr,
    seconds: u64,
) -> Result<f64> {
    let address = server.to_string();
    let mut daemon: Child = Command::new("ip")
        .args([
            "netns",
            "exec",
            server_netns,
            "taskset",
            "-c",
            &server_cpu.to_string(),
            "iperf3",
            "-s",
            "-1",
            "-B",
            &address,
            "-p",
            "5201",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the iperf3 server")?;
    std::thread::sleep(Duration::from_millis(300));
    let result = bed.exec(
        client_netns,
        "taskset",
        &[
            "-c",
            &client_cpu.to_string(),
            "iperf3",
            "-c",
            &address,
            "-p",
            "5201",
            "-t",
            &seconds.to_string(),
            "-J",
        ],
    );
    // The one-off server exits after the test; kill it if the client failed.
    let _ = daemon.kill();
    let _ = daemon.wait();
    let report: serde_json::Value = serde_json::from_str(&result?)?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3's report has no end.sum_received.bits_per_second")
}
