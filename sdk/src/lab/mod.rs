//! A lab: guests booted together, sharing a private data-plane segment.
//!
//! Booting a lab: kernels and QEMU are made ready ([`crate::Run::prepare`]), the agent is
//! cross-compiled for each architecture, and a reproducible base initramfs is made per
//! architecture (agent + kernel modules; same inputs, same sha256). A guest boots it
//! directly (QEMU loads kernel and initramfs) or, with [`BootFrom::Network`], from the
//! network: its firmware fetches them and its command line from the lab's boot server
//! ([`Lab::boot_server`]). The lab's secret reaches every guest through QEMU's fw_cfg,
//! never on a command line nor over the boot network. Guests boot in parallel; each is
//! ready when its agent answers an authenticated handshake.
//!
//! Acceleration: KVM is tried where `/dev/kvm` works and this host is not known to fail
//! under it; a guest whose QEMU exits at startup, or that prints nothing on its console
//! within `SINEW_KVM_DEADLINE` seconds (default 8), is restarted under TCG, and the host
//! is remembered as failing.
//! `SINEW_ACCEL=kvm|tcg` forces either.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sinew_proto::{Secret, Sha256Digest};
use sinew_vm::accel::{self, Accel};
use sinew_vm::initramfs::Initramfs;
use sinew_vm::kernel::Kernel;
use sinew_vm::machine::{Ending, Vm, VmError};
use sinew_vm::netboot::GrubLoader;
use sinew_vm::qemu::{self, ControlNic, DataNic};
use sinew_vm::switch::Switch;
use sinew_vm::Arch;
use sinew_vm::MacAddr;

use crate::boot::{BootServer, ConfigSource};
use crate::build::{Artifact, Build};
use crate::host::{Booted, Host, HostAddress};
use crate::janitor::{self, Registration};
use crate::machine_image::MachineImage;
use crate::outcome::{Outcome, Status, TaskFailed};
use crate::run::Ctx;
use crate::stored::store_once;

mod netboot;
mod ready;
mod spawner;

use ready::Waiter;
use spawner::Spawner;

/// The port the agent listens on inside every guest.
pub const AGENT_PORT: u16 = 7070;
/// What sinew-init prints on the console once its agent listens.
const READY_LINE: &str = "sinew-init: ready";
/// Where the agent binary lives in the initramfs (the kernel runs `/init`).
const INIT_PATH: &str = "init";
/// The lab's secret in its private directory, handed to every guest through fw_cfg ...
const KEY_FILE: &str = "agent.key";
/// ... as this entry (`opt/sinew/agent.key`), where sinew-init looks for it.
const KEY_FW_CFG: &str = "sinew/agent.key";

/// Errors booting or stopping a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A guest name that is not in the lab.
    #[error("no guest called {0:?} in this lab")]
    NoSuchGuest(String),
    /// The lab's specification is unusable.
    #[error("lab `{lab}`: {problem}")]
    Spec {
        /// The lab.
        lab: String,
        /// What is wrong.
        problem: String,
    },
    /// A file or directory of the lab could not be made.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The agent given for a base image is built for another machine than the kernel.
    #[error("agent {agent} is built for {agent_arch}, but the kernel is {kernel}")]
    AgentArch {
        /// The agent binary.
        agent: PathBuf,
        /// Its machine.
        agent_arch: Arch,
        /// The kernel's machine.
        kernel: Arch,
    },
    /// Kernel modules could not be resolved.
    #[error(transparent)]
    Modules(#[from] sinew_vm::modules::ModuleError),
    /// The initramfs could not be assembled.
    #[error(transparent)]
    Initramfs(#[from] sinew_vm::initramfs::InitramfsError),
    /// No lab secret could be made.
    #[error(transparent)]
    Secret(#[from] sinew_proto::SecretError),
    /// QEMU could not be started or controlled.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The data-plane switch could not start.
    #[error(transparent)]
    Switch(#[from] sinew_vm::switch::SwitchError),
    /// Acceleration choice failed (a bad `SINEW_ACCEL`).
    #[error(transparent)]
    Accel(#[from] sinew_vm::accel::AccelError),
    /// The guest did not become ready.
    #[error(
        "{guest} was not ready after {waited:?} ({why}); console log {log}, last lines:\n{tail}"
    )]
    NotReady {
        /// The guest.
        guest: String,
        /// How long it was given.
        waited: Duration,
        /// What was seen.
        why: String,
        /// Its console log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
}

/// One guest of a lab: plain data with defaults (`MachineSpec::new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// Name, also the guest's hostname; unique in the lab.
    pub name: String,
    /// Its architecture.
    pub arch: Arch,
    /// Virtual CPUs (default 1).
    pub cpus: u32,
    /// Memory in MiB (default 256).
    pub memory_mib: u32,
    /// Extra kernel modules the guest needs (e.g. `vxlan`), with their dependencies.
    pub modules: Vec<String>,
    /// Its data-plane address; by default the lab assigns `.10`, `.11`, ... in order.
    pub data_ip: Option<Ipv4Addr>,
    /// How it boots (default: directly).
    pub boot: BootFrom,
    /// The machine image it boots; by default the lab's own (agent and modules only).
    pub image: Option<MachineImage>,
    /// TCP ports of the guest reachable from this machine, each at a port of 127.0.0.1
    /// that the lab picks ([`Host::published`]).
    pub published: Vec<u16>,
}

/// How a lab guest boots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BootFrom {
    /// QEMU loads the kernel and initramfs itself.
    #[default]
    Direct,
    /// The guest's firmware boots from its control NIC: iPXE (x86_64) or UEFI and GRUB
    /// (aarch64) fetch kernel, initramfs and command line from the lab's boot server.
    Network,
}

impl MachineSpec {
    /// A guest called `name` of `arch` with default size.
    pub fn new(name: &str, arch: Arch) -> Self {
        Self {
            name: name.into(),
            arch,
            cpus: 1,
            memory_mib: 256,
            modules: Vec::new(),
            data_ip: None,
            boot: BootFrom::Direct,
            image: None,
            published: Vec::new(),
        }
    }

    /// The same guest, with its TCP `port` reachable from this machine (a service the
    /// playbook itself uses, say a proxy it puts load on).
    pub fn publish(mut self, port: u16) -> Self {
        self.published.push(port);
        self
    }

    /// The same guest, booting `image` (built for its architecture).
    pub fn image(mut self, image: &MachineImage) -> Self {
        self.image = Some(image.clone());
        self
    }

    /// The same guest, booted from the network.
    pub fn network_boot(mut self) -> Self {
        self.boot = BootFrom::Network;
        self
    }
}

/// A lab: its guests and their shared segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// The lab's name (used for its log directory).
    pub name: String,
    /// Its guests.
    pub machines: Vec<MachineSpec>,
    /// The data-plane network: guests get addresses in this /24.
    pub data_network: Ipv4Addr,
    /// How long a guest may take from spawn to a ready agent.
    pub boot_timeout: Duration,
}

impl LabSpec {
    /// An empty lab on `10.77.0.0/24` with a 120 s boot timeout (TCG on a busy host).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            machines: Vec::new(),
            data_network: Ipv4Addr::new(10, 77, 0, 0),
            boot_timeout: Duration::from_secs(120),
        }
    }

    /// Adds a guest.
    pub fn machine(mut self, machine: MachineSpec) -> Self {
        self.machines.push(machine);
        self
    }

    fn validate(&self) -> Result<(), LabError> {
        let problem = |p: String| LabError::Spec {
            lab: self.name.clone(),
            problem: p,
        };
        if self.machines.is_empty() {
            return Err(problem("no machines".into()));
        }
        let mut names = BTreeSet::new();
        for m in &self.machines {
            if m.name.is_empty()
                || !m
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(problem(format!(
                    "machine name {:?} must be letters, digits and '-'",
                    m.name
                )));
            }
            if !names.insert(&m.name) {
                return Err(problem(format!("two machines are called {:?}", m.name)));
            }
            if let Some(image) = m.image.as_ref().filter(|i| i.arch != m.arch) {
                return Err(problem(format!(
                    "machine {} is {} but its image is {}",
                    m.name,
                    m.arch,
                    image.label()
                )));
            }
        }
        if self.machines.len() > 200 {
            return Err(problem(
                "more than 200 machines do not fit the data-plane /24".into(),
            ));
        }
        Ok(())
    }

    /// The architectures of the machines for which `which` holds, each once, in order.
    fn archs(&self, which: impl Fn(&MachineSpec) -> bool) -> Vec<Arch> {
        let archs: BTreeSet<Arch> = self
            .machines
            .iter()
            .filter(|m| which(m))
            .map(|m| m.arch)
            .collect();
        archs.into_iter().collect()
    }

    // `validate` caps a lab at 200 machines, so `10 + index` is at most 209 and fits in a u8.
    #[allow(clippy::cast_possible_truncation)]
    fn data_ip(&self, index: usize) -> Ipv4Addr {
        let base = self.data_network.octets();
        self.machines[index]
            .data_ip
            .unwrap_or_else(|| Ipv4Addr::new(base[0], base[1], base[2], 10 + index as u8))
    }
}

/// A booted lab. Dropping it kills its guests at once; [`crate::Run::shutdown`] stops them
/// gracefully.
#[derive(Debug)]
pub struct Lab {
    hosts: Vec<Host>,
    /// Each guest's running VM, in the order of `hosts`.
    guests: Vec<Slot>,
    secret: Secret,
    spawner: Option<Spawner>,
    switch: Option<Switch>,
    boot_server: Option<BootServer>,
    /// The boot server's configuration, as [`crate::Run::reboot`] changes it.
    boot_source: Option<ConfigSource>,
    /// What each guest was booted as, in the order of `hosts`.
    plans: Vec<GuestPlan>,
    boot_timeout: Duration,
    dir: Option<(tempfile::TempDir, Registration)>,
}

/// A running guest, registered with the janitor for as long as it runs.
#[derive(Debug)]
struct Running {
    vm: Vm,
    _registration: Registration,
}

/// Where a guest's running VM lives; empty before boot and after shutdown.
type Slot = Arc<Mutex<Option<Running>>>;

impl Lab {
    /// The lab's hosts, in specification order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name() == name)
    }

    /// The boot server of a lab with network-booted guests: its requests, as the guests
    /// made them, and waits for them ([`BootServer::wait_for`]).
    pub fn boot_server(&self) -> Option<&BootServer> {
        self.boot_server.as_ref()
    }

    fn index_of(&self, name: &str) -> Result<usize, LabError> {
        self.hosts
            .iter()
            .position(|host| host.name() == name)
            .ok_or_else(|| LabError::NoSuchGuest(name.to_owned()))
    }

    fn kill_all(&mut self) {
        for slot in &self.guests {
            if let Some(mut running) = lock(slot).take() {
                running.vm.kill();
            }
        }
    }
}

impl Outcome for Lab {
    fn status(&self) -> Status {
        Status::Changed
    }

    fn detail(&self) -> Option<String> {
        self.switch
            .as_ref()
            .map(|s| format!("data-plane switch at {}", s.socket().display()))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_all();
        self.spawner.take();
        self.switch.take();
        self.boot_server.take();
        self.dir.take();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A base initramfs made for one architecture.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Its architecture.
    pub arch: Arch,
    /// Where it is cached.
    pub path: PathBuf,
    /// Its hex sha256.
    pub sha256: String,
    /// True when it was not in the cache yet.
    pub new: bool,
}

impl Outcome for BaseImage {
    fn status(&self) -> Status {
        Status::changed_if(self.new)
    }

    fn detail(&self) -> Option<String> {
        Some(format!("sha256 {}", self.sha256))
    }
}

/// A guest rebooted: how its last boot ended and how long the new one took to be ready.
#[derive(Debug, Clone, Default)]
pub struct Rebooted {
    /// How the previous boot ended (`None` in a dry run).
    pub stopped: Option<Ending>,
    /// From QEMU's start to a ready agent.
    pub ready_after: Duration,
}

impl Outcome for Rebooted {
    fn status(&self) -> Status {
        match self.stopped {
            Some(_) => Status::Changed,
            None => Status::Planned,
        }
    }

    fn detail(&self) -> Option<String> {
        let stopped = self.stopped?;
        Some(format!(
            "{stopped}, agent ready again after {:.2}s",
            self.ready_after.as_secs_f64()
        ))
    }
}

/// Shuts a guest down: how it ended.
#[derive(Debug, Clone)]
pub struct Stopped(pub Ending);

impl Outcome for Stopped {
    fn status(&self) -> Status {
        match self.0 {
            Ending::AlreadyGone => Status::Ok,
            _ => Status::Changed,
        }
    }

    fn detail(&self) -> Option<String> {
        Some(self.0.to_string())
    }
}

// Extends `Run` (run.rs) with lab boot, crash and shutdown; indexed in `Run`'s doc comment.
impl crate::Run {
    /// Boots `spec`: prerequisites, agent build, boot media, then every guest in parallel.
    pub fn boot(&self, spec: &LabSpec) -> Result<Lab, TaskFailed> {
        let ctx = self.ctx().clone();
        self.task(&format!("check lab {}", spec.name), || spec.validate())?;
        let kernels = self.prepare(&spec.archs(|_| true))?;
        let loader = self.prepare_network_boot(&spec.archs(|m| m.boot == BootFrom::Network))?;
        // Guests that boot a machine image carry their own agent and kernel.
        let base_archs = spec.archs(|m| m.image.is_none());
        let agents = if base_archs.is_empty() {
            None
        } else {
            Some(self.build(&Build::bins(&["sinew-init"]).archs(&base_archs))?)
        };
        if ctx.dry_run() {
            return planned_lab(&ctx, spec, self).map_err(|e| TaskFailed::new("plan lab", &e));
        }
        let mut bases = Vec::new();
        for kernel in kernels.iter().filter(|k| base_archs.contains(&k.arch)) {
            let agents = agents.as_ref().expect("built for every base arch");
            let extra: Vec<&str> = spec
                .machines
                .iter()
                .filter(|m| m.arch == kernel.arch)
                .flat_map(|m| m.modules.iter().map(String::as_str))
                .collect();
            let base = self.task(&format!("initramfs {}", kernel.arch), || {
                let agent = agents
                    .get("sinew-init", kernel.arch)
                    .map_err(|e| LabError::Spec {
                        lab: spec.name.clone(),
                        problem: e.to_string(),
                    })?;
                base_image(&ctx.paths.cache, kernel, agent, &extra)
            })?;
            bases.push(base);
        }
        let mut lab = self.task(&format!("start lab {}", spec.name), || {
            start_lab(&ctx, spec)
        })?;
        let plans: Vec<GuestPlan> = spec
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| GuestPlan {
                index: i,
                machine: m.clone(),
                data_ip: spec.data_ip(i),
            })
            .collect();
        let network: Vec<(&GuestPlan, Media)> = plans
            .iter()
            .filter(|p| p.machine.boot == BootFrom::Network)
            .map(|p| (p, media(p, &kernels, &bases)))
            .collect();
        if !network.is_empty() {
            let dir = lab
                .dir
                .as_ref()
                .map(|(d, _)| d.path())
                .unwrap_or(Path::new(""));
            let started = self.task("boot server", || netboot::start(&ctx, dir, &network))?;
            lab.boot_server = Some(started.server);
            lab.boot_source = Some(started.source);
        }
        let setup = LabSetup {
            ctx: &ctx,
            spec,
            waiter: Waiter {
                ctx: &ctx,
                secret: &lab.secret,
                timeout: spec.boot_timeout,
                boot_server: lab.boot_server.as_ref(),
            },
            kernels: &kernels,
            bases: &bases,
            loader: loader.as_ref(),
            dir: lab
                .dir
                .as_ref()
                .map(|(d, _)| d.path().to_path_buf())
                .unwrap_or_default(),
            switch_socket: lab
                .switch
                .as_ref()
                .map(|s| s.socket().to_path_buf())
                .unwrap_or_default(),
            spawner: lab.spawner.as_ref().expect("started above"),
        };
        lab.guests = plans.iter().map(|_| Slot::default()).collect();
        let slots = &lab.guests;
        lab.hosts = self.each(&plans, "boot", |plan| setup.boot(plan, &slots[plan.index]))?;
        lab.plans = plans;
        Ok(lab)
    }

    /// Pulls the plug on guest `name` (SIGKILL to its QEMU), as a crash or power loss would:
    /// nothing in the guest gets to run. Its host stays in the lab but answers no more.
    pub fn crash(&self, lab: &Lab, name: &str) -> Result<Stopped, TaskFailed> {
        self.task(&format!("crash [{name}]"), || {
            let index = lab.index_of(name)?;
            if self.is_dry_run() {
                return Ok::<_, LabError>(Stopped(Ending::AlreadyGone));
            }
            Ok(match lock(&lab.guests[index]).take() {
                Some(mut running) => {
                    running.vm.kill();
                    Stopped(Ending::Killed)
                }
                None => Stopped(Ending::AlreadyGone),
            })
        })
    }

    /// Reboots guest `name` as a power cycle: its agent powers it off (QMP after a grace
    /// period), and QEMU starts again with the same identity (MACs, UUID, ports). With
    /// `image`, the guest comes back on that machine image: a network-booted guest because
    /// the boot server serves it the image from now on, a directly booted one because QEMU
    /// loads it. Returns once its agent answers again; the host's handle keeps working.
    pub fn reboot(
        &self,
        lab: &mut Lab,
        name: &str,
        image: Option<&MachineImage>,
    ) -> Result<Rebooted, TaskFailed> {
        let what = match image {
            Some(image) => format!("reboot [{name}] into {}", image.label()),
            None => format!("reboot [{name}]"),
        };
        let ctx = self.ctx().clone();
        self.task(&what, || {
            let index = lab.index_of(name)?;
            if self.is_dry_run() {
                return Ok::<_, LabError>(Rebooted::default());
            }
            let mut plan = lab.plans[index].clone();
            if let Some(image) = image {
                if image.arch != plan.machine.arch {
                    return Err(LabError::Spec {
                        lab: name.to_owned(),
                        problem: format!(
                            "{name} is {} but the image is {}",
                            plan.machine.arch,
                            image.label()
                        ),
                    });
                }
                plan.machine.image = Some(image.clone());
            }
            let slot = lab.guests[index].clone();
            let Some(running) = lock(&slot).take() else {
                return Err(LabError::Spec {
                    lab: name.to_owned(),
                    problem: "the guest is not running (crashed or shut down)".into(),
                });
            };
            let mut spec = running.vm.spec().clone();
            let ending = power_off(&ctx, &lab.hosts[index], running)?;
            if let Some(image) = image {
                lab.boot_image(&mut spec, &plan, image)?;
            }
            let ready_after = lab.start_again(&ctx, index, &plan, spec)?;
            lab.plans[index] = plan;
            Ok(Rebooted {
                stopped: Some(ending),
                ready_after,
            })
        })
    }

    /// Stops every guest of `lab` gracefully (agent poweroff, then QMP), in parallel.
    pub fn shutdown(&self, mut lab: Lab) -> Result<Vec<Stopped>, TaskFailed> {
        if self.is_dry_run() {
            return Ok(Vec::new());
        }
        let named: Vec<Named<(Host, Slot)>> = lab
            .hosts
            .iter()
            .zip(&lab.guests)
            .map(|(host, slot)| Named(host.name().to_string(), (host.clone(), slot.clone())))
            .collect();
        let ctx = self.ctx().clone();
        let stopped = self.each(&named, "shutdown", |Named(_, (host, slot))| {
            let Some(running) = lock(slot).take() else {
                return Ok::<_, LabError>(Stopped(Ending::AlreadyGone));
            };
            Ok(Stopped(power_off(&ctx, host, running)?))
        });
        lab.kill_all();
        stopped
    }
}

/// Powers a running guest off: its agent's poweroff works on every machine type, QMP
/// powerdown only where the guest has a power button (x86 ACPI); `Vm::shutdown` then waits,
/// quits, kills.
fn power_off(ctx: &Ctx, host: &Host, mut running: Running) -> Result<Ending, LabError> {
    if let Err(err) = host.request_poweroff() {
        tracing::warn!(guest = %host, "agent poweroff failed, relying on QMP: {err}");
    }
    Ok(ctx
        .runtime
        .block_on(running.vm.shutdown(Duration::from_secs(15)))?)
}

impl Lab {
    /// Makes the next boot of `plan`'s guest, as `spec` says, boot `image`.
    fn boot_image(
        &mut self,
        spec: &mut qemu::MachineSpec,
        plan: &GuestPlan,
        image: &MachineImage,
    ) -> Result<(), LabError> {
        let media = image_media(image);
        match &spec.boot {
            qemu::Boot::Direct { .. } => {
                spec.boot = direct_boot(plan, media);
                Ok(())
            }
            qemu::Boot::Network(_) => {
                let (Some(server), Some(source), Some((dir, _))) =
                    (&self.boot_server, &mut self.boot_source, &self.dir)
                else {
                    unreachable!("a network-booted guest's lab has a boot server");
                };
                netboot::set_media(server, source, dir.path(), plan, &media)
            }
        }
    }

    /// Starts guest `index` again as `spec` says and waits for its agent; returns how long
    /// that took.
    fn start_again(
        &self,
        ctx: &Ctx,
        index: usize,
        plan: &GuestPlan,
        spec: qemu::MachineSpec,
    ) -> Result<Duration, LabError> {
        let started = Instant::now();
        let spawner = self.spawner.as_ref().expect("a booted lab has a spawner");
        let vm = spawner.spawn(spec)?;
        let registration = janitor::process_group(vm.pid().cast_signed());
        let slot = &self.guests[index];
        *lock(slot) = Some(Running {
            vm,
            _registration: registration,
        });
        let waiter = Waiter {
            ctx,
            secret: &self.secret,
            timeout: self.boot_timeout,
            boot_server: self.boot_server.as_ref(),
        };
        let host = &self.hosts[index];
        let (Some(agent), Some(console_log)) = (host.agent_address(), host.console_log()) else {
            unreachable!("a lab's hosts are guests");
        };
        let client = waiter.wait_ready(plan, slot, agent, started, console_log)?;
        host.reconnected(client);
        Ok(started.elapsed())
    }
}

/// A value shown under a name in task lines.
#[derive(Debug)]
struct Named<T>(String, T);

impl<T> std::fmt::Display for Named<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
struct GuestPlan {
    index: usize,
    machine: MachineSpec,
    data_ip: Ipv4Addr,
}

impl std::fmt::Display for GuestPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.machine.name, self.machine.arch)
    }
}

fn planned_lab(ctx: &Arc<Ctx>, spec: &LabSpec, run: &crate::Run) -> Result<Lab, LabError> {
    let secret = Secret::generate()?;
    let hosts = spec
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let address = HostAddress {
                name: m.name.clone(),
                arch: m.arch,
                data_ip: spec.data_ip(i),
                agent: SocketAddr::from((Ipv4Addr::LOCALHOST, AGENT_PORT)),
                secret: secret.clone(),
                console_log: ctx
                    .paths
                    .lab_logs(&spec.name)
                    .join(format!("{}.console.log", m.name)),
                booted: None,
                published: BTreeMap::new(),
            };
            Host::new(ctx.clone(), address, None)
        })
        .collect::<Vec<_>>();
    for host in &hosts {
        run.task(&format!("boot [{host} ({})]", host.arch()), || {
            Ok::<_, LabError>(host.clone())
        })
        .map_err(|e| LabError::Spec {
            lab: spec.name.clone(),
            problem: e.to_string(),
        })?;
    }
    Ok(Lab {
        hosts,
        guests: Vec::new(),
        secret,
        spawner: None,
        switch: None,
        boot_server: None,
        boot_source: None,
        plans: Vec::new(),
        boot_timeout: spec.boot_timeout,
        dir: None,
    })
}

/// The lab's private directory, switch and spawner thread.
fn start_lab(ctx: &Arc<Ctx>, spec: &LabSpec) -> Result<Lab, LabError> {
    std::fs::create_dir_all(&ctx.paths.runtime)
        .map_err(io_error("creating", &ctx.paths.runtime))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("sinew-{}-", spec.name))
        .tempdir_in(&ctx.paths.runtime)
        .map_err(io_error(
            "creating a private directory in",
            &ctx.paths.runtime,
        ))?;
    let registration = janitor::directory(dir.path().to_path_buf());
    let logs = ctx.paths.lab_logs(&spec.name);
    std::fs::create_dir_all(&logs).map_err(io_error("creating", &logs))?;
    let switch = Switch::start(&dir.path().join("data.sock"))?;
    let secret = Secret::generate()?;
    let key = dir.path().join(KEY_FILE);
    write_private(&key, secret.to_hex().as_bytes()).map_err(io_error("writing", &key))?;
    Ok(Lab {
        hosts: Vec::new(),
        guests: Vec::new(),
        secret,
        spawner: Some(Spawner::start()),
        switch: Some(switch),
        boot_server: None,
        boot_source: None,
        plans: Vec::new(),
        boot_timeout: spec.boot_timeout,
        dir: Some((dir, registration)),
    })
}

/// Builds the base initramfs for `kernel`'s machine ([`guest_initramfs`], `agent` a static
/// sinew-init for that machine) and stores it in `cache/initramfs/` under its sha256. Same
/// inputs, same bytes: the outcome is `ok` when that image is already stored.
pub fn base_image(
    cache: &Path,
    kernel: &Kernel,
    agent: &Artifact,
    extra: &[&str],
) -> Result<BaseImage, LabError> {
    let bytes = guest_initramfs(kernel, agent, extra)?.finish();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let path = cache.join("initramfs").join(format!("{sha256}.cpio"));
    let new = store_once(&path, &bytes).map_err(io_error("storing", &path))?;
    Ok(BaseImage {
        arch: kernel.arch,
        path,
        sha256,
        new,
    })
}

/// What every guest's initramfs holds: `agent` as `/init`, the kernel modules the machine's
/// devices need plus `extra` ones, with their dependencies, and `/etc/sinew/modules`
/// listing them in load order.
pub(crate) fn guest_initramfs(
    kernel: &Kernel,
    agent: &Artifact,
    extra: &[&str],
) -> Result<Initramfs, LabError> {
    if agent.arch != kernel.arch {
        return Err(LabError::AgentArch {
            agent: agent.path.clone(),
            agent_arch: agent.arch,
            kernel: kernel.arch,
        });
    }
    let mut wanted: Vec<&str> = qemu::required_modules(kernel.arch).to_vec();
    wanted.extend(extra);
    let modules = sinew_vm::modules::resolve(&kernel.modules_dir, &wanted)?;
    let mut image = Initramfs::new();
    image.add_file_from(INIT_PATH, &agent.path, 0o755)?;
    let mut order = String::new();
    for module in &modules {
        image.add_file_from(
            &format!("lib/modules/{}/{}", kernel.release, module.rel_path),
            &module.path,
            0o644,
        )?;
        order.push_str(&module.rel_path);
        order.push('\n');
    }
    image.add_file("etc/sinew/modules", order.into_bytes(), 0o644)?;
    Ok(image)
}

/// Everything a guest's boot needs from its lab.
struct LabSetup<'a> {
    ctx: &'a Arc<Ctx>,
    spec: &'a LabSpec,
    waiter: Waiter<'a>,
    kernels: &'a [Kernel],
    bases: &'a [BaseImage],
    /// The aarch64 network loader, when an aarch64 guest boots from the network.
    loader: Option<&'a GrubLoader>,
    dir: PathBuf,
    switch_socket: PathBuf,
    spawner: &'a Spawner,
}

/// QEMU booting `media` itself, with the image's arguments and `plan`'s own.
fn direct_boot(plan: &GuestPlan, media: Media) -> qemu::Boot {
    let mut args = media.args;
    args.push(kernel_cmdline(plan));
    qemu::Boot::Direct {
        kernel: media.kernel,
        initrd: media.initrd,
        cmdline_extra: args.join(" "),
    }
}

/// What a guest booting `image` boots.
fn image_media(image: &MachineImage) -> Media {
    Media {
        kernel: image.kernel.clone(),
        kernel_sha256: Some(image.manifest.kernel.sha256),
        initrd: image.initrd.clone(),
        initrd_sha256: image.manifest.initrd.sha256,
        args: image.manifest.args.clone(),
    }
}

/// What `plan`'s guest boots: its machine image, or the lab's kernel and base image.
fn media(plan: &GuestPlan, kernels: &[Kernel], bases: &[BaseImage]) -> Media {
    let arch = plan.machine.arch;
    if let Some(image) = &plan.machine.image {
        return image_media(image);
    }
    let kernel = kernels
        .iter()
        .find(|k| k.arch == arch)
        .expect("prepared for every arch");
    let base = bases
        .iter()
        .find(|b| b.arch == arch)
        .expect("made for every arch without images");
    Media {
        kernel: kernel.image.clone(),
        kernel_sha256: None,
        initrd: base.path.clone(),
        initrd_sha256: base
            .sha256
            .parse()
            .expect("a base image's name is its digest"),
        args: Vec::new(),
    }
}

impl LabSetup<'_> {
    /// Boots one guest into `slot` and waits for its agent.
    fn boot(&self, plan: &GuestPlan, slot: &Slot) -> Result<Host, LabError> {
        let m = &plan.machine;
        let boot = match m.boot {
            BootFrom::Direct => direct_boot(plan, media(plan, self.kernels, self.bases)),
            BootFrom::Network => qemu::Boot::Network(qemu::NetworkBoot {
                server_port: self.waiter.boot_server.map_or(0, |s| s.addr().port()),
                loader: self.loader.map(|l| l.root.clone()),
            }),
        };
        let console_log = self
            .ctx
            .paths
            .lab_logs(&self.spec.name)
            .join(format!("{}.console.log", m.name));
        let mut candidates = accel::candidates(m.arch, &self.ctx.paths.state)?;
        let started = Instant::now();
        let mut fell_back = false;
        loop {
            let accel = candidates.remove(0);
            // QEMU binds them a moment later.
            let free_port = || {
                sinew_support::ports::free_loopback_port().map_err(|source| LabError::Io {
                    action: "finding a free port on",
                    path: "127.0.0.1".into(),
                    source,
                })
            };
            let port = free_port()?;
            let published = m
                .published
                .iter()
                .map(|guest_port| Ok((free_port()?, *guest_port)))
                .collect::<Result<Vec<_>, LabError>>()?;
            let vm_spec = qemu::MachineSpec {
                accel,
                cpus: m.cpus,
                memory_mib: m.memory_mib,
                fw_cfg: vec![(KEY_FW_CFG.to_owned(), self.dir.join(KEY_FILE))],
                console_log: console_log.clone(),
                control: Some(ControlNic {
                    host_port: port,
                    guest_port: AGENT_PORT,
                    published: published.clone(),
                    mac: nic_mac(plan, 0),
                }),
                data: Some(DataNic {
                    switch_socket: self.switch_socket.clone(),
                    mac: nic_mac(plan, 1),
                }),
                ..qemu::MachineSpec::booting(&m.name, m.arch, boot.clone(), &self.dir)
            };
            let vm = match self.spawner.spawn(vm_spec) {
                // Some hosts refuse KVM outright (QEMU aborts setting up the vCPU) rather
                // than hanging: just as final a verdict.
                Err(LabError::Vm(err @ VmError::EarlyExit { .. }))
                    if accel == Accel::Kvm && !candidates.is_empty() =>
                {
                    self.kvm_failed(&m.name, &err.to_string());
                    fell_back = true;
                    continue;
                }
                spawned => spawned?,
            };
            let registration = janitor::process_group(vm.pid().cast_signed());
            *lock(slot) = Some(Running {
                vm,
                _registration: registration,
            });
            if accel == Accel::Kvm && !candidates.is_empty() {
                if !self.console_speaks(slot, kvm_deadline()) {
                    if let Some(mut running) = lock(slot).take() {
                        running.vm.kill();
                    }
                    self.kvm_failed(&m.name, "no console output");
                    fell_back = true;
                    continue;
                }
                self.remember_kvm(true);
            }
            let agent = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let client = self
                .waiter
                .wait_ready(plan, slot, agent, started, &console_log)?;
            let booted = Booted {
                accel,
                ready_after: started.elapsed(),
                fell_back,
            };
            let address = HostAddress {
                name: m.name.clone(),
                arch: m.arch,
                data_ip: plan.data_ip,
                agent,
                secret: self.waiter.secret.clone(),
                console_log,
                booted: Some(booted.clone()),
                published: published
                    .iter()
                    .map(|(host_port, guest_port)| {
                        (
                            *guest_port,
                            SocketAddr::from((Ipv4Addr::LOCALHOST, *host_port)),
                        )
                    })
                    .collect(),
            };
            return Ok(Host::new(self.ctx.clone(), address, Some(client)));
        }
    }

    /// Records that KVM does not boot guests here, and says so: `guest` is restarted
    /// under TCG.
    fn kvm_failed(&self, guest: &str, why: &str) {
        self.remember_kvm(false);
        tracing::warn!(guest, "KVM failed ({why}); restarting under TCG");
    }

    fn remember_kvm(&self, works: bool) {
        if let Err(err) = accel::remember(&self.ctx.paths.state, works) {
            tracing::warn!("cannot remember whether KVM works here: {err}");
        }
    }

    fn console_speaks(&self, slot: &Slot, deadline: Duration) -> bool {
        let Some(console) = lock(slot).as_ref().map(|r| r.vm.console().clone()) else {
            return false;
        };
        self.ctx
            .runtime
            .block_on(console.wait_for_output(deadline))
            .is_ok()
    }
}

/// What a guest boots.
struct Media {
    kernel: PathBuf,
    /// The kernel's digest, when known without reading it.
    kernel_sha256: Option<Sha256Digest>,
    initrd: PathBuf,
    initrd_sha256: Sha256Digest,
    /// The image's own kernel arguments.
    args: Vec<String>,
}

/// The guest's own kernel parameters, read by sinew-init. The secret is not among them.
fn kernel_cmdline(plan: &GuestPlan) -> String {
    format!(
        "rdinit=/{INIT_PATH} sinew.hostname={name} sinew.if={ctl},{addr}/{prefix},{gw} sinew.if={data},{ip}/24 sinew.agent_port={AGENT_PORT}",
        name = plan.machine.name,
        ctl = nic_mac(plan, 0),
        addr = qemu::CONTROL_GUEST_ADDR,
        prefix = qemu::CONTROL_PREFIX_LEN,
        gw = qemu::CONTROL_GATEWAY,
        data = nic_mac(plan, 1),
        ip = plan.data_ip,
    )
}

/// NIC `nic` (0 control, 1 data) of a guest: stable per guest name, unique in a lab.
fn nic_mac(plan: &GuestPlan, nic: u8) -> MacAddr {
    MacAddr::for_guest(&plan.machine.name, nic)
}

/// The MAC of the control NIC of the guest called `guest`, the one it boots from the
/// network with (its boot server requests carry it as their `mac` label).
pub fn control_mac(guest: &str) -> MacAddr {
    MacAddr::for_guest(guest, 0)
}

/// Maps an I/O error while doing `action` on `path` into a [`LabError`].
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.to_path_buf();
    move |source| LabError::Io {
        action,
        path,
        source,
    }
}

fn kvm_deadline() -> Duration {
    std::env::var("SINEW_KVM_DEADLINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(8))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
