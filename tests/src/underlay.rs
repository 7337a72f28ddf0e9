//! Hosts that are network namespaces on an underlay bridge in the root namespace, with one
//! KV server listening on the bridge's address: the ground that the overlay and scheduler
//! test beds stand on.
//!
//! Every name starts with a prefix unique to the underlay, so underlays of parallel tests
//! do not collide; dropping one deletes its namespaces and links. A host can be cut off
//! (its veth set down) and mended, which partitions it from the store and every other host.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};
use sinew_proto::kv::KvClient;

use crate::kv_cluster::{KvCluster, Server};

/// Runs `ip` (or another tool) and fails with its stderr if it fails.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip` and `ping`, installed once if missing.
fn tools() -> Result<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let tools = [
        sinew::setup::Tool {
            program: "ip",
            package: "iproute2",
        },
        sinew::setup::Tool {
            program: "ping",
            package: "iputils-ping",
        },
    ];
    crate::tools_installed(&READY, &tools)
}

/// One host: a network namespace with `eth0` on the underlay.
#[derive(Debug)]
pub struct UnderlayHost {
    /// Its network namespace.
    pub netns: String,
    /// Its underlay address.
    pub address: Ipv4Addr,
    /// Its veth's end on the bridge, in the root namespace.
    pub link: String,
}

/// The underlay; everything is torn down on drop.
#[derive(Debug)]
pub struct Underlay {
    /// The unique name prefix.
    pub name: String,
    /// The underlay bridge in the root namespace.
    pub bridge: String,
    /// The bridge's address, where the KV server listens.
    pub gateway: Ipv4Addr,
    /// The KV endpoint the hosts use.
    pub endpoint: String,
    /// The hosts.
    pub hosts: Vec<UnderlayHost>,
    kv: Option<KvCluster>,
    dir: tempfile::TempDir,
}

/// A counter for unique names and underlay networks.
static UNDERLAYS: AtomicU32 = AtomicU32::new(0);

impl Underlay {
    /// Builds `hosts` hosts, named from `prefix` (two or three letters), with `server` as
    /// the KV store on the bridge's address.
    pub fn new(prefix: &str, hosts: usize, server: Server) -> Result<Self> {
        let mut underlay = Self::bare(prefix, hosts)?;
        let kv = KvCluster::start_on(server, underlay.dir.path(), 1, underlay.gateway)?;
        underlay.endpoint = kv.endpoints()[0].clone();
        underlay.kv = Some(kv);
        Ok(underlay)
    }

    /// Builds the hosts alone, without a KV server (`endpoint` stays empty): for beds that
    /// run their own servers in the hosts.
    pub fn bare(prefix: &str, hosts: usize) -> Result<Self> {
        ensure!(hosts <= 200, "at most 200 hosts");
        tools()?;
        let serial = UNDERLAYS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{:x}{serial:x}", std::process::id() % 0x10000);
        let gateway = free_network((std::process::id() * 7 + serial) % 200)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-underlay"))
            .tempdir()?;
        let mut underlay = Self {
            bridge: format!("{name}br"),
            name,
            gateway,
            endpoint: String::new(),
            hosts: Vec::new(),
            kv: None,
            dir,
        };
        underlay.build(hosts)?;
        Ok(underlay)
    }

    /// A directory that lives as long as the underlay.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Leaves the directory in place when the underlay goes, for a post-mortem.
    pub fn keep_dir(&mut self) -> &Path {
        self.dir.disable_cleanup(true);
        self.dir.path()
    }

    fn build(&mut self, hosts: usize) -> Result<()> {
        sh("ip", &["link", "add", &self.bridge, "type", "bridge"])?;
        let gateway = format!("{}/24", self.gateway);
        sh("ip", &["addr", "add", &gateway, "dev", &self.bridge])?;
        sh("ip", &["link", "set", &self.bridge, "up"])?;
        let [a, b, c, _] = self.gateway.octets();
        for index in 0..hosts {
            let netns = format!("{}-h{index}", self.name);
            let address = Ipv4Addr::new(a, b, c, u8::try_from(10 + index)?);
            let link = format!("{}h{index}", self.name);
            sh("ip", &["netns", "add", &netns])?;
            self.hosts.push(UnderlayHost {
                netns: netns.clone(),
                address,
                link: link.clone(),
            });
            sh(
                "ip",
                &[
                    "link", "add", &link, "mtu", "1500", "type", "veth", "peer", "name", "eth0",
                    "netns", &netns,
                ],
            )?;
            sh("ip", &["link", "set", &link, "master", &self.bridge, "up"])?;
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
            let address = format!("{address}/24");
            sh(
                "ip",
                &["-n", &netns, "addr", "add", &address, "dev", "eth0"],
            )?;
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &netns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ],
            )?;
        }
        Ok(())
    }

    /// A KV client for the underlay's server.
    pub fn kv(&self) -> Result<KvClient> {
        Ok(KvClient::new([self.endpoint.clone()])?)
    }

    /// Runs `ip netns exec <netns> <program> <args>`.
    pub fn exec(&self, netns: &str, program: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", netns, program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Cuts host `index` off the underlay: nothing reaches it or leaves it.
    pub fn cut(&self, index: usize) -> Result<()> {
        sh("ip", &["link", "set", &self.hosts[index].link, "down"]).map(drop)
    }

    /// Puts host `index` back on the underlay.
    pub fn mend(&self, index: usize) -> Result<()> {
        sh("ip", &["link", "set", &self.hosts[index].link, "up"]).map(drop)
    }
}

/// The gateway of the first 10.213.x.0/24 network from `start` (of 200) that no interface
/// here has an address in: one an earlier underlay left behind (its test was killed)
/// would route the hosts' traffic to that underlay's servers.
fn free_network(start: u32) -> Result<Ipv4Addr> {
    for step in 0..200 {
        let octet = u8::try_from((start + step) % 200 + 20)?;
        let network = format!("10.213.{octet}.0/24");
        if sh("ip", &["-o", "-4", "addr", "show", "to", &network])?
            .trim()
            .is_empty()
        {
            return Ok(Ipv4Addr::new(10, 213, octet, 1));
        }
    }
    anyhow::bail!("every 10.213.x.0/24 network (x in 20..220) is in use on this machine")
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = sh("ip", &["netns", "del", &host.netns]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge]);
    }
}

/// Runs `work` on a thread of its own that has entered network namespace `netns`.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {path}"))?;
        work()
    })
}

/// Runs `future` on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future))
}
