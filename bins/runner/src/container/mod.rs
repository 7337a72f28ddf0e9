//! Running a container: its directory and state, the sandboxed process, its cgroup and
//! network, and the supervision until it exits.

pub mod manage;
pub mod spec;
pub mod state;
pub mod supervisor;

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use crate::cgroup::{self, Cgroup, CgroupError, Limits};
use crate::net::{self, NetError, NetMode, OverlayConfig, PortSpec};
use crate::sandbox::{
    self, Exec, Namespaces, ProcessError, RealSys, RootfsPlan, SandboxError, Stdio,
};

pub use spec::{ImageSource, Overrides, SpecError};
pub use state::{ContainerDir, State, StateError, Status};
pub use supervisor::{Echo, SuperviseError};

/// Why a container could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The container directory or its state.
    #[error(transparent)]
    State(#[from] StateError),
    /// Creating a file or directory of the container.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image's rendered rootfs is missing.
    #[error("rendered rootfs {0} is not a directory")]
    Rootfs(String),
    /// Image config and flags do not make a runnable process.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The process spec could not be converted for exec.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// cgroup setup.
    #[error("cgroup setup")]
    Cgroup(#[from] CgroupError),
    /// Network setup.
    #[error("network setup")]
    Net(#[from] NetError),
    /// Publishing a port.
    #[error("publishing ports")]
    Ports(#[source] std::io::Error),
    /// Namespaces, rootfs or exec.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The supervision loop.
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Everything `sinew-run run` decides before starting a container.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Container id (see [`new_id`]).
    pub id: String,
    /// The image to run.
    pub image: ImageSource,
    /// Flags overriding the image config.
    pub overrides: Overrides,
    /// Resource limits.
    pub limits: Limits,
    /// Network mode.
    pub net: NetMode,
    /// Overlay settings, used with [`NetMode::Overlay`].
    pub overlay: OverlayConfig,
    /// Published ports (overlay only).
    pub ports: Vec<PortSpec>,
    /// Grace period between the forwarded SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Terminal echo (foreground) or log only (detached).
    pub echo: Echo,
}

/// A fresh random container id: 16 hex digits.
pub fn new_id() -> Result<String, RunError> {
    let mut bytes = [0u8; 8];
    let mut urandom =
        File::open("/dev/urandom").map_err(io("opening", Path::new("/dev/urandom")))?;
    std::io::Read::read_exact(&mut urandom, &mut bytes)
        .map_err(io("reading", Path::new("/dev/urandom")))?;
    Ok(hex::encode(bytes))
}

/// What a container holds while it runs, released when it ends.
#[derive(Debug, Default)]
struct Held {
    cgroup: Option<Cgroup>,
    net: Option<net::Prepared>,
}

impl Held {
    fn release(self) {
        if let Some(cgroup) = self.cgroup {
            if let Err(e) = cgroup.remove(&RealSys) {
                tracing::warn!(error = %e, "removing the container's cgroup");
            }
        }
        if let Some(net) = self.net {
            net.release();
        }
    }
}

/// Runs a container to completion under this process's supervision. `on_started` is
/// called once the program has been executed. Returns the final state (exit code in
/// `exit_code`, 128+N for signal N).
pub fn run(
    state_dir: &Path,
    opts: &RunOptions,
    on_started: impl FnOnce(&State),
) -> Result<State, RunError> {
    let dir = ContainerDir::new(state_dir, &opts.id);
    let plan = RootfsPlan::in_container_dir(&opts.image.rootfs, dir.path());
    for d in [dir.path(), &plan.upper, &plan.work, &plan.merged] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    let _lock = dir.lock()?;
    let mut state = State {
        id: opts.id.clone(),
        image: opts.image.name.clone(),
        manifest_digest: opts.image.manifest_digest.clone(),
        status: Status::Created,
        pid: None,
        supervisor_pid: std::process::id().cast_signed(),
        started_at: state::now(),
        finished_at: None,
        exit_code: None,
        oom_killed: false,
        cgroup: "none".to_string(),
        net: opts.net.name().to_string(),
        address: None,
        ports: opts
            .ports
            .iter()
            .map(|p| format!("{}:{}", p.host, p.container_port))
            .collect(),
        error: None,
    };
    let mut held = Held::default();
    match start_and_supervise(
        state_dir, opts, &dir, &plan, &mut state, &mut held, on_started,
    ) {
        Ok(()) => {
            held.release();
            dir.write(&state)?;
            Ok(state)
        }
        Err(e) => {
            held.release();
            state.status = Status::Failed;
            state.finished_at = Some(state::now());
            state.error = Some(sinew_support::error_chain(&e));
            dir.write(&state)?;
            Err(e)
        }
    }
}

fn start_and_supervise(
    state_dir: &Path,
    opts: &RunOptions,
    dir: &ContainerDir,
    plan: &RootfsPlan,
    state: &mut State,
    held: &mut Held,
    on_started: impl FnOnce(&State),
) -> Result<(), RunError> {
    if !plan.lower.is_dir() {
        return Err(RunError::Rootfs(plan.lower.display().to_string()));
    }
    let process = spec::process_spec(&plan.lower, &opts.image.config, &opts.overrides, &opts.id)?;
    let exec = Exec::prepare(&process)?;
    let sys = RealSys;
    let mode = cgroup::detect(&sys, Path::new(cgroup::CGROUP_ROOT));
    state.cgroup = mode.name().to_string();
    let cgroup = held
        .cgroup
        .insert(Cgroup::create(&sys, &mode, &opts.id, &opts.limits)?);
    let published = net::ports::bind(&opts.ports).map_err(RunError::Ports)?;
    if opts.net == NetMode::Overlay {
        let prepared = held
            .net
            .insert(net::prepare(state_dir, &opts.overlay, &opts.id)?);
        state.address = Some(prepared.address().to_string());
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())
        .map_err(io("opening", &dir.log()))?;
    let signals = supervisor::signal_fd()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let stdin = match opts.echo {
        Echo::Terminal => None,
        Echo::LogOnly => Some(OwnedFd::from(
            File::open("/dev/null").map_err(io("opening", Path::new("/dev/null")))?,
        )),
    };
    let namespaces = Namespaces {
        network: opts.net != NetMode::Host,
        join_cgroup: cgroup.self_join_files(),
    };
    let stdio = Stdio {
        stdin,
        stdout: stdout_w,
        stderr: stderr_w,
    };
    let pending = sandbox::spawn(&sys, plan, &exec, &namespaces, stdio)?;
    let pid = pending.pid();
    let joined = cgroup
        .add(&sys, pid.as_raw())
        .map_err(RunError::from)
        .and_then(|()| match &held.net {
            Some(prepared) => prepared.attach(pid.as_raw()).map_err(RunError::from),
            None => Ok(()),
        });
    if let Err(e) = joined {
        pending.abort();
        return Err(e);
    }
    pending.start()?;
    state.status = Status::Running;
    state.pid = Some(pid.as_raw());
    dir.write(state)?;
    on_started(state);
    if let Some(address) = &held.net {
        published.serve(address.address());
    }
    let output = supervisor::Output {
        stdout: stdout_r,
        stderr: stderr_r,
    };
    let exit = supervisor::supervise(
        pid,
        &signals,
        output,
        &mut log,
        opts.echo,
        opts.stop_timeout,
    )?;
    state.status = Status::Exited;
    state.exit_code = Some(exit.code);
    state.finished_at = Some(state::now());
    state.oom_killed = cgroup.oom_killed(&sys);
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RunError::Io {
        what: "creating",
        path: "an output pipe".to_string(),
        source: e.into(),
    })
}
