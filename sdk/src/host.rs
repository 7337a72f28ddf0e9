//! A machine as a playbook sees it: a name, an architecture, and what can be done there
//! (exec, put, get, facts; services on guests), each call a typed outcome. A guest is
//! reached through its agent, an existing machine over SSH.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sinew_proto::{
    AgentClient, ClientError, ExecRequest, ExitStatus, Facts, OutputStream, Secret, ServiceChange,
    ServiceSpec, ServiceStatus,
};
use sinew_vm::{Accel, Arch};
use tokio::sync::Mutex;

use crate::build::Artifact;
use crate::outcome::{stderr_tail, Outcome, Status};
use crate::run::Ctx;
use crate::ssh::{Connection, RemoteAgent, RemoteHost, SshError, Sudo, Trust, Written};

/// How long one agent connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of a host operation; each names the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The agent could not be reached or refused the request.
    #[error("{host}: {source}")]
    Agent {
        /// The host.
        host: String,
        /// What the agent client reported.
        #[source]
        source: ClientError,
    },
    /// An artifact of another architecture was about to be shipped.
    #[error("{host} is {host_arch}, but {artifact} is built for {artifact_arch} ({path})")]
    WrongArch {
        /// The host.
        host: String,
        /// The host's machine.
        host_arch: Arch,
        /// The artifact's name.
        artifact: String,
        /// The artifact's machine.
        artifact_arch: Arch,
        /// Where the artifact is.
        path: PathBuf,
    },
    /// A command ran and exited unsuccessfully.
    #[error("{host}: `{command}` {status}{}", stderr_tail(.stderr))]
    CommandFailed {
        /// The host.
        host: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// The SSH connection failed, or a step over it.
    #[error("{host}: {source}")]
    Ssh {
        /// The host.
        host: String,
        /// What failed.
        #[source]
        source: SshError,
    },
    /// A guest was asked to run something as a user other than root.
    #[error("{host}: a guest's agent runs everything as root; becoming {user} is not supported")]
    GuestUser {
        /// The host.
        host: String,
        /// The user asked for.
        user: String,
    },
    /// A call that needs sinew's agent, made to a remote host, which has none.
    #[error("{host} is reached over SSH and runs no sinew agent, which services need (Host::bootstrap_agent starts one)")]
    NoAgent {
        /// The host.
        host: String,
    },
    /// A local file to send could not be read.
    #[error("reading {path} to send to {host}: {source}")]
    Local {
        /// The host.
        host: String,
        /// The local file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A machine a playbook drives: a booted guest (or, in a dry run, a planned one), or an
/// existing machine reached over SSH ([`Run::connect`](crate::Run::connect)). Cheap to
/// clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
    /// The user commands, puts and gets run as, through sudo ([`Host::sudo`]).
    sudo: Option<Arc<str>>,
}

struct HostInner {
    ctx: Arc<Ctx>,
    name: String,
    arch: Arch,
    data_ip: Ipv4Addr,
    link: Link,
}

/// How a host is reached.
enum Link {
    /// A guest's agent, through its control NIC's forwarded port.
    Guest(Box<Guest>),
    /// An existing machine's SSH server.
    Ssh(Box<Remote>),
}

struct Guest {
    agent: SocketAddr,
    secret: Secret,
    console_log: PathBuf,
    booted: Option<Booted>,
    published: BTreeMap<u16, SocketAddr>,
    client: Mutex<Option<AgentClient>>,
}

struct Remote {
    spec: RemoteHost,
    connection: Connection,
    /// sinew's agent there, once [`Host::bootstrap_agent`] started it.
    agent: std::sync::OnceLock<RemoteAgent>,
}

impl Drop for HostInner {
    /// A remote agent's connections are russh channel streams, which may only be dropped
    /// inside the runtime; the rest of the connection goes with them.
    fn drop(&mut self) {
        if let Link::Ssh(remote) = &mut self.link {
            if let Some(agent) = remote.agent.take() {
                let _inside = self.ctx.runtime.enter();
                drop(agent);
            }
        }
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Host");
        debug
            .field("name", &self.inner.name)
            .field("arch", &self.inner.arch);
        match &self.inner.link {
            Link::Guest(guest) => debug.field("agent", &guest.agent),
            Link::Ssh(remote) => debug.field("ssh", &remote.spec.ssh),
        };
        debug.finish_non_exhaustive()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.name)
    }
}

/// Where a host is and how to talk to it; what a lab knows after booting one.
#[derive(Debug, Clone)]
pub(crate) struct HostAddress {
    pub(crate) name: String,
    pub(crate) arch: Arch,
    pub(crate) data_ip: Ipv4Addr,
    pub(crate) agent: SocketAddr,
    pub(crate) secret: Secret,
    pub(crate) console_log: PathBuf,
    pub(crate) booted: Option<Booted>,
    pub(crate) published: BTreeMap<u16, SocketAddr>,
}

/// How a guest booted.
#[derive(Debug, Clone)]
pub struct Booted {
    /// Acceleration it runs under.
    pub accel: Accel,
    /// Spawn to ready agent.
    pub ready_after: Duration,
    /// True when KVM hung and it was restarted under TCG.
    pub fell_back: bool,
}

impl std::fmt::Display for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accel = match self.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        };
        let fallback = if self.fell_back {
            " (kvm hung, fell back)"
        } else {
            ""
        };
        write!(
            f,
            "{accel}{fallback}, agent ready after {:.2}s",
            self.ready_after.as_secs_f64()
        )
    }
}

impl Host {
    pub(crate) fn new(ctx: Arc<Ctx>, address: HostAddress, client: Option<AgentClient>) -> Self {
        Self {
            inner: Arc::new(HostInner {
                ctx,
                name: address.name,
                arch: address.arch,
                data_ip: address.data_ip,
                link: Link::Guest(Box::new(Guest {
                    agent: address.agent,
                    secret: address.secret,
                    console_log: address.console_log,
                    booted: address.booted,
                    published: address.published,
                    client: Mutex::new(client),
                })),
            }),
            sudo: None,
        }
    }

    /// Connects to `spec` over SSH and learns its architecture (`uname -m`).
    pub(crate) fn connect(ctx: Arc<Ctx>, spec: RemoteHost) -> Result<Self, HostError> {
        let wrap = |source| HostError::Ssh {
            host: spec.name.clone(),
            source,
        };
        let (connection, machine) = ctx
            .runtime
            .block_on(async {
                let connection = Connection::open(&spec, !ctx.dry_run()).await?;
                let machine = connection.machine().await?;
                Ok((connection, machine))
            })
            .map_err(wrap)?;
        let arch = machine
            .parse::<Arch>()
            .map_err(|_| wrap(SshError::Machine(machine)))?;
        let data_ip = data_ip(&spec);
        Ok(Self {
            inner: Arc::new(HostInner {
                ctx,
                name: spec.name.clone(),
                arch,
                data_ip,
                link: Link::Ssh(Box::new(Remote {
                    spec,
                    connection,
                    agent: std::sync::OnceLock::new(),
                })),
            }),
            sudo: None,
        })
    }

    /// This host, with its commands, puts and gets run as root through sudo (Ansible's
    /// `become`). Sudo's password, when it asks for one, is the run's
    /// ([`crate::Options::become_password`]), sent to sudo's prompt, never on a command
    /// line. A guest's agent runs everything as root already.
    pub fn sudo(&self) -> Host {
        self.sudo_as("root")
    }

    /// Like [`Host::sudo`], becoming `user`.
    pub fn sudo_as(&self, user: &str) -> Host {
        Host {
            inner: self.inner.clone(),
            sudo: Some(user.into()),
        }
    }

    /// Whether calls go to an agent: a guest's, or one started on a remote host (except
    /// through sudo, which runs over SSH).
    fn via_agent(&self) -> bool {
        match &self.inner.link {
            Link::Guest(_) => true,
            Link::Ssh(remote) => remote.agent.get().is_some() && self.sudo.is_none(),
        }
    }

    /// Ships sinew's agent (`init`, the `sinew-init` build for this host's machine) to a
    /// remote host over SSH and starts it on the host's loopback with a fresh secret; from
    /// then on exec, put, get, facts and services go to the agent through an SSH channel
    /// (calls through [`Host::sudo`] stay on SSH). It stops and its files go when the host
    /// handle is dropped, the playbook ends or the connection is lost. A guest already has
    /// its agent: nothing to do there.
    pub fn bootstrap_agent(&self, init: &Artifact) -> Result<AgentStarted, HostError> {
        let Some(remote) = self.remote() else {
            return Ok(AgentStarted {
                place: "a guest's own agent".into(),
                status: Status::Ok,
            });
        };
        if let Some(agent) = remote.agent.get() {
            return Ok(AgentStarted::at(agent, Status::Ok));
        }
        self.check_arch(init)?;
        if self.dry_run() {
            return Ok(AgentStarted {
                place: "would start sinew's agent over SSH".into(),
                status: Status::Planned,
            });
        }
        let binary = std::fs::read(&init.path).map_err(|source| HostError::Local {
            host: self.inner.name.clone(),
            path: init.path.clone(),
            source,
        })?;
        let agent = self.over_ssh(async |ssh| {
            let agent = ssh.start_agent(&binary, &init.sha256).await?;
            let client = ssh.agent_client(&agent).await?;
            *agent.client.lock().await = Some(client);
            Ok(agent)
        })?;
        let started = AgentStarted::at(&agent, Status::Changed);
        if let Err(agent) = remote.agent.set(agent) {
            // Another thread started one meanwhile: this one goes.
            self.inner.ctx.runtime.block_on(agent.stop());
        }
        Ok(started)
    }

    /// Stops a remote host's agent and removes its files, waiting until they are gone;
    /// calls go over SSH again. `false` when no agent was running.
    pub fn stop_agent(&self) -> bool {
        let Some(agent) = self.remote().and_then(|r| r.agent.get()) else {
            return false;
        };
        self.inner.ctx.runtime.block_on(agent.stop());
        true
    }

    /// What sudo needs for this host's calls: nothing for a guest (whose agent is root)
    /// or without [`Host::sudo`].
    fn sudo_spec(&self) -> Result<Option<Sudo>, HostError> {
        let Some(user) = &self.sudo else {
            return Ok(None);
        };
        match &self.inner.link {
            Link::Guest(_) if &**user == "root" => Ok(None),
            Link::Guest(_) => Err(HostError::GuestUser {
                host: self.inner.name.clone(),
                user: user.to_string(),
            }),
            Link::Ssh(_) => Ok(Some(Sudo {
                user: user.to_string(),
                password: self
                    .inner
                    .ctx
                    .options
                    .become_password
                    .as_ref()
                    .map(|p| p.expose().to_string()),
            })),
        }
    }

    /// The host's name (a guest's hostname; an inventory's name for its host).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The host's machine architecture.
    pub fn arch(&self) -> Arch {
        self.inner.arch
    }

    /// The address other hosts reach it at: a guest's on the lab's private data-plane
    /// segment; a remote host's variable `data_ip`, else its IPv4 SSH address (0.0.0.0
    /// when it has neither).
    pub fn data_ip(&self) -> Ipv4Addr {
        self.inner.data_ip
    }

    /// Takes `client`, connected to the agent of a new boot, for the calls from now on.
    pub(crate) fn reconnected(&self, client: AgentClient) {
        if let Some(guest) = self.guest() {
            *self.inner.ctx.runtime.block_on(guest.client.lock()) = Some(client);
        }
    }

    fn guest(&self) -> Option<&Guest> {
        match &self.inner.link {
            Link::Guest(guest) => Some(guest),
            Link::Ssh(_) => None,
        }
    }

    fn remote(&self) -> Option<&Remote> {
        match &self.inner.link {
            Link::Guest(_) => None,
            Link::Ssh(remote) => Some(remote),
        }
    }

    /// A guest's serial console log; `None` for a remote host.
    pub fn console_log(&self) -> Option<&Path> {
        self.guest().map(|g| g.console_log.as_path())
    }

    /// How a guest booted (accelerator, spawn-to-ready time); `None` in a dry run and for
    /// a remote host.
    pub fn booted(&self) -> Option<&Booted> {
        self.guest().and_then(|g| g.booted.as_ref())
    }

    /// Where a guest's agent listens (127.0.0.1, forwarded into the guest); `None` for a
    /// remote host.
    pub fn agent_address(&self) -> Option<SocketAddr> {
        self.guest().map(|g| g.agent)
    }

    /// Where the guest's TCP `port` is reached from this machine (127.0.0.1), if the lab
    /// published it ([`crate::MachineSpec::publish`]); `None` otherwise, in a dry run and
    /// for a remote host.
    pub fn published(&self, port: u16) -> Option<SocketAddr> {
        self.guest().and_then(|g| g.published.get(&port).copied())
    }

    /// A remote host's inventory entry (address, user, groups, variables); `None` for a
    /// guest.
    pub fn inventory(&self) -> Option<&RemoteHost> {
        self.remote().map(|r| &r.spec)
    }

    fn dry_run(&self) -> bool {
        self.inner.ctx.dry_run()
    }

    /// Runs `argv` and returns its output; a non-zero exit is an error carrying stderr.
    /// In a dry run nothing runs and the outcome is `plan`.
    /// With `-v`, output is streamed line by line as it comes.
    pub fn exec(&self, argv: &[&str]) -> Result<Exec, HostError> {
        let exec = self.try_exec(argv)?;
        if exec.exit.is_none() || exec.success() {
            Ok(exec)
        } else {
            Err(HostError::CommandFailed {
                host: self.inner.name.clone(),
                command: argv.join(" "),
                status: exec.status_text(),
                stderr: String::from_utf8_lossy(&exec.stderr).into_owned(),
            })
        }
    }

    /// Runs `argv` and returns its output and exit status, whatever the status.
    pub fn try_exec(&self, argv: &[&str]) -> Result<Exec, HostError> {
        if self.dry_run() {
            return Ok(Exec::planned(argv));
        }
        let mut stream = LineEcho::new(self.inner.ctx.clone(), &self.inner.name);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut output = |kind, bytes: &[u8]| {
            stream.push(kind, bytes);
            match kind {
                OutputStream::Stdout => stdout.extend_from_slice(bytes),
                OutputStream::Stderr => stderr.extend_from_slice(bytes),
            }
        };
        let sudo = self.sudo_spec()?;
        let exit = if self.via_agent() {
            let request = ExecRequest::new(argv.iter().copied());
            self.with_client(async |client| client.exec(&request, &mut output).await)?
        } else {
            self.over_ssh(async |ssh| ssh.exec(argv, sudo.as_ref(), &mut output).await)?
        };
        stream.flush();
        Ok(Exec {
            command: argv.join(" "),
            exit: Some(exit),
            stdout,
            stderr,
        })
    }

    /// Runs `argv` on a connection (a guest) or channel (SSH) of its own, calling `output`
    /// with each chunk of its stdout and stderr as it comes, and returns its exit status.
    /// Other requests to the host go on meanwhile (a long command, and the one that stops
    /// it). Nothing runs in a dry run.
    pub fn exec_streamed(
        &self,
        argv: &[&str],
        mut output: impl FnMut(OutputStream, &[u8]),
    ) -> Result<Option<ExitStatus>, HostError> {
        if self.dry_run() {
            return Ok(None);
        }
        let inner = &self.inner;
        let sudo = self.sudo_spec()?;
        let guest = match &inner.link {
            Link::Guest(guest) => guest,
            Link::Ssh(_) => {
                return self
                    .over_ssh(async |ssh| ssh.exec(argv, sudo.as_ref(), &mut output).await)
                    .map(Some)
            }
        };
        let wrap = |source| HostError::Agent {
            host: inner.name.clone(),
            source,
        };
        let request = ExecRequest::new(argv.iter().copied());
        inner.ctx.runtime.block_on(async {
            let mut client = AgentClient::connect(guest.agent, &guest.secret, CONNECT_TIMEOUT)
                .await
                .map_err(wrap)?;
            client
                .exec(&request, |kind, bytes| output(kind, bytes))
                .await
                .map(Some)
                .map_err(wrap)
        })
    }

    /// Writes `data` to `path` with `mode`. When the file already has that content and
    /// mode nothing is sent and the outcome is `ok`.
    pub fn put(&self, data: &[u8], path: &str, mode: u32) -> Result<Put, HostError> {
        let sha256 = hex::encode(Sha256::digest(data));
        let put = |status| Put {
            path: path.into(),
            sha256: sha256.clone(),
            size: data.len() as u64,
            status,
        };
        if self.dry_run() {
            return Ok(put(Status::Planned));
        }
        let sudo = self.sudo_spec()?;
        let changed = if self.via_agent() {
            self.with_client(async |client| client.put(path, mode, data).await)?
                .changed
        } else {
            self.over_ssh(async |ssh| ssh.put(path, mode, data, &sha256, sudo.as_ref()).await)?
                == Written::Changed
        };
        Ok(put(Status::changed_if(changed)))
    }

    /// Sends the local file `local` to `path` with `mode` (see [`Host::put`]).
    pub fn put_file(&self, local: &Path, path: &str, mode: u32) -> Result<Put, HostError> {
        let data = std::fs::read(local).map_err(|source| HostError::Local {
            host: self.inner.name.clone(),
            path: local.into(),
            source,
        })?;
        self.put(&data, path, mode)
    }

    /// Installs an executable artifact at `path` (mode 0755), refusing one built for
    /// another architecture before anything is sent.
    pub fn install(&self, artifact: &Artifact, path: &str) -> Result<Put, HostError> {
        self.check_arch(artifact)?;
        if self.dry_run() {
            let sha256 = artifact.sha256.clone();
            return Ok(Put {
                path: path.into(),
                sha256,
                size: artifact.size,
                status: Status::Planned,
            });
        }
        self.put_file(&artifact.path, path, 0o755)
    }

    /// Refuses an artifact built for another machine than the host's.
    fn check_arch(&self, artifact: &Artifact) -> Result<(), HostError> {
        if artifact.arch == self.inner.arch {
            return Ok(());
        }
        Err(HostError::WrongArch {
            host: self.inner.name.clone(),
            host_arch: self.inner.arch,
            artifact: artifact.name.clone(),
            artifact_arch: artifact.arch,
            path: artifact.path.clone(),
        })
    }

    /// Reads the file at `path`; its digest was checked on the way.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, HostError> {
        if self.dry_run() {
            return Ok(Vec::new());
        }
        let sudo = self.sudo_spec()?;
        if self.via_agent() {
            self.with_client(async |client| client.get(path).await)
                .map(|file| file.data)
        } else {
            self.over_ssh(async |ssh| ssh.get(path, sudo.as_ref()).await)
        }
    }

    /// What the machine reports about itself: its agent's report, or for a remote host
    /// what a shell script there reads from `/proc`, `/sys` and `ip`.
    pub fn facts(&self) -> Result<Facts, HostError> {
        if self.via_agent() {
            self.with_client(async |client| client.facts().await)
        } else {
            self.over_ssh(async |ssh| ssh.facts().await)
        }
    }

    /// Starts a supervised service; `ok` when it already runs with the same spec.
    pub fn start_service(&self, spec: &ServiceSpec) -> Result<ServiceChange, HostError> {
        self.with_client(async |client| client.service_start(spec).await)
    }

    /// Stops a service; `ok` when it was not running.
    pub fn stop_service(&self, name: &str) -> Result<ServiceChange, HostError> {
        self.with_client(async |client| client.service_stop(name).await)
    }

    /// A service's state, restarts and exit history.
    pub fn service_status(&self, name: &str) -> Result<ServiceStatus, HostError> {
        self.with_client(async |client| client.service_status(name).await)
    }

    /// The last `lines` lines a service wrote.
    pub fn service_logs(&self, name: &str, lines: usize) -> Result<Vec<String>, HostError> {
        self.with_client(async |client| client.service_logs(name, lines).await)
    }

    /// Asks the guest to stop its services and power off.
    pub(crate) fn request_poweroff(&self) -> Result<(), HostError> {
        self.with_client(async |client| client.poweroff().await)
    }

    /// Runs one agent call on the host's connection, connecting (again) when needed. A
    /// broken connection is dropped so that the next call reconnects. A remote host has
    /// no agent.
    fn with_client<T>(
        &self,
        call: impl AsyncFnOnce(&mut AgentClient) -> Result<T, ClientError>,
    ) -> Result<T, HostError> {
        let inner = &self.inner;
        let no_agent = || HostError::NoAgent {
            host: inner.name.clone(),
        };
        let slot = match &inner.link {
            Link::Guest(guest) => &guest.client,
            Link::Ssh(remote) => &remote.agent.get().ok_or_else(no_agent)?.client,
        };
        let wrap = |source| HostError::Agent {
            host: inner.name.clone(),
            source,
        };
        inner.ctx.runtime.block_on(async {
            let mut slot = slot.lock().await;
            let client = match slot.as_mut() {
                Some(client) => client,
                None => slot.insert(self.connect_agent().await?),
            };
            let result = call(client).await;
            if matches!(&result, Err(e) if e.is_connection_lost()) {
                *slot = None;
            }
            result.map_err(wrap)
        })
    }

    /// A new connection to the host's agent: a guest's through its forwarded port, a
    /// remote host's through an SSH channel.
    async fn connect_agent(&self) -> Result<AgentClient, HostError> {
        let inner = &self.inner;
        match &inner.link {
            Link::Guest(guest) => AgentClient::connect(guest.agent, &guest.secret, CONNECT_TIMEOUT)
                .await
                .map_err(|source| HostError::Agent {
                    host: inner.name.clone(),
                    source,
                }),
            Link::Ssh(remote) => {
                let agent = remote.agent.get().ok_or_else(|| HostError::NoAgent {
                    host: inner.name.clone(),
                })?;
                remote
                    .connection
                    .agent_client(agent)
                    .await
                    .map_err(|source| HostError::Ssh {
                        host: inner.name.clone(),
                        source,
                    })
            }
        }
    }

    /// Runs one call on a remote host's SSH connection.
    fn over_ssh<T>(
        &self,
        call: impl AsyncFnOnce(&Connection) -> Result<T, SshError>,
    ) -> Result<T, HostError> {
        let inner = &self.inner;
        let Some(remote) = self.remote() else {
            unreachable!("only a remote host is reached over SSH");
        };
        inner
            .ctx
            .runtime
            .block_on(call(&remote.connection))
            .map_err(|source| HostError::Ssh {
                host: inner.name.clone(),
                source,
            })
    }
}

/// A remote host's address for other hosts: its `data_ip` variable, else its SSH address
/// when that is IPv4.
fn data_ip(spec: &RemoteHost) -> Ipv4Addr {
    spec.vars
        .get("data_ip")
        .and_then(|v| v.as_str())
        .unwrap_or(&spec.ssh.address)
        .parse()
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// sinew's agent started on a remote host ([`Host::bootstrap_agent`]).
#[derive(Debug, Clone)]
pub struct AgentStarted {
    /// Where it runs.
    pub place: String,
    status: Status,
}

impl AgentStarted {
    fn at(agent: &RemoteAgent, status: Status) -> Self {
        Self {
            place: format!(
                "sinew's agent on the host's 127.0.0.1:{}, from {}, reached over SSH",
                agent.port, agent.dir
            ),
            status,
        }
    }
}

impl Outcome for AgentStarted {
    fn status(&self) -> Status {
        self.status
    }

    fn detail(&self) -> Option<String> {
        Some(self.place.clone())
    }
}

/// The result of a command on a host.
#[derive(Debug, Clone)]
pub struct Exec {
    command: String,
    exit: Option<ExitStatus>,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Exec {
    fn planned(argv: &[&str]) -> Self {
        Self {
            command: argv.join(" "),
            exit: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Its exit code; `None` when killed by a signal or in a dry run.
    pub fn code(&self) -> Option<i32> {
        self.exit.as_ref().and_then(ExitStatus::code)
    }

    /// True when it exited with 0.
    pub fn success(&self) -> bool {
        self.code() == Some(0)
    }

    /// Stdout as text, trailing newline removed.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim_end().to_string()
    }

    fn status_text(&self) -> String {
        match &self.exit {
            Some(exit) => exit.to_string(),
            None => "no status (dry run)".into(),
        }
    }
}

impl Outcome for Exec {
    fn status(&self) -> Status {
        if self.exit.is_none() {
            Status::Planned
        } else {
            Status::Changed
        }
    }

    fn detail(&self) -> Option<String> {
        self.exit
            .is_none()
            .then(|| format!("would run: {}", self.command))
    }
}

/// The result of a file put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// Where the file is on the host.
    pub path: String,
    /// Its hex sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    status: Status,
}

impl Put {
    /// True when the file was written (its content or mode differed).
    pub fn changed(&self) -> bool {
        self.status == Status::Changed
    }
}

impl Outcome for Put {
    fn status(&self) -> Status {
        self.status
    }

    fn detail(&self) -> Option<String> {
        let digest = &self.sha256[..self.sha256.len().min(12)];
        Some(match self.status {
            Status::Planned if digest.is_empty() => {
                format!("would put it at {} once built", self.path)
            }
            Status::Planned => format!(
                "would put {} bytes (sha256 {digest}) at {}",
                self.size, self.path
            ),
            Status::Ok => format!("{} already has sha256 {digest}", self.path),
            _ => format!("{} bytes to {} (sha256 {digest})", self.size, self.path),
        })
    }
}

impl Outcome for Host {
    /// A guest is the outcome of its boot: `changed` when booted, `plan` in a dry run. A
    /// remote host is the outcome of its connection: `ok`, or `changed` when its host key
    /// was recorded on first use.
    fn status(&self) -> Status {
        match &self.inner.link {
            Link::Guest(guest) if guest.booted.is_some() => Status::Changed,
            Link::Guest(_) => Status::Planned,
            Link::Ssh(remote) => match remote.connection.host_key.trust {
                Trust::Known => Status::Ok,
                Trust::Recorded => Status::Changed,
                Trust::WouldRecord => Status::Planned,
            },
        }
    }

    fn detail(&self) -> Option<String> {
        Some(match &self.inner.link {
            Link::Guest(guest) => match &guest.booted {
                Some(booted) => booted.to_string(),
                None => format!("would boot, data-plane address {}", self.inner.data_ip),
            },
            Link::Ssh(remote) => {
                let key = &remote.connection.host_key;
                let via = remote
                    .spec
                    .jumps
                    .iter()
                    .map(|j| format!(" via {j}"))
                    .collect::<String>();
                let known = match key.trust {
                    Trust::Known => "known",
                    Trust::Recorded => "recorded on first use",
                    Trust::WouldRecord => "unknown, would be recorded on first use",
                };
                format!(
                    "{}{via}, {}, host key {} {known}",
                    remote.spec.ssh, self.inner.arch, key.fingerprint
                )
            }
        })
    }
}

impl Outcome for Facts {
    fn status(&self) -> Status {
        Status::Ok
    }
}

impl Outcome for ServiceStatus {
    fn status(&self) -> Status {
        Status::Ok
    }
}

impl Outcome for ServiceChange {
    fn status(&self) -> Status {
        Status::changed_if(self.changed)
    }
}

/// With `-v`, echoes a command's output line by line as `[host] line`.
struct LineEcho {
    ctx: Arc<Ctx>,
    prefix: String,
    partial: [Vec<u8>; 2],
}

impl LineEcho {
    fn new(ctx: Arc<Ctx>, host: &str) -> Self {
        Self {
            ctx,
            prefix: format!("    [{host}] "),
            partial: [Vec::new(), Vec::new()],
        }
    }

    fn enabled(&self) -> bool {
        self.ctx.options.verbose > 0
    }

    fn push(&mut self, kind: OutputStream, bytes: &[u8]) {
        if !self.enabled() {
            return;
        }
        let buf = &mut self.partial[usize::from(kind == OutputStream::Stderr)];
        buf.extend_from_slice(bytes);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.ctx.reporter.line(&format!("{}{text}", self.prefix));
        }
    }

    fn flush(&mut self) {
        if !self.enabled() {
            return;
        }
        for buf in &mut self.partial {
            if !buf.is_empty() {
                let text = String::from_utf8_lossy(buf).into_owned();
                self.ctx.reporter.line(&format!("{}{text}", self.prefix));
                buf.clear();
            }
        }
    }
}
