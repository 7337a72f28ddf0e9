//! Real etcd (Debian's `etcd-server`, 3.4) on loopback, for side-by-side checks and the KV
//! benchmark: one member or a cluster, each with its own data directory, killed on drop.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew::setup::{ensure_tools, Tool};

/// Installs etcd and etcdctl once per process if they are missing (as root on Debian), and
/// panics with the setup's error otherwise.
pub fn installed() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
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
        ensure_tools(&tools, false)
            .map(|_| ())
            .map_err(|error| format!("{error}"))
    });
    if let Err(error) = ready {
        panic!("etcd is needed (apt-get install etcd-server etcd-client): {error}");
    }
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
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

/// A running etcd cluster on loopback; every member is killed on drop.
#[derive(Debug)]
pub struct Etcd {
    /// The members.
    pub members: Vec<Member>,
    children: Vec<Option<Child>>,
    initial_cluster: String,
}

impl Etcd {
    /// Starts `size` members under `dir` (fsync on, as etcd always does), with the v2 API
    /// enabled, and waits until the cluster answers.
    pub fn start(dir: &Path, size: usize) -> Result<Self> {
        installed();
        let members = (0..size)
            .map(|index| {
                Ok(Member {
                    name: format!("etcd{index}"),
                    client_url: format!("http://127.0.0.1:{}", free_port()?),
                    peer_url: format!("http://127.0.0.1:{}", free_port()?),
                    data_dir: dir.join(format!("etcd{index}")),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Self {
            children: (0..size).map(|_| None).collect(),
            members,
            initial_cluster,
        };
        for index in 0..size {
            etcd.spawn(index)?;
        }
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
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
        let child = Command::new("etcd")
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
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
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

    /// Waits until every running member answers `/health` with a leader.
    pub fn wait_healthy(&self, patience: Duration) -> Result<()> {
        let started = Instant::now();
        for (member, child) in self.members.iter().zip(&self.children) {
            if child.is_none() {
                continue;
            }
            loop {
                let health = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &member.client_url, "endpoint", "health"])
                    .output()?;
                if health.status.success() {
                    break;
                }
                if started.elapsed() > patience {
                    bail!(
                        "etcd member {} not healthy within {patience:?}: {}",
                        member.name,
                        String::from_utf8_lossy(&health.stderr)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            // Already dead is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
