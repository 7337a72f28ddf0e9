//! KV clusters on loopback, started the same way whether the server is real etcd (Debian's
//! `etcd-server`, 3.4) or kvd, since kvd takes etcd's flags: for side-by-side checks, crash
//! tests and the KV benchmark. Each member has its own data directory; all are killed on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew::setup::Tool;
use sinew_proto::kv::KvClient;

use crate::free_port;

/// Which server a cluster runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// Debian's etcd.
    Etcd,
    /// kvd, built from this workspace.
    Kvd(PathBuf),
}

impl Server {
    /// kvd, built now (once per process and profile) from this workspace.
    pub fn kvd(release: bool) -> Result<Self> {
        Ok(Self::Kvd(crate::host_bins(release)?.join("kvd")))
    }

    fn program(&self) -> &std::ffi::OsStr {
        match self {
            Self::Etcd => "etcd".as_ref(),
            Self::Kvd(path) => path.as_os_str(),
        }
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Kvd(_) => "kvd",
        }
    }
}

/// Installs etcd and etcdctl once per process if they are missing (as root on Debian), and
/// panics with the setup's error otherwise.
pub fn installed() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let tools = [
        Tool {
            program: "etcd",
            package: "etcd-server",
        },
        Tool {
            program: "etcdctl",
            package: "etcd-client",
        },
    ];
    if let Err(error) = crate::tools_installed(&READY, &tools) {
        panic!("etcd is needed (apt-get install etcd-server etcd-client): {error}");
    }
}

/// One etcd member's settings.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its client URL.
    pub client_url: String,
    /// Its peer URL.
    pub peer_url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The network namespace it runs in (`None`: this process's).
    pub netns: Option<String>,
    /// How far its monotonic and boot-time clocks run ahead of the machine's, in seconds:
    /// set when it starts in a time namespace of its own (`0`: the machine's clocks).
    pub clock_offset: i64,
    /// Whether it joined a running cluster (`--initial-cluster-state existing`) rather
    /// than forming it.
    pub joined: bool,
}

/// Where a member runs: a network namespace (`None`: this process's) and the address it
/// listens on there.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The namespace.
    pub netns: Option<String>,
    /// The address.
    pub address: Ipv4Addr,
}

/// A running cluster (on loopback unless started elsewhere); every member is killed on drop.
#[derive(Debug)]
pub struct KvCluster {
    /// The server it runs.
    pub server: Server,
    /// The members.
    pub members: Vec<Member>,
    children: Vec<Option<Child>>,
    initial_cluster: String,
}

impl KvCluster {
    /// Starts `size` members of `server` under `dir` (both fsync every write), with the v2
    /// API enabled, and waits until the cluster answers.
    pub fn start(server: Server, dir: &Path, size: usize) -> Result<Self> {
        Self::start_on(server, dir, size, Ipv4Addr::LOCALHOST)
    }

    /// As [`KvCluster::start`], with every member listening on `host` instead of
    /// loopback (for clients in network namespaces that reach the root namespace over a
    /// bridge holding `host`).
    pub fn start_on(server: Server, dir: &Path, size: usize, host: Ipv4Addr) -> Result<Self> {
        let placements = (0..size)
            .map(|_| Placement {
                netns: None,
                address: host,
            })
            .collect::<Vec<_>>();
        Self::start_placed(server, dir, &placements)
    }

    /// As [`KvCluster::start`], with one member per placement: members in namespaces of
    /// their own listen on etcd's standard ports there.
    pub fn start_placed(server: Server, dir: &Path, placements: &[Placement]) -> Result<Self> {
        installed();
        let members = placements
            .iter()
            .enumerate()
            .map(|(index, placement)| {
                let (client, peer) = match placement.netns {
                    Some(_) => (2379, 2380),
                    None => (free_port()?, free_port()?),
                };
                let host = placement.address;
                Ok(Member {
                    name: format!("{}{index}", server.name()),
                    client_url: format!("http://{host}:{client}"),
                    peer_url: format!("http://{host}:{peer}"),
                    data_dir: dir.join(format!("{}{index}", server.name())),
                    netns: placement.netns.clone(),
                    clock_offset: 0,
                    joined: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let size = members.len();
        let mut cluster = Self {
            server,
            children: (0..size).map(|_| None).collect(),
            members,
            initial_cluster,
        };
        for index in 0..size {
            cluster.spawn(index)?;
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| member.client_url.clone())
            .collect()
    }

    fn spawn(&mut self, index: usize) -> Result<()> {
        let member = &self.members[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{}.log", member.data_dir.display()))?;
        // A namespace is entered, and a time namespace made, by tools that then exec the
        // server, so the child's pid stays the server's (for kill, stop and continue).
        let offset = member.clock_offset.to_string();
        let mut argv: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(netns) = &member.netns {
            argv.extend(["ip", "netns", "exec", netns.as_str()].map(std::ffi::OsStr::new));
        }
        if member.clock_offset != 0 {
            argv.extend(
                [
                    "unshare",
                    "--time",
                    "--monotonic",
                    &offset,
                    "--boottime",
                    &offset,
                ]
                .map(std::ffi::OsStr::new),
            );
        }
        argv.push(self.server.program());
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]);
        let child = command
            .args(["--name", &member.name, "--enable-v2"])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &member.client_url])
            .args(["--advertise-client-urls", &member.client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--initial-advertise-peer-urls", &member.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "sinew-test"])
            .args([
                "--initial-cluster-state",
                if member.joined { "existing" } else { "new" },
            ])
            .args(["--log-level", "warn", "--logger", "zap"])
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.server.name()))?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// Kills member `index` with SIGKILL.
    pub fn kill(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.children[index].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts member `index` again on its data directory.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        self.kill(index)?;
        self.spawn(index)
    }

    /// Starts member `index` again on its data directory with its monotonic and boot-time
    /// clocks `offset` seconds ahead of the machine's (a time namespace: the clock jump a
    /// restart on another machine, or after a suspend, brings).
    pub fn restart_with_clock(&mut self, index: usize, offset: i64) -> Result<()> {
        self.kill(index)?;
        self.members[index].clock_offset = offset;
        self.spawn(index)
    }

    /// Starts member `index` afresh, with an empty data directory, to join the running
    /// cluster (which must have added it first, as etcd requires).
    pub fn rejoin(&mut self, index: usize) -> Result<()> {
        self.kill(index)?;
        let member = &mut self.members[index];
        if member.data_dir.exists() {
            std::fs::remove_dir_all(&member.data_dir)
                .with_context(|| format!("removing {}", member.data_dir.display()))?;
        }
        member.joined = true;
        self.spawn(index)
    }

    /// Whether member `index` is running (it has not been killed or terminated).
    pub fn is_running(&self, index: usize) -> bool {
        self.children[index].is_some()
    }

    /// Stops member `index` with SIGSTOP (`resume` continues it).
    pub fn pause(&self, index: usize) -> Result<()> {
        self.signal(index, nix::sys::signal::Signal::SIGSTOP)
    }

    /// Continues member `index` after [`KvCluster::pause`].
    pub fn resume(&self, index: usize) -> Result<()> {
        self.signal(index, nix::sys::signal::Signal::SIGCONT)
    }

    fn signal(&self, index: usize, signal: nix::sys::signal::Signal) -> Result<()> {
        let child = self.children[index]
            .as_ref()
            .context("the member is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, signal)?;
        Ok(())
    }

    /// Sends SIGTERM to member `index` and waits for it to exit; returns its exit status.
    pub fn terminate(&mut self, index: usize) -> Result<std::process::ExitStatus> {
        self.signal(index, nix::sys::signal::Signal::SIGTERM)?;
        let mut child = self.children[index]
            .take()
            .context("the member is not running")?;
        Ok(child.wait()?)
    }

    /// Waits until every running member serves a linearizable read.
    pub fn wait_healthy(&self, patience: Duration) -> Result<()> {
        let started = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for (member, child) in self.members.iter().zip(&self.children) {
            if child.is_none() {
                continue;
            }
            let client =
                KvClient::with_timeout([member.client_url.clone()], Duration::from_secs(2))?;
            loop {
                let answer = runtime.block_on(client.get("health"));
                let Err(error) = answer else { break };
                if started.elapsed() > patience {
                    let log = format!("{}.log", member.data_dir.display());
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(10).collect();
                    bail!(
                        "{} member {} not healthy within {patience:?}: {error}; the end of {log}:\n{}",
                        self.server.name(),
                        member.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

impl Drop for KvCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            // Already dead is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
