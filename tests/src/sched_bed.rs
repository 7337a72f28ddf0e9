//! A test bed for the scheduler on one machine: the hosts of an [`Underlay`] (kvd on the
//! bridge), `schedd` in each host as its machine `h<index>` with the workspace's
//! `sinew-run` for container units (a state directory per host), and units whose programs
//! are the workspace's `sinew-probe` or the host's `/bin/sh`. Hosts can be killed (the daemon,
//! with SIGKILL), stopped (SIGTERM), paused and cut off the underlay.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sinew_proto::kv::PutRequest;
use sinew_proto::Sha256Digest;
use sinew_sched::client::{SchedClient, Snapshot};
use sinew_sched::keys;
use sinew_sched::records::MachineRecord;
use sinew_sched::unit::{
    Build, Exec, ExecKind, HealthCheck, Placement, Probe, Resources, UnitSpec,
};

use sinew::deploy::{DeployError, Operator};

use crate::kv_cluster::Server;
use crate::underlay::{block_on, Underlay};

/// The port each host's schedd serves its journal on.
pub const JOURNAL_PORT: u16 = 7081;

/// One host's daemon.
#[derive(Debug)]
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    state_dir: PathBuf,
}

/// The bed; everything is torn down on drop.
#[derive(Debug)]
pub struct SchedBed {
    daemons: Vec<Daemon>,
    schedd: PathBuf,
    probe: PathBuf,
    sinew_run: PathBuf,
    underlay: Underlay,
}

impl SchedBed {
    /// `hosts` hosts with kvd as the store; no schedd runs yet.
    pub fn new(hosts: usize, release: bool) -> Result<Self> {
        let bins = crate::host_bins(release)?;
        let underlay = Underlay::new("sc", hosts, Server::kvd(release)?)?;
        let daemons = (0..hosts)
            .map(|index| Daemon {
                child: None,
                log: underlay.dir().join(format!("h{index}.log")),
                state_dir: underlay.dir().join(format!("h{index}")),
            })
            .collect();
        Ok(Self {
            daemons,
            schedd: bins.join("schedd"),
            probe: bins.join("sinew-probe"),
            sinew_run: bins.join("sinew-run"),
            underlay,
        })
    }

    /// `hosts` hosts, each running schedd, once every machine is registered.
    pub fn started(hosts: usize) -> Result<Self> {
        Self::started_with(hosts, &[])
    }

    /// `hosts` hosts, each running schedd with `args` added, once every machine is
    /// registered.
    pub fn started_with(hosts: usize, args: &[&str]) -> Result<Self> {
        let mut bed = Self::new(hosts, false)?;
        for index in 0..hosts {
            bed.start(index, args)?;
        }
        bed.wait_for(
            "every machine registered",
            Duration::from_secs(20),
            |snapshot| snapshot.machines.len() == hosts,
        )?;
        Ok(bed)
    }

    /// The store's endpoint, which every host and the root namespace reach.
    pub fn endpoint(&self) -> &str {
        &self.underlay.endpoint
    }

    /// Host `index`'s address on the underlay, which the root namespace reaches.
    pub fn address(&self, index: usize) -> std::net::Ipv4Addr {
        self.underlay.hosts[index].address
    }

    /// Host `index`'s machine name.
    pub fn machine(index: usize) -> String {
        format!("h{index}")
    }

    /// Starts schedd on host `index` with `args` added (`--metadata`, `--role`, ...).
    pub fn start(&mut self, index: usize, args: &[&str]) -> Result<()> {
        let netns = self.underlay.hosts[index].netns.clone();
        let daemon = &mut self.daemons[index];
        ensure!(
            daemon.child.is_none(),
            "schedd already runs on host {index}"
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&daemon.log)?;
        let journal = format!("{}:{JOURNAL_PORT}", self.underlay.hosts[index].address);
        // nsenter rather than `ip netns exec`, which mounts a sysfs of the namespace's own
        // without the cgroup hierarchies that sinew-run needs for a container's limits.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(&self.schedd)
            .args(["--endpoints", &self.underlay.endpoint])
            .args(["--journal-listen", &journal])
            .args(["--machine", &Self::machine(index)])
            .arg("--state-dir")
            .arg(&daemon.state_dir)
            .arg("--sinew-run")
            .arg(&self.sinew_run)
            .args(args)
            .env("SINEW_RUN_DIR", sinew_run_dir(&daemon.state_dir))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting schedd")?;
        daemon.child = Some(child);
        Ok(())
    }

    /// Kills host `index`'s schedd outright (SIGKILL) and reaps it.
    pub fn kill(&mut self, index: usize) -> Result<()> {
        let mut child = self.daemons[index]
            .child
            .take()
            .context("schedd is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stops host `index`'s schedd with SIGTERM and waits until it exits cleanly.
    pub fn stop(&mut self, index: usize) -> Result<()> {
        let mut child = self.daemons[index]
            .child
            .take()
            .context("schedd is not running")?;
        signal(&child, nix::sys::signal::Signal::SIGTERM)?;
        let status = child.wait()?;
        ensure!(
            status.success(),
            "schedd on host {index} exited with {status}; log:\n{}",
            self.log(index)
        );
        Ok(())
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) host `index`'s schedd.
    pub fn pause(&self, index: usize, paused: bool) -> Result<()> {
        let child = self.daemons[index]
            .child
            .as_ref()
            .context("schedd is not running")?;
        signal(
            child,
            if paused {
                nix::sys::signal::Signal::SIGSTOP
            } else {
                nix::sys::signal::Signal::SIGCONT
            },
        )
    }

    /// Cuts host `index` off the underlay, so off the store.
    pub fn cut(&self, index: usize) -> Result<()> {
        self.underlay.cut(index)
    }

    /// Puts host `index` back on the underlay.
    pub fn mend(&self, index: usize) -> Result<()> {
        self.underlay.mend(index)
    }

    /// Host `index`'s schedd log so far.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.daemons[index].log).unwrap_or_default()
    }

    /// Every host's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.daemons.len())
            .map(|index| format!("--- h{index} ---\n{}", self.log(index)))
            .collect()
    }

    /// `schedctl` with `args`, against the bed's store, from the root namespace (which
    /// reaches every host's journal over the bridge).
    pub fn schedctl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.schedd.with_file_name("schedctl"));
        command
            .args(["--endpoints", &self.underlay.endpoint])
            .args(args);
        command
    }

    /// `sinew-run` on host `index`'s state (its trusted keys, image store and containers),
    /// from the root namespace.
    pub fn sinew_run(&self, index: usize) -> Command {
        let mut command = Command::new(&self.sinew_run);
        command.env(
            "SINEW_RUN_DIR",
            sinew_run_dir(&self.daemons[index].state_dir),
        );
        command
    }

    /// A client of the scheduler's keys.
    pub fn client(&self) -> Result<SchedClient> {
        Ok(SchedClient::new(self.underlay.kv()?))
    }

    /// Submits and starts `unit`.
    pub fn launch(&self, unit: &UnitSpec) -> Result<()> {
        let client = self.client()?;
        block_on(async {
            client.submit(unit).await?;
            client.start(&unit.name).await
        })??;
        Ok(())
    }

    /// A directory that lives as long as the bed.
    pub fn dir(&self) -> &Path {
        self.underlay.dir()
    }

    /// What the scheduler holds now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let client = self.client()?;
        Ok(block_on(client.snapshot())??)
    }

    /// Polls the scheduler's keys until `check` holds, for at most `patience`; returns the
    /// snapshot that passed.
    pub fn wait_for(
        &self,
        what: &str,
        patience: Duration,
        check: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot> {
        let started = Instant::now();
        loop {
            let snapshot = self.snapshot()?;
            if check(&snapshot) {
                return Ok(snapshot);
            }
            if started.elapsed() > patience {
                bail!(
                    "{what}: not within {patience:?}; last snapshot: {snapshot:#?}\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A unit running `sinew-probe echo-server <port>`, for this machine's architecture.
    pub fn echo_unit(&self, name: &str, port: u16) -> Result<UnitSpec> {
        let mut unit = unit(name, &self.probe)?;
        unit.args = vec!["echo-server".into(), port.to_string()];
        Ok(unit)
    }

    /// The workspace's `sinew-probe`, which the bed's echo units run.
    pub fn probe(&self) -> &Path {
        &self.probe
    }

    /// A unit running `/bin/sh -c <script>`.
    pub fn shell_unit(&self, name: &str, script: &str) -> Result<UnitSpec> {
        let mut unit = unit(name, Path::new("/bin/sh"))?;
        unit.args = vec!["-c".into(), script.into()];
        Ok(unit)
    }
}

fn sinew_run_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sinew-run")
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) -> Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(pid, signal)?;
    Ok(())
}

/// A unit with one build, `program` for this machine's architecture.
fn unit(name: &str, program: &Path) -> Result<UnitSpec> {
    let program =
        std::fs::canonicalize(program).with_context(|| format!("finding {}", program.display()))?;
    let sha256 = Sha256Digest::of_file(&program)
        .with_context(|| format!("hashing {}", program.display()))?
        .1
        .to_hex();
    let exec = Exec {
        kind: ExecKind::Binary,
        builds: vec![Build {
            arch: std::env::consts::ARCH.to_owned(),
            path: program.display().to_string(),
            sha256,
        }],
    };
    Ok(UnitSpec::new(name, exec))
}

/// Whether process `pid` is alive: it exists and is not a zombie waiting to be reaped.
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
}

/// A quick TCP health check on `port`: every 100 ms, three failures in a row.
pub fn tcp_health(port: u16) -> HealthCheck {
    HealthCheck {
        interval_ms: 100,
        timeout_ms: 500,
        start_period_ms: 10_000,
        ..HealthCheck::new(Probe::Tcp { port })
    }
}

/// `replicas` instances of `unit`, never two on one machine.
pub fn spread(unit: &str, replicas: u32) -> Placement {
    Placement {
        conflicts: vec![format!("{unit}@*")],
        replicas,
        ..Placement::default()
    }
}

/// Registers `count` simulated machines (`m000`, ...; x86_64 and aarch64 in turn, 4 GiB and
/// 4 CPUs each) under one lease of `ttl` seconds, without agents: for the engine alone.
pub async fn simulated_machines(client: &SchedClient, count: usize, ttl: i64) -> Result<()> {
    let lease = client.kv().lease_grant(ttl).await?;
    for index in 0..count {
        let record = MachineRecord {
            id: format!("m{index:03}"),
            arch: if index % 2 == 0 { "x86_64" } else { "aarch64" }.into(),
            metadata: Default::default(),
            capacity: Resources {
                memory_mb: 4096,
                cpu_millis: 4000,
            },
            lease: lease.id,
            ttl_s: ttl,
            journal: None,
            address: None,
        };
        client
            .kv()
            .put_request(&PutRequest {
                key: keys::machine(&record.id).into_bytes(),
                value: serde_json::to_vec(&record)?,
                lease: lease.id,
                ..PutRequest::default()
            })
            .await?;
    }
    Ok(())
}

/// A unit named `name` with builds for both architectures, for simulated machines (it is
/// never run).
pub fn simulated_unit(name: &str) -> UnitSpec {
    let build = |arch: &str| Build {
        arch: arch.into(),
        path: "/opt/app".into(),
        sha256: "ab".repeat(32),
    };
    let exec = Exec {
        kind: ExecKind::Binary,
        builds: vec![build("x86_64"), build("aarch64")],
    };
    UnitSpec::new(name, exec)
}

impl Drop for SchedBed {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            if let Some(mut child) = daemon.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The deploy strategies' way to the bed's scheduler: through its store, as
/// `sinew::sched::Scheduler` is theirs to a deployed one through schedctl.
#[derive(Debug, Clone, Copy)]
pub struct BedOperator<'a>(pub &'a SchedBed);

impl Operator for BedOperator<'_> {
    fn start(&self, unit: &UnitSpec) -> Result<(), DeployError> {
        self.0.launch(unit).map_err(operator_error)
    }

    fn stop(&self, unit: &str) -> Result<(), DeployError> {
        let client = self.0.client().map_err(operator_error)?;
        block_on(client.stop(unit))
            .map_err(operator_error)?
            .map_err(operator_error)
    }

    fn scale(&self, unit: &str, replicas: u32) -> Result<(), DeployError> {
        let client = self.0.client().map_err(operator_error)?;
        block_on(client.scale(unit, replicas))
            .map_err(operator_error)?
            .map_err(operator_error)
    }

    fn route(&self, service: &str, versions: &[String]) -> Result<(), DeployError> {
        let client = self.0.client().map_err(operator_error)?;
        block_on(client.route(service, versions))
            .map_err(operator_error)?
            .map_err(operator_error)
    }

    fn snapshot(&self) -> Result<Snapshot, DeployError> {
        self.0.snapshot().map_err(operator_error)
    }
}

fn operator_error(error: impl std::fmt::Display) -> DeployError {
    DeployError::Scheduler(format!("{error:#}"))
}
