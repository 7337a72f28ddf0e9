//! A real etcd (Debian's etcd-server, 3.4), or the real `kvd` started with the same etcd
//! flags, as a one-member cluster on loopback ports with a temporary data directory, killed
//! when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;

use super::client::try_call;

/// A running etcd.
pub struct Etcd {
    pub addr: SocketAddr,
    child: Child,
    _data: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it answers; fails the test if etcd is not installed.
    pub async fn start() -> Self {
        Self::start_program("etcd", &[]).await
    }

    /// Starts this crate's `kvd` binary with the same flags and waits until it answers.
    pub async fn start_kvd() -> Self {
        Self::start_program(env!("CARGO_BIN_EXE_kvd"), &[]).await
    }

    /// Starts etcd (`"etcd"`) or kvd (`"kvd"`) with `extra` flags after the usual ones.
    pub async fn start_with(program: &str, extra: &[&str]) -> Self {
        let program = if program == "kvd" {
            env!("CARGO_BIN_EXE_kvd")
        } else {
            program
        };
        Self::start_program(program, extra).await
    }

    async fn start_program(program: &str, extra: &[&str]) -> Self {
        if program == "etcd" {
            installed("etcd");
        }
        let data = tempfile::tempdir().expect("data directory");
        let (client, peer) = (super::free_addr(), super::free_addr());
        let client_url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let child = Command::new(program)
            .args(["--name", "gateway-test", "--data-dir"])
            .arg(data.path().join("etcd"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("gateway-test={peer_url}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {program} ({error}); the side-by-side tests need etcd 3.4: \
                     apt-get install etcd-server"
                )
            });
        let etcd = Self {
            addr: client,
            child,
            _data: data,
        };
        etcd.wait_ready().await;
        etcd
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // A server still starting may accept a connection and then reset it.
            let status = try_call(self.addr, Method::POST, "/v3/maintenance/status", "{}").await;
            if let Ok(answer) = status {
                if answer.status.is_success() && answer.json()["leader"].is_string() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Already gone is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of etcd's `program` (`etcd` or `etcdctl`), installing Debian's etcd 3.4 first if
/// it is missing, as the rest of the suite installs what it needs (root on Debian).
pub fn installed(program: &str) -> std::path::PathBuf {
    tool(program, &["etcd-server", "etcd-client"])
}

/// The path of `program` in `/usr/bin`, installing Debian's `packages` first if it is
/// missing.
pub fn tool(program: &str, packages: &[&str]) -> std::path::PathBuf {
    let path = std::path::Path::new("/usr/bin").join(program);
    if !path.exists() {
        let status = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y"])
            .args(packages)
            .status();
        assert!(
            status.is_ok_and(|status| status.success()) && path.exists(),
            "{program} is not installed and could not be: apt-get install {}",
            packages.join(" ")
        );
    }
    path
}
