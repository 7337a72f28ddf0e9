//! Starts `sinew-init agent` on a free loopback port with a fresh secret and state directory.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sinew_proto::{AgentClient, ExecRequest, Secret, ServiceStatus};
use tempfile::TempDir;

pub struct TestAgent {
    child: Child,
    pub addr: SocketAddr,
    pub secret: Secret,
    pub dir: TempDir,
}

impl TestAgent {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory is created");
        let secret = Secret::generate().expect("a secret is generated");
        let key = dir.path().join("agent.key");
        secret.save(&key).expect("the secret file is written");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sinew-init"))
            .arg("agent")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--secret-file")
            .arg(&key)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(
                File::create(dir.path().join("agent.stderr"))
                    .expect("the agent stderr file is created"),
            )
            .spawn()
            .expect("the agent binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("the agent stdout is piped"))
            .read_line(&mut line)
            .expect("the agent prints its first line");
        let addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .parse()
            .expect("the agent prints a socket address");
        Self {
            child,
            addr,
            secret,
            dir,
        }
    }

    pub async fn client(&self) -> AgentClient {
        AgentClient::connect(self.addr, &self.secret, Duration::from_secs(5))
            .await
            .expect("the client connects to the agent")
    }

    /// Polls a service's last lines until `check` accepts them or `limit` passes.
    pub async fn wait_for_logs(
        &self,
        service: &str,
        limit: Duration,
        check: impl Fn(&[String]) -> bool,
    ) -> bool {
        let mut client = self.client().await;
        let deadline = Instant::now() + limit;
        loop {
            if check(
                &client
                    .service_logs(service, 1000)
                    .await
                    .expect("service logs are fetched"),
            ) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a service's status until `check` accepts it or `limit` passes.
    pub async fn wait_for_status(
        &self,
        service: &str,
        limit: Duration,
        check: impl Fn(&ServiceStatus) -> bool,
    ) -> bool {
        let mut client = self.client().await;
        let deadline = Instant::now() + limit;
        loop {
            if check(
                &client
                    .service_status(service)
                    .await
                    .expect("service status is fetched"),
            ) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn path_str(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("the temporary path is UTF-8")
            .to_owned()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id().cast_signed()), signal).expect("the agent is signalled");
    }

    /// Waits for the agent to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("the agent's status is polled") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("agent.stderr")).unwrap_or_default()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(
                Pid::from_raw(self.child.id().cast_signed()),
                Signal::SIGTERM,
            );
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Asserts that `client`'s connection still serves requests: `true` runs and succeeds.
pub async fn assert_still_serves(client: &mut AgentClient) {
    let output = client
        .exec_output(&ExecRequest::new(["true"]))
        .await
        .expect("`true` is executed");
    assert!(
        output.status.success(),
        "`true` failed: {:?}",
        output.status
    );
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat_state(&stat) != Some('Z'))
        .unwrap_or(false)
}

/// Zombie children of `parent`.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            stat_state(&stat) == Some('Z') && stat_ppid(&stat) == Some(parent)
        })
        .collect()
}

fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn stat_state(stat: &str) -> Option<char> {
    stat_fields(stat)?.first()?.chars().next()
}

fn stat_ppid(stat: &str) -> Option<u32> {
    stat_fields(stat)?.get(1)?.parse().ok()
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn write_executable(path: &Path, contents: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("the executable is written");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("the executable's mode is set");
}
