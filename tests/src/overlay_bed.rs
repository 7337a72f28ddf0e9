//! A test bed for overlayd on one machine: the hosts of an [`Underlay`], overlayd running
//! in each, and per host a "container" namespace plugged into a bridge that holds the
//! host's `FLANNEL_SUBNET`.
//!
//! The bed builds itself with `ip` (overlayd itself never shells out); dropping it stops the
//! daemons and deletes its container namespaces, and the underlay the rest.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sinew_proto::kv::KvClient;
use sinew_proto::overlay::SubnetEnv;

use crate::kv_cluster::Server;
use crate::underlay::Underlay;
pub use crate::underlay::{block_on, in_netns, sh};

/// The key prefix the bed's hosts use.
pub const PREFIX: &str = "/sinew-test/network";
/// The overlay network config the bed writes unless told otherwise.
pub const DEFAULT_CONFIG: &str =
    r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1}}"#;
/// [`DEFAULT_CONFIG`] with flannel's DirectRouting on.
pub const DIRECT_CONFIG: &str =
    r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1, "DirectRouting": true}}"#;
/// The VXLAN device overlayd makes for VNI 1.
pub const DEVICE: &str = "flannel.1";

/// overlayd, built now (once per process and profile) from this workspace.
pub fn overlayd(release: bool) -> Result<PathBuf> {
    Ok(crate::host_bins(release)?.join("overlayd"))
}

/// The address of the container [`Bed::attach_container`] gives a host: the one after
/// the host's gateway.
pub fn container_of(subnet: &SubnetEnv) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.gateway) + 1)
}

/// One host of the bed.
#[derive(Debug)]
pub struct Host {
    /// Its network namespace.
    pub netns: String,
    /// Its container's network namespace, once attached.
    pub container_netns: String,
    /// Its underlay address.
    pub address: Ipv4Addr,
    /// Where its overlayd writes `subnet.env`.
    pub subnet_file: PathBuf,
    /// Its overlayd's log.
    pub log: PathBuf,
    daemon: Option<Child>,
    attached: bool,
}

/// What a host's VXLAN device holds, as `ip` and `bridge` print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    /// `ip route show dev flannel.1` lines.
    pub routes: Vec<String>,
    /// `ip neigh show dev flannel.1 nud permanent` lines.
    pub neighbours: Vec<String>,
    /// `bridge fdb show dev flannel.1` lines with a `dst`.
    pub fdb: Vec<String>,
}

impl Entries {
    /// Whether the device reaches the host with `subnet` (`a.b.c.0/n`) at `public_ip`:
    /// a route via the subnet's address, its neighbour entry, and an FDB entry to
    /// `public_ip` with that neighbour's MAC.
    pub fn reaches(&self, subnet: &str, public_ip: Ipv4Addr) -> bool {
        let vtep = subnet.split('/').next().unwrap_or_default();
        let route = self
            .routes
            .iter()
            .any(|line| line.starts_with(&format!("{subnet} via {vtep} ")));
        let mac = self.neighbours.iter().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(vtep)).then(|| {
                line.split_whitespace()
                    .skip_while(|word| *word != "lladdr")
                    .nth(1)
                    .map(str::to_owned)
            })?
        });
        let fdb = mac.is_some_and(|mac| {
            self.fdb.iter().any(|line| {
                line.starts_with(&format!("{mac} ")) && line.contains(&format!("dst {public_ip} "))
            })
        });
        route && fdb
    }

    /// Whether nothing on the device mentions `subnet`'s VTEP address or `public_ip`.
    pub fn forgot(&self, subnet: &str, public_ip: Ipv4Addr) -> bool {
        let vtep = subnet.split('/').next().unwrap_or_default();
        !self
            .routes
            .iter()
            .any(|line| line.starts_with(&format!("{subnet} ")))
            && !self
                .neighbours
                .iter()
                .any(|line| line.starts_with(&format!("{vtep} ")))
            && !self
                .fdb
                .iter()
                .any(|line| line.contains(&format!("dst {public_ip} ")))
    }
}

/// The bed; everything is torn down on drop.
#[derive(Debug)]
pub struct Bed {
    /// The hosts.
    pub hosts: Vec<Host>,
    overlayd: PathBuf,
    lease_timing: (String, String),
    fast_path: Option<&'static str>,
    underlay: Underlay,
}

impl Bed {
    /// Builds a bed of `hosts` hosts with `server` as the KV store, and writes `config`
    /// (if any) as the network config. No overlayd runs yet.
    pub fn new(hosts: usize, server: Server, config: Option<&str>, release: bool) -> Result<Self> {
        let overlayd = overlayd(release)?;
        let underlay = Underlay::new("ov", hosts, server)?;
        let hosts = underlay
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| Host {
                container_netns: format!("{}-c{index}", underlay.name),
                subnet_file: underlay.dir().join(format!("h{index}/subnet.env")),
                log: underlay.dir().join(format!("h{index}.log")),
                netns: host.netns.clone(),
                address: host.address,
                daemon: None,
                attached: false,
            })
            .collect();
        let bed = Self {
            hosts,
            overlayd,
            lease_timing: ("60s".to_owned(), "20s".to_owned()),
            fast_path: None,
            underlay,
        };
        if let Some(config) = config {
            bed.put(&format!("{PREFIX}/config"), config)?;
        }
        Ok(bed)
    }

    /// The lease TTL and renewal margin for every overlayd started from now on (default
    /// `60s` and `20s`).
    pub fn set_lease_timing(&mut self, ttl: &str, renew_margin: &str) {
        self.lease_timing = (ttl.to_owned(), renew_margin.to_owned());
    }

    /// `--fast-path` for every overlayd started from now on (default: overlayd's own).
    pub fn set_fast_path(&mut self, mode: &'static str) {
        self.fast_path = Some(mode);
    }

    /// Whether host `index` has the fast path's programs on its VXLAN device and its
    /// container's veth.
    pub fn fast_path_attached(&self, index: usize) -> Result<bool> {
        let netns = &self.hosts[index].netns;
        let on = |device: &str, program: &str| -> Result<bool> {
            let filters = self.exec(netns, "tc", &["filter", "show", "dev", device, "ingress"])?;
            Ok(filters.contains(program) && filters.contains("direct-action"))
        };
        Ok(on(DEVICE, "sinew_rx")? && on("veth0", "sinew_tx")?)
    }

    /// Waits until [`Bed::fast_path_attached`] holds for host `index`.
    pub fn wait_fast_path(&mut self, index: usize, patience: Duration) -> Result<()> {
        let started = Instant::now();
        while !self.fast_path_attached(index)? {
            ensure!(
                self.running(index)?,
                "overlayd on host {index} exited; log:\n{}",
                self.log(index)
            );
            ensure!(
                started.elapsed() < patience,
                "host {index} has no fast path after {patience:?}; log:\n{}",
                self.log(index)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// A link's packet counters in host `index`: (received, sent).
    pub fn packets(&self, index: usize, link: &str) -> Result<(u64, u64)> {
        let netns = &self.hosts[index].netns;
        let read = |counter: &str| -> Result<u64> {
            let path = format!("/sys/class/net/{link}/statistics/{counter}");
            let text = self.exec(netns, "cat", &[&path])?;
            text.trim()
                .parse()
                .with_context(|| format!("{path} holds {text:?}, not a count"))
        };
        Ok((read("rx_packets")?, read("tx_packets")?))
    }

    /// Turns GRO on or off on both ends of every host's underlay veth. A veth has it off
    /// by default; physical NICs have it on, so the benchmark measures with it on.
    pub fn set_underlay_gro(&self, on: bool) -> Result<()> {
        static ETHTOOL: OnceLock<Result<(), String>> = OnceLock::new();
        let ethtool = sinew::setup::Tool {
            program: "ethtool",
            package: "ethtool",
        };
        crate::tools_installed(&ETHTOOL, &[ethtool])?;
        let state = if on { "on" } else { "off" };
        for (host, underlay) in self.hosts.iter().zip(&self.underlay.hosts) {
            sh("ethtool", &["-K", &underlay.link, "gro", state])?;
            self.exec(&host.netns, "ethtool", &["-K", "eth0", "gro", state])?;
        }
        Ok(())
    }

    /// The CPU that host `index` runs on once [`Bed::give_hosts_cpus`] is called: hosts
    /// take the machine's CPUs in turn.
    pub fn host_cpu(&self, index: usize) -> usize {
        index % std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Makes each host behave like a machine of its own: the kernel's receive processing
    /// for its underlay veth (everything after a frame reaches `eth0`: decapsulation,
    /// forwarding, the container's TCP) runs on [`Bed::host_cpu`] through RPS. Without
    /// this a veth processes received frames on the sending CPU, so one CPU would do both
    /// hosts' network work and the other only copy to the reader. Callers pin their
    /// processes in a host to the same CPU.
    pub fn give_hosts_cpus(&self) -> Result<()> {
        for (index, host) in self.hosts.iter().enumerate() {
            let mask = format!("{:x}", 1u64 << self.host_cpu(index));
            let script = format!(
                "for queue in /sys/class/net/eth0/queues/rx-*; do echo {mask} > $queue/rps_cpus; done"
            );
            self.exec(&host.netns, "sh", &["-c", &script])
                .with_context(|| format!("setting RPS on {}'s eth0", host.netns))?;
        }
        Ok(())
    }

    /// A KV client for the bed's server.
    pub fn kv(&self) -> Result<KvClient> {
        self.underlay.kv()
    }

    /// The underlay's bridge address, where the KV server listens.
    pub fn gateway(&self) -> Ipv4Addr {
        self.underlay.gateway
    }

    /// Writes `key` = `value` in the KV store.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        let kv = self.kv()?;
        block_on(kv.put(key, value))??;
        Ok(())
    }

    /// Starts overlayd on host `index`.
    pub fn start(&mut self, index: usize) -> Result<()> {
        let host = &mut self.hosts[index];
        ensure!(
            host.daemon.is_none(),
            "overlayd already runs on host {index}"
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &host.netns])
            .arg(&self.overlayd)
            .args([
                "--etcd-endpoints",
                &self.underlay.endpoint,
                "--etcd-prefix",
                PREFIX,
                "--iface",
                "eth0",
            ])
            .arg("--subnet-file")
            .arg(&host.subnet_file)
            .args(["--subnet-lease-ttl", &self.lease_timing.0])
            .args(["--subnet-lease-renew-margin", &self.lease_timing.1])
            .args(self.fast_path.iter().flat_map(|mode| ["--fast-path", mode]))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting overlayd")?;
        host.daemon = Some(child);
        Ok(())
    }

    /// Stops overlayd on host `index` with SIGTERM and waits for it.
    pub fn stop(&mut self, index: usize) -> Result<()> {
        let host = &mut self.hosts[index];
        let mut child = host.daemon.take().context("overlayd is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = child.wait()?;
        ensure!(
            status.success(),
            "overlayd on host {index} exited with {status}"
        );
        Ok(())
    }

    /// Whether overlayd on host `index` is still running.
    pub fn running(&mut self, index: usize) -> Result<bool> {
        match self.hosts[index].daemon.as_mut() {
            Some(child) => Ok(child.try_wait()?.is_none()),
            None => Ok(false),
        }
    }

    /// Host `index`'s overlayd log so far.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.hosts[index].log).unwrap_or_default()
    }

    /// Waits until host `index` has a `subnet.env`, and returns it.
    pub fn wait_subnet(&mut self, index: usize, patience: Duration) -> Result<SubnetEnv> {
        let started = Instant::now();
        loop {
            if let Ok(subnet) = SubnetEnv::read(&self.hosts[index].subnet_file) {
                return Ok(subnet);
            }
            if !self.running(index)? {
                bail!(
                    "overlayd on host {index} is not running; its log:\n{}",
                    self.log(index)
                );
            }
            if started.elapsed() > patience {
                bail!(
                    "host {index} has no subnet.env after {patience:?}; log:\n{}",
                    self.log(index)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Gives host `index` a container namespace: a bridge `cbr0` holding the host's
    /// gateway address, a veth into the container, which gets the next address and a
    /// default route through the bridge.
    pub fn attach_container(&mut self, index: usize) -> Result<SubnetEnv> {
        let subnet = self.wait_subnet(index, Duration::from_secs(30))?;
        let host = &mut self.hosts[index];
        let (netns, container) = (host.netns.as_str(), host.container_netns.as_str());
        let mtu = subnet.mtu.to_string();
        sh("ip", &["netns", "add", container])?;
        host.attached = true;
        sh(
            "ip",
            &[
                "-n", netns, "link", "add", "cbr0", "mtu", &mtu, "type", "bridge",
            ],
        )?;
        let gateway = format!("{}/{}", subnet.gateway, subnet.prefix_len);
        sh("ip", &["-n", netns, "addr", "add", &gateway, "dev", "cbr0"])?;
        sh("ip", &["-n", netns, "link", "set", "cbr0", "up"])?;
        sh(
            "ip",
            &[
                "-n", netns, "link", "add", "veth0", "mtu", &mtu, "type", "veth", "peer", "name",
                "eth0", "netns", container,
            ],
        )?;
        sh(
            "ip",
            &["-n", netns, "link", "set", "veth0", "master", "cbr0", "up"],
        )?;
        let address = format!("{}/{}", container_of(&subnet), subnet.prefix_len);
        sh("ip", &["-n", container, "link", "set", "lo", "up"])?;
        sh(
            "ip",
            &["-n", container, "addr", "add", &address, "dev", "eth0"],
        )?;
        sh("ip", &["-n", container, "link", "set", "eth0", "up"])?;
        sh(
            "ip",
            &[
                "-n",
                container,
                "route",
                "add",
                "default",
                "via",
                &subnet.gateway.to_string(),
            ],
        )?;
        Ok(subnet)
    }

    /// What host `index`'s VXLAN device holds.
    pub fn entries(&self, index: usize) -> Result<Entries> {
        entries_in(&self.hosts[index].netns)
    }

    /// Waits until every host's device reaches every other host (`subnets[i]` is host i's).
    pub fn wait_converged(&self, subnets: &[SubnetEnv], patience: Duration) -> Result<()> {
        for index in 0..subnets.len() {
            self.wait_entries(index, patience, |entries| {
                self.others(index, subnets)
                    .all(|(subnet, address)| entries.reaches(&subnet, address))
            })?;
        }
        Ok(())
    }

    /// Waits until every host reaches every other host the DirectRouting way: a route via
    /// its public IP through the underlay, and nothing for it on the device. (Sync deletes
    /// before it adds, so once the routes are there the device entries are already gone.)
    pub fn wait_converged_directly(&self, subnets: &[SubnetEnv], patience: Duration) -> Result<()> {
        for index in 0..subnets.len() {
            self.wait_underlay_routes(index, patience, |routes| {
                self.others(index, subnets).all(|(subnet, address)| {
                    let direct = format!("{subnet} via {address} ");
                    routes.iter().any(|line| line.starts_with(&direct))
                })
            })?;
            self.wait_entries(index, patience, |entries| {
                self.others(index, subnets)
                    .all(|(subnet, address)| entries.forgot(&subnet, address))
            })?;
        }
        Ok(())
    }

    /// The subnet and public IP of every host but `index` (`subnets[i]` is host i's).
    fn others<'a>(
        &'a self,
        index: usize,
        subnets: &'a [SubnetEnv],
    ) -> impl Iterator<Item = (String, Ipv4Addr)> + 'a {
        subnets
            .iter()
            .enumerate()
            .filter(move |(other, _)| *other != index)
            .map(|(other, subnet)| (subnet.subnet().to_string(), self.hosts[other].address))
    }

    /// Waits until `check` holds for host `index`'s entries; returns the last entries seen.
    pub fn wait_entries(
        &self,
        index: usize,
        patience: Duration,
        check: impl Fn(&Entries) -> bool,
    ) -> Result<Entries> {
        let what = format!("host {index}'s {DEVICE}");
        self.wait_for(index, patience, &what, || self.entries(index), check)
    }

    /// Waits until `check` holds for host `index`'s underlay routes; returns the last seen.
    pub fn wait_underlay_routes(
        &self,
        index: usize,
        patience: Duration,
        check: impl Fn(&[String]) -> bool,
    ) -> Result<Vec<String>> {
        let netns = &self.hosts[index].netns;
        let what = format!("host {index}'s underlay routes");
        self.wait_for(
            index,
            patience,
            &what,
            || underlay_routes_in(netns),
            |routes| check(routes),
        )
    }

    /// Polls `read` until `check` holds of what it read, for at most `patience`; `what`
    /// names it in the error, which carries host `index`'s overlayd log.
    fn wait_for<T: std::fmt::Debug>(
        &self,
        index: usize,
        patience: Duration,
        what: &str,
        read: impl Fn() -> Result<T>,
        check: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            let state = read()?;
            if check(&state) {
                return Ok(state);
            }
            if started.elapsed() > patience {
                bail!(
                    "{what} did not reach the expected state in {patience:?}: {state:#?}\nlog:\n{}",
                    self.log(index)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `ip netns exec <netns> <program> <args>`.
    pub fn exec(&self, netns: &str, program: &str, args: &[&str]) -> Result<String> {
        self.underlay.exec(netns, program, args)
    }
}

/// What the VXLAN device in network namespace `netns` holds.
pub fn entries_in(netns: &str) -> Result<Entries> {
    let lines = |text: String| -> Vec<String> { text.lines().map(str::to_owned).collect() };
    Ok(Entries {
        routes: lines(sh("ip", &["-n", netns, "route", "show", "dev", DEVICE])?),
        neighbours: lines(sh(
            "ip",
            &[
                "-n",
                netns,
                "neigh",
                "show",
                "dev",
                DEVICE,
                "nud",
                "permanent",
            ],
        )?),
        fdb: lines(sh("bridge", &["-n", netns, "fdb", "show", "dev", DEVICE])?)
            .into_iter()
            .filter(|line| line.contains(" dst "))
            .collect(),
    })
}

/// `ip route show dev eth0` lines in network namespace `netns`: the underlay's routes,
/// DirectRouting's among them.
pub fn underlay_routes_in(netns: &str) -> Result<Vec<String>> {
    let routes = sh("ip", &["-n", netns, "route", "show", "dev", "eth0"])?;
    Ok(routes.lines().map(str::to_owned).collect())
}

impl Drop for Bed {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut child) = host.daemon.take() {
                // Already dead is fine.
                let _ = child.kill();
                let _ = child.wait();
            }
            if host.attached {
                let _ = sh("ip", &["netns", "del", &host.container_netns]);
            }
        }
    }
}
