//! overlayd on the namespace test bed (real kernel VXLAN, real kvd or etcd): containers
//! reach each other across hosts, leaving hosts are forgotten, restarts keep subnets,
//! concurrent starts never share a subnet, bad config is reported and later picked up,
//! DirectRouting skips VXLAN on one segment, a new VNI replaces the device, the eBPF fast
//! path carries container traffic past the host's stack and goes away with overlayd.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sinew_proto::overlay::SubnetEnv;
use sinew_tests::kv_cluster::Server;
use sinew_tests::overlay_bed::{
    block_on, container_of, in_netns, Bed, DEFAULT_CONFIG, DEVICE, DIRECT_CONFIG, PREFIX,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn started(hosts: usize, server: Server, config: &str) -> Result<(Bed, Vec<SubnetEnv>)> {
    started_with(hosts, server, config, None)
}

/// [`started`], with overlayd's `--fast-path` set if `fast_path` is given.
fn started_with(
    hosts: usize,
    server: Server,
    config: &str,
    fast_path: Option<&'static str>,
) -> Result<(Bed, Vec<SubnetEnv>)> {
    let mut bed = Bed::new(hosts, server, Some(config), false)?;
    if let Some(mode) = fast_path {
        bed.set_fast_path(mode);
    }
    for index in 0..hosts {
        bed.start(index)?;
    }
    let subnets = (0..hosts)
        .map(|index| bed.wait_subnet(index, PATIENCE))
        .collect::<Result<Vec<_>>>()?;
    Ok((bed, subnets))
}

/// A started bed with a container attached to every host.
fn attached(hosts: usize, config: &str) -> Result<(Bed, Vec<SubnetEnv>)> {
    attached_with(hosts, config, None)
}

/// [`attached`], with overlayd's `--fast-path` set if `fast_path` is given.
fn attached_with(
    hosts: usize,
    config: &str,
    fast_path: Option<&'static str>,
) -> Result<(Bed, Vec<SubnetEnv>)> {
    let (mut bed, subnets) = started_with(hosts, Server::kvd(false)?, config, fast_path)?;
    for index in 0..hosts {
        bed.attach_container(index)?;
    }
    Ok((bed, subnets))
}

fn wait_log(bed: &mut Bed, index: usize, needle: &str) -> Result<()> {
    let started = Instant::now();
    while !bed.log(index).contains(needle) {
        ensure!(
            bed.running(index)?,
            "overlayd exited; log:\n{}",
            bed.log(index)
        );
        if started.elapsed() > PATIENCE {
            bail!("overlayd never logged {needle:?}; log:\n{}", bed.log(index));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Sends `message` from container namespace `from` to a TCP echo server in `to` at
/// `address`, and returns what came back.
fn tcp_echo(from: &str, to: &str, address: Ipv4Addr, message: &'static [u8]) -> Result<Vec<u8>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(to, move || {
        let listener = TcpListener::bind((address, 7777)).context("binding the echo server")?;
        ready_tx.send(()).context("signalling readiness")?;
        let (mut stream, _) = listener.accept()?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received)?;
        stream.write_all(&received)?;
        Ok(())
    });
    ready_rx
        .recv_timeout(PATIENCE)
        .context("the echo server never listened")?;
    let client = in_netns(from, move || {
        let mut stream =
            TcpStream::connect_timeout(&(address, 7777).into(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(message)?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed)?;
        Ok(echoed)
    });
    let echoed = client
        .join()
        .map_err(|_| anyhow::anyhow!("the client panicked"))??;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server panicked"))??;
    Ok(echoed)
}

#[test]
fn containers_ping_and_echo_across_hosts() -> Result<()> {
    // The kernel's own path, as flannel has it.
    let (mut bed, subnets) = attached_with(3, DEFAULT_CONFIG, Some("off"))?;
    let distinct: HashSet<String> = subnets
        .iter()
        .map(|subnet| subnet.subnet().to_string())
        .collect();
    assert_eq!(distinct.len(), 3, "{subnets:?}");
    for subnet in &subnets {
        assert!(
            subnet.subnet().to_string().starts_with("10.5."),
            "{subnet:?}"
        );
        assert_eq!(subnet.prefix_len, 24);
        assert_eq!(subnet.mtu, 1450, "underlay MTU 1500 minus 50");
    }
    bed.wait_converged(&subnets, PATIENCE)?;
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        ping(&bed, from, &subnets[to])?;
    }
    let echoed = tcp_echo(
        &bed.hosts[0].container_netns,
        &bed.hosts[2].container_netns,
        container_of(&subnets[2]),
        b"hello across the overlay",
    )?;
    assert_eq!(echoed, b"hello across the overlay");
    for (index, subnet) in subnets.iter().enumerate() {
        assert!(bed.running(index)?);
        let log = bed.log(index);
        assert!(
            log.contains(&format!("acquired subnet {}", subnet.subnet())),
            "{log}"
        );
        assert!(log.contains("remote added: subnet"), "{log}");
    }
    Ok(())
}

#[test]
fn a_leaving_host_is_removed_from_the_others_on_etcd() -> Result<()> {
    let (mut bed, subnets) = started(3, Server::Etcd, DEFAULT_CONFIG)?;
    bed.wait_converged(&subnets, PATIENCE)?;
    let leaving = subnets[2].subnet().to_string();
    let leaving_ip = bed.hosts[2].address;
    bed.stop(2)?;
    // Stopped, not gone: its lease still stands, so the others keep reaching it.
    std::thread::sleep(Duration::from_millis(500));
    for index in 0..2 {
        assert!(bed.entries(index)?.reaches(&leaving, leaving_ip));
    }
    let kv = bed.kv()?;
    let key = format!("{PREFIX}/subnets/{}", leaving.replace('/', "-"));
    let pair = block_on(kv.get(key.clone()))??.context("the leaving host's lease")?;
    assert_ne!(pair.lease, 0, "the lease key is attached to a KV lease");
    block_on(kv.lease_revoke(pair.lease))??;
    for index in 0..2 {
        let entries = bed.wait_entries(index, PATIENCE, |entries| {
            entries.forgot(&leaving, leaving_ip)
        })?;
        let staying = subnets[1 - index].subnet().to_string();
        assert!(
            entries.reaches(&staying, bed.hosts[1 - index].address),
            "{entries:#?}"
        );
        assert!(bed
            .log(index)
            .contains(&format!("remote removed: subnet {leaving}")));
    }
    Ok(())
}

#[test]
fn a_restart_keeps_the_subnet_and_the_data_plane() -> Result<()> {
    let (mut bed, subnets) = started(2, Server::kvd(false)?, DEFAULT_CONFIG)?;
    bed.wait_converged(&subnets, PATIENCE)?;
    bed.stop(0)?;
    let log = bed.log(0);
    assert!(
        log.lines()
            .any(|line| line.contains("stopping, leaving the VXLAN device")
                && line.contains("SIGTERM")),
        "{log}"
    );
    // The device and its entries stay while overlayd is down.
    let entries = bed.entries(0)?;
    assert!(
        entries.reaches(&subnets[1].subnet().to_string(), bed.hosts[1].address),
        "{entries:#?}"
    );
    // Only the lease can give the subnet back: the old subnet.env is gone.
    std::fs::remove_file(&bed.hosts[0].subnet_file)?;
    bed.start(0)?;
    let again = bed.wait_subnet(0, PATIENCE)?;
    assert_eq!(again, subnets[0]);
    bed.wait_converged(&subnets, PATIENCE)?;
    let log = bed.log(0);
    assert!(log.contains("adopted the existing VXLAN device"), "{log}");
    assert_eq!(
        log.matches(&format!("acquired subnet {}", subnets[0].subnet()))
            .count(),
        2,
        "{log}"
    );
    Ok(())
}

#[test]
fn hosts_starting_at_once_never_share_a_subnet() -> Result<()> {
    // Exactly four subnets for four hosts: every host must win a different one.
    let config = r#"{"Network": "10.6.0.0/16", "SubnetLen": 24, "SubnetMin": "10.6.1.0", "SubnetMax": "10.6.4.0"}"#;
    let (bed, subnets) = started(4, Server::kvd(false)?, config)?;
    let distinct: HashSet<String> = subnets
        .iter()
        .map(|subnet| subnet.subnet().to_string())
        .collect();
    let expected: HashSet<String> = (1..=4).map(|n| format!("10.6.{n}.0/24")).collect();
    assert_eq!(distinct, expected);
    let kv = bed.kv()?;
    let leases = block_on(kv.get_prefix(format!("{PREFIX}/subnets/")))??;
    assert_eq!(leases.kvs.len(), 4);
    let holders: HashSet<String> = leases
        .kvs
        .iter()
        .map(|pair| {
            let value: serde_json::Value = serde_json::from_slice(&pair.value)?;
            Ok(value["PublicIP"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_>>()?;
    assert_eq!(holders.len(), 4, "{holders:?}");
    bed.wait_converged(&subnets, PATIENCE)?;
    Ok(())
}

#[test]
fn the_fast_path_carries_container_traffic_past_the_host_stack() -> Result<()> {
    let (mut bed, subnets) = attached_with(2, DEFAULT_CONFIG, Some("on"))?;
    bed.wait_converged(&subnets, PATIENCE)?;
    // The first packets take the kernel's path, which teaches the bridge where each
    // container is; the fast path picks that up from the FDB.
    ping(&bed, 0, &subnets[1])?;
    ping(&bed, 1, &subnets[0])?;
    for index in 0..2 {
        bed.wait_fast_path(index, PATIENCE)?;
    }
    let bridge_before = bed.packets(1, "cbr0")?;
    let veth_before = bed.packets(1, "veth0")?;
    let output = bed.exec(
        &bed.hosts[0].container_netns,
        "ping",
        &[
            "-c",
            "50",
            "-i",
            "0.01",
            "-W",
            "2",
            &container_of(&subnets[1]).to_string(),
        ],
    )?;
    ensure!(output.contains("50 received"), "{output}");
    // Forwarded twice, once by each host's programs, as the kernel would: 64 - 2.
    ensure!(output.contains("ttl=62"), "{output}");
    let echoed = tcp_echo(
        &bed.hosts[1].container_netns,
        &bed.hosts[0].container_netns,
        container_of(&subnets[0]),
        b"past the bridge",
    )?;
    assert_eq!(echoed, b"past the bridge");
    let bridge_after = bed.packets(1, "cbr0")?;
    let veth_after = bed.packets(1, "veth0")?;
    // Requests went straight into the container (the host-side veth sent none of them)
    // and replies straight to the VXLAN device (the bridge passed none up to the host).
    let sent_by_veth = veth_after.1 - veth_before.1;
    let bridge_up = bridge_after.0 - bridge_before.0;
    let from_container = veth_after.0 - veth_before.0;
    assert!(
        from_container >= 50,
        "the container sent {from_container} packets"
    );
    assert!(
        sent_by_veth < 5,
        "{sent_by_veth} packets took the bridge into the container"
    );
    assert!(
        bridge_up < 5,
        "{bridge_up} packets took the bridge up to the host"
    );
    // Stopped, overlayd takes the fast path away; the kernel's path carries on.
    bed.stop(1)?;
    ensure!(!bed.fast_path_attached(1)?, "the filters outlived overlayd");
    ping(&bed, 0, &subnets[1])?;
    let veth_kernel = bed.packets(1, "veth0")?;
    ensure!(
        veth_kernel.1 >= veth_after.1 + 2,
        "the pings after the stop did not take the bridge: {veth_after:?} then {veth_kernel:?}"
    );
    Ok(())
}

fn ping(bed: &Bed, from: usize, to: &SubnetEnv) -> Result<()> {
    let target = container_of(to).to_string();
    let output = bed.exec(
        &bed.hosts[from].container_netns,
        "ping",
        &["-c", "2", "-W", "2", &target],
    )?;
    ensure!(output.contains("2 received"), "{output}");
    Ok(())
}

#[test]
fn direct_routing_skips_vxlan_on_one_segment_and_can_be_turned_off() -> Result<()> {
    let (bed, subnets) = attached(2, DIRECT_CONFIG)?;
    bed.wait_converged_directly(&subnets, PATIENCE)?;
    ping(&bed, 0, &subnets[1])?;
    ping(&bed, 1, &subnets[0])?;
    // Turned off, each host goes back to VXLAN and drops its direct route.
    bed.put(&format!("{PREFIX}/config"), DEFAULT_CONFIG)?;
    for (index, other) in [(0, 1), (1, 0)] {
        let (subnet, address) = (
            subnets[other].subnet().to_string(),
            bed.hosts[other].address,
        );
        bed.wait_entries(index, PATIENCE, |entries| entries.reaches(&subnet, address))?;
        let direct = format!("{subnet} ");
        bed.wait_underlay_routes(index, PATIENCE, |routes| {
            !routes.iter().any(|line| line.starts_with(&direct))
        })?;
    }
    ping(&bed, 0, &subnets[1])?;
    Ok(())
}

#[test]
fn a_new_vni_replaces_the_old_device() -> Result<()> {
    let (mut bed, subnets) = attached(2, DEFAULT_CONFIG)?;
    bed.wait_converged(&subnets, PATIENCE)?;
    bed.put(
        &format!("{PREFIX}/config"),
        r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 2}}"#,
    )?;
    for index in 0..2 {
        wait_log(&mut bed, index, "deleted flannel.1")?;
        let links = bed.exec(&bed.hosts[index].netns, "ip", &["-d", "link", "show"])?;
        assert!(!links.contains("flannel.1:"), "{links}");
        // The old device goes first, then the overlay starts again with the new one.
        let started = Instant::now();
        loop {
            let links = bed.exec(&bed.hosts[index].netns, "ip", &["-d", "link", "show"])?;
            if links.contains("vxlan id 2 ") {
                break;
            }
            ensure!(
                started.elapsed() < PATIENCE,
                "no VNI 2 device on host {index}: {links}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Each host published its new device's MAC; wait until the other has it.
    for (index, other) in [(0, 1), (1, 0)] {
        let mac = bed.exec(
            &bed.hosts[other].netns,
            "cat",
            &["/sys/class/net/flannel.2/address"],
        )?;
        let (vtep, address) = (
            subnets[other].subnet().to_string(),
            bed.hosts[other].address,
        );
        let vtep = vtep.split('/').next().unwrap_or_default().to_owned();
        let wanted = [
            ("neigh", format!("{vtep} lladdr {} ", mac.trim())),
            ("fdb", format!("{} dst {address} ", mac.trim())),
        ];
        let started = Instant::now();
        loop {
            let netns = &bed.hosts[index].netns;
            let neigh = bed.exec(netns, "ip", &["neigh", "show", "dev", "flannel.2"])?;
            let fdb = sinew_tests::overlay_bed::sh(
                "bridge",
                &["-n", netns, "fdb", "show", "dev", "flannel.2"],
            )?;
            if neigh.contains(&wanted[0].1) && fdb.contains(&wanted[1].1) {
                break;
            }
            ensure!(
                started.elapsed() < PATIENCE,
                "host {index} never learnt {wanted:?}: {neigh}\n{fdb}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    ping(&bed, 0, &subnets[1])?;
    Ok(())
}

#[test]
fn bad_config_is_reported_and_picked_up_once_fixed() -> Result<()> {
    let mut bed = Bed::new(1, Server::kvd(false)?, Some("{\"Network\": "), false)?;
    bed.start(0)?;
    let key = format!("{PREFIX}/config");
    wait_log(&mut bed, 0, "is not the JSON expected")?;
    bed.put(&key, r#"{"Network": "10.5.0.0/16", "SubnetLen": 31}"#)?;
    wait_log(
        &mut bed,
        0,
        "SubnetLen: 31 is impossible for Network 10.5.0.0/16",
    )?;
    bed.put(
        &key,
        r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}}"#,
    )?;
    wait_log(&mut bed, 0, "Backend.Type: \"udp\" is not supported")?;
    assert!(
        !bed.hosts[0].subnet_file.exists(),
        "no subnet before a valid config"
    );
    bed.put(&key, DEFAULT_CONFIG)?;
    let subnet = bed.wait_subnet(0, PATIENCE)?;
    assert!(
        subnet.subnet().to_string().starts_with("10.5."),
        "{subnet:?}"
    );
    let device = bed.exec(&bed.hosts[0].netns, "ip", &["-d", "link", "show", DEVICE])?;
    assert!(device.contains("vxlan id 1 "), "{device}");
    assert!(device.contains("dstport 8472"), "{device}");
    assert!(device.contains("nolearning"), "{device}");
    assert!(device.contains("mtu 1450"), "{device}");
    // Breaking it again while running is reported, and the daemon keeps going.
    bed.put(&key, "[]")?;
    wait_log(&mut bed, 0, "keeping the current one")?;
    assert!(bed.running(0)?);
    Ok(())
}

#[test]
fn a_short_lease_is_renewed_and_a_lost_one_reacquired() -> Result<()> {
    let mut bed = Bed::new(2, Server::kvd(false)?, Some(DEFAULT_CONFIG), false)?;
    bed.set_lease_timing("3s", "2s");
    bed.start(0)?;
    bed.start(1)?;
    let subnets = [bed.wait_subnet(0, PATIENCE)?, bed.wait_subnet(1, PATIENCE)?];
    bed.wait_converged(&subnets, PATIENCE)?;
    let kv = bed.kv()?;
    let key = format!(
        "{PREFIX}/subnets/{}",
        subnets[0].subnet().to_string().replace('/', "-")
    );
    let first = block_on(kv.get(key.clone()))??.context("host 0's lease")?;
    // Three TTLs later the same KV lease still holds the key: it was renewed.
    std::thread::sleep(Duration::from_secs(9));
    let later = block_on(kv.get(key.clone()))??.context("host 0's lease after 9 s")?;
    assert_eq!(later.lease, first.lease);
    let ttl = block_on(kv.lease_time_to_live(first.lease, false))??;
    assert!(ttl.ttl > 0, "{ttl:?}");
    // Revoked under a running host: it notices, takes the same subnet again, and the
    // other host keeps (or gets back) its entries.
    block_on(kv.lease_revoke(first.lease))??;
    wait_log(&mut bed, 0, "lost the lease of subnet")?;
    let started = Instant::now();
    let again = loop {
        if let Some(pair) = block_on(kv.get(key.clone()))?? {
            break pair;
        }
        ensure!(
            started.elapsed() < PATIENCE,
            "the subnet was never leased again"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(again.lease, first.lease);
    assert_eq!(bed.wait_subnet(0, PATIENCE)?, subnets[0]);
    bed.wait_converged(&subnets, PATIENCE)?;
    assert!(bed.running(0)? && bed.running(1)?);
    Ok(())
}
