//! Real OpenSSH servers for the SSH tests and benchmark: `sshd` instances from Debian's
//! `openssh-server`, each on a loopback port of its own with host keys of its own, all
//! letting root in with the bed's client keys; and the inventory and `known_hosts` that
//! reach them.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sinew::setup::Tool;

/// Client key types the bed makes; each host accepts all of them.
pub const CLIENT_KEYS: [&str; 3] = ["ed25519", "ecdsa", "rsa"];

/// Installs OpenSSH's server and client once per process if they are missing.
pub fn installed() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let tools = [
        Tool {
            program: "sshd",
            package: "openssh-server",
        },
        Tool {
            program: "ssh-keygen",
            package: "openssh-client",
        },
    ];
    if let Err(error) = crate::tools_installed(&READY, &tools) {
        panic!("OpenSSH is needed (apt-get install openssh-server): {error}");
    }
}

/// The unprivileged account the bed's servers let in besides root, with sudo rights that
/// need its password every time.
#[derive(Debug)]
pub struct Account {
    /// Its user name.
    pub user: &'static str,
    /// Its password, which sudo asks for.
    pub password: &'static str,
}

/// Makes [`Account`] on this machine once per process (`useradd`, `chpasswd`, a sudoers
/// file), and returns it.
pub fn account() -> Result<&'static Account> {
    static ACCOUNT: OnceLock<Result<Account, String>> = OnceLock::new();
    ACCOUNT
        .get_or_init(|| make_account().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn make_account() -> Result<Account> {
    static SUDO: OnceLock<Result<(), String>> = OnceLock::new();
    let sudo = [Tool {
        program: "sudo",
        package: "sudo",
    }];
    crate::tools_installed(&SUDO, &sudo)?;
    let account = Account {
        user: "sinew-ssh",
        password: "sinew-ssh-test-password",
    };
    let exists = Command::new("id")
        .arg(account.user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        crate::underlay::sh("useradd", &["-m", "-s", "/bin/bash", account.user])?;
    }
    // sshd without PAM refuses a locked account, which a new one is until it has a password.
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .context("running chpasswd")?;
    if let Some(stdin) = chpasswd.stdin.as_mut() {
        std::io::Write::write_all(
            stdin,
            format!("{}:{}\n", account.user, account.password).as_bytes(),
        )?;
    }
    ensure!(chpasswd.wait()?.success(), "chpasswd failed");
    std::fs::write(
        format!("/etc/sudoers.d/{}", account.user),
        format!(
            "Defaults:{user} timestamp_timeout=0\n{user} ALL=(ALL:ALL) ALL\n",
            user = account.user
        ),
    )?;
    Ok(account)
}

/// One `sshd`.
#[derive(Debug)]
pub struct SshHost {
    /// Its name in the inventory.
    pub name: String,
    /// The address it listens on.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its ed25519 host key's public half, as `known_hosts` records it.
    pub host_key: String,
    config: PathBuf,
    child: Option<Child>,
}

impl SshHost {
    /// Kills the server and every process serving its connections (they are sessions of
    /// their own, so found by parentage): the host goes away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                for pid in std::iter::once(pid).chain(descendants(pid)) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let _ = child.wait();
        }
    }

    /// `[address]:port`, or `address` on port 22, as `known_hosts` names it.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }
}

/// Several `sshd`s and what reaches them; all stopped on drop.
#[derive(Debug)]
pub struct SshBed {
    /// The servers.
    pub hosts: Vec<SshHost>,
    /// Network namespaces made by [`SshBed::behind_jump`], deleted on drop.
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
}

impl SshBed {
    /// Starts `count` servers named `ssh-0`, `ssh-1`, ...
    pub fn start(count: usize) -> Result<Self> {
        installed();
        // sshd's privilege separation needs this directory; a fresh machine without a
        // running sshd may lack it.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let dir = tempfile::Builder::new()
            .prefix("sinew-ssh-bed-")
            .tempdir()
            .context("a directory for the SSH bed")?;
        // sshd reads authorized_keys as the user logging in, who may not be root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let mut authorized = String::new();
        for kind in CLIENT_KEYS {
            let key = dir.path().join(format!("id_{kind}"));
            keygen(kind, &key)?;
            authorized.push_str(&std::fs::read_to_string(key.with_extension("pub"))?);
        }
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, authorized)?;
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o644))?;
        let mut hosts = Vec::new();
        for index in 0..count {
            let place = Place {
                netns: None,
                address: "127.0.0.1".into(),
                port: crate::free_port()?,
            };
            hosts.push(start_host(dir.path(), &format!("ssh-{index}"), place)?);
        }
        let bed = Self {
            hosts,
            namespaces: Vec::new(),
            dir,
        };
        for host in &bed.hosts {
            wait_listening(&host.address, host.port)?;
        }
        Ok(bed)
    }

    /// Adds two hosts in a network namespace of their own: `gate`, on a veth whose other
    /// end is in this namespace, and `inner`, on the namespace's loopback, which only
    /// `gate` reaches. Returns their indices in [`SshBed::hosts`].
    pub fn behind_jump(&mut self, gate: &str, inner: &str) -> Result<(usize, usize)> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let netns = format!("sinew-sshj-{tag}");
        let (outer, peer) = (format!("sjo{tag}"), format!("sji{tag}"));
        let subnet = format!("10.251.{}", (std::process::id() % 60) * 4 + (n % 4));
        crate::underlay::sh("ip", &["netns", "add", &netns])?;
        self.namespaces.push(netns.clone());
        let ip = |args: &[&str]| crate::underlay::sh("ip", args).map(drop);
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &peer, "netns", &netns,
        ])?;
        ip(&["addr", "add", &format!("{subnet}.1/30"), "dev", &outer])?;
        ip(&["link", "set", &outer, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{subnet}.2/30"),
            "dev",
            &peer,
        ])?;
        ip(&["-n", &netns, "link", "set", &peer, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let gate_place = Place {
            netns: Some(netns.clone()),
            address: format!("{subnet}.2"),
            port: 22,
        };
        // A port free here is free in the new namespace too, and names `inner` in
        // known_hosts apart from the loopback hosts of this namespace.
        let inner_place = Place {
            netns: Some(netns),
            address: "127.0.0.1".into(),
            port: crate::free_port()?,
        };
        let gate = start_host(self.dir.path(), gate, gate_place)?;
        wait_listening(&gate.address, gate.port)?;
        self.hosts.push(gate);
        let inner = start_host(self.dir.path(), inner, inner_place)?;
        self.hosts.push(inner);
        Ok((self.hosts.len() - 2, self.hosts.len() - 1))
    }

    /// The bed's directory (keys, configs, `known_hosts`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client key of `kind` (one of [`CLIENT_KEYS`]).
    pub fn client_key(&self, kind: &str) -> PathBuf {
        self.dir.path().join(format!("id_{kind}"))
    }

    /// Writes a `known_hosts` file that records every host's key, and returns its path.
    pub fn known_hosts(&self) -> Result<PathBuf> {
        let path = self.dir.path().join("known_hosts");
        let mut text = String::new();
        for host in &self.hosts {
            writeln!(text, "{} {}", host.known_hosts_name(), host.host_key)?;
        }
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// A TOML inventory of every host, logging in as root with the ed25519 client key and
    /// checking keys against `known_hosts`; `extra` is appended (more settings, groups).
    pub fn inventory(&self, known_hosts: &Path, extra: &str) -> String {
        let mut text = format!(
            "[defaults]\nuser = \"root\"\nkey = \"{}\"\nknown_hosts = \"{}\"\n\n",
            self.client_key("ed25519").display(),
            known_hosts.display()
        );
        for host in &self.hosts {
            let _ = writeln!(
                text,
                "[hosts.{}]\naddress = \"{}\"\nport = {}\n",
                host.name, host.address, host.port
            );
        }
        text.push_str(extra);
        text
    }

    /// Replaces host `index`'s host key with a new one and restarts it on the same port.
    pub fn rekey(&mut self, index: usize) -> Result<()> {
        let host = &mut self.hosts[index];
        host.kill();
        let key = self.dir.path().join(format!("{}-host-key", host.name));
        std::fs::remove_file(&key)?;
        std::fs::remove_file(key.with_extension("pub"))?;
        keygen("ed25519", &key)?;
        host.host_key = public_key(&key)?;
        host.child = Some(spawn_sshd(&host.config, None)?);
        wait_listening(&host.address, host.port)
    }
}

impl Drop for SshBed {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.kill();
        }
        for netns in &self.namespaces {
            let _ = crate::underlay::sh("ip", &["netns", "del", netns]);
        }
    }
}

/// Where an `sshd` listens.
struct Place {
    netns: Option<String>,
    address: String,
    port: u16,
}

fn start_host(dir: &Path, name: &str, place: Place) -> Result<SshHost> {
    let Place {
        netns,
        address,
        port,
    } = place;
    let key = dir.join(format!("{name}-host-key"));
    keygen("ed25519", &key)?;
    let config = dir.join(format!("{name}-sshd_config"));
    std::fs::write(
        &config,
        format!(
            "Port {port}\n\
             ListenAddress {address}\n\
             HostKey {key}\n\
             PidFile {dir}/{name}.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowTcpForwarding yes\n\
             MaxSessions 64\n\
             MaxStartups 64\n\
             LogLevel ERROR\n",
            key = key.display(),
            dir = dir.display(),
        ),
    )?;
    let child = spawn_sshd(&config, netns.as_deref())?;
    Ok(SshHost {
        name: name.into(),
        address,
        port,
        host_key: public_key(&key)?,
        config,
        child: Some(child),
    })
}

/// `sshd -D` (in `netns`) in a process group of its own, which its connections'
/// processes join.
fn spawn_sshd(config: &Path, netns: Option<&str>) -> Result<Child> {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, "/usr/sbin/sshd"]);
            command
        }
        None => Command::new("/usr/sbin/sshd"),
    };
    let log = std::fs::File::create(config.with_extension("log")).context("sshd's log")?;
    command
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting sshd")
}

/// Every process below `root`, read from `/proc`.
fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.split_off(1)
}

fn keygen(kind: &str, path: &Path) -> Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "sinew-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen")?;
    ensure!(status.success(), "ssh-keygen -t {kind} failed: {status}");
    Ok(())
}

/// `TYPE BASE64` of a key's `.pub` file, without its comment.
fn public_key(private: &Path) -> Result<String> {
    let text = std::fs::read_to_string(private.with_extension("pub"))?;
    Ok(text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

fn wait_listening(address: &str, port: u16) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect((address, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("sshd on {address}:{port} did not listen within 10s")
}
