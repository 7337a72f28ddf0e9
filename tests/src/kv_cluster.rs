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
        installed();
        let members = (0..size)
            .map(|index| {
                Ok(Member {
                    name: format!("{}{index}", server.name()),
                    client_url: format!("http://{host}:{}", free_port()?),
                    peer_url: format!("http://{host}:{}", free_port()?),
                    data_dir: dir.join(format!("{}{index}", server.name())),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect::<Vec<_>>()
            .join(",");
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
        let log = std::fs::File::create(format!("{}.log", member.data_dir.display()))?;
        let child = Command::new(self.server.program())
            .args(["--name", &member.name, "--enable-v2"])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &member.client_url])
            .args(["--advertise-client-urls", &member.client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--initial-advertise-peer-urls", &member.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "sinew-test"])
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

    /// Sends SIGTERM to member `index` and waits for it to exit; returns its exit status.
    pub fn terminate(&mut self, index: usize) -> Result<std::process::ExitStatus> {
        let mut child = self.children[index]
            .take()
            .context("the member is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
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
                    bail!(
                        "{} member {} not healthy within {patience:?}: {error}",
                        self.server.name(),
                        member.name,
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
