//! A lab: guests booted together, sharing a private data-plane segment.
//!
//! Booting a lab: kernels and QEMU are made ready ([`crate::Run::prepare`]), the agent is
//! cross-compiled for each architecture, a reproducible base initramfs is made per
//! architecture (agent + kernel modules; same inputs, same sha256), and every guest gets
//! that base plus a small archive of its own holding the lab's secret, so the secret is
//! never on a command line. Guests boot in parallel; each is ready when its agent answers
//! an authenticated handshake.
//!
//! Acceleration: KVM is tried where `/dev/kvm` works and this host is not known to hang
//! under it; a guest that prints nothing on its console within `SINEW_KVM_DEADLINE`
//! seconds (default 8) is restarted under TCG, and the host is remembered as hanging.
//! `SINEW_ACCEL=kvm|tcg` forces either.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sinew_proto::{AgentClient, Secret};
use sinew_vm::accel::{self, Accel};
use sinew_vm::initramfs::Initramfs;
use sinew_vm::kernel::Kernel;
use sinew_vm::machine::Vm;
use sinew_vm::qemu::{self, ControlNic, DataNic};
use sinew_vm::switch::Switch;
use sinew_vm::Arch;

use crate::build::{Artifacts, Build};
use crate::host::{Host, HostAddress};
use crate::janitor::{self, Registration};
use crate::outcome::{Outcome, Status, TaskFailed};
use crate::run::Ctx;

/// The port the agent listens on inside every guest.
pub const AGENT_PORT: u16 = 7070;
/// Where the agent binary lives in the initramfs (the kernel runs `/init`).
const INIT_PATH: &str = "init";

/// Errors booting or stopping a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
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
    /// Boot media could not be made.
    #[error(transparent)]
    Modules(#[from] sinew_vm::modules::ModuleError),
    /// QEMU could not be started or controlled.
    #[error(transparent)]
    Vm(#[from] sinew_vm::machine::VmError),
    /// The data-plane switch could not start.
    #[error(transparent)]
    Switch(#[from] sinew_vm::switch::SwitchError),
    /// Acceleration choice failed (a bad `SINEW_ACCEL`).
    #[error(transparent)]
    Accel(#[from] sinew_vm::accel::AccelError),
    /// The guest did not become ready.
    #[error("{guest} was not ready after {waited:?} ({why}); console log {log}, last lines:\n{tail}")]
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
}

impl MachineSpec {
    /// A guest called `name` of `arch` with default size.
    pub fn new(name: &str, arch: Arch) -> Self {
        Self { name: name.into(), arch, cpus: 1, memory_mib: 256, modules: Vec::new(), data_ip: None }
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
        let problem = |p: String| LabError::Spec { lab: self.name.clone(), problem: p };
        if self.machines.is_empty() {
            return Err(problem("no machines".into()));
        }
        let mut names = BTreeSet::new();
        for m in &self.machines {
            if m.name.is_empty() || !m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(problem(format!("machine name {:?} must be letters, digits and '-'", m.name)));
            }
            if !names.insert(&m.name) {
                return Err(problem(format!("two machines are called {:?}", m.name)));
            }
        }
        if self.machines.len() > 200 {
            return Err(problem("more than 200 machines do not fit the data-plane /24".into()));
        }
        Ok(())
    }

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
    guests: Vec<Guest>,
    spawner: Option<Spawner>,
    switch: Option<Switch>,
    dir: Option<(tempfile::TempDir, Registration)>,
}

/// A running guest and what its cleanup needs.
#[derive(Debug)]
struct Guest {
    vm: Arc<Mutex<Option<Vm>>>,
}

impl Lab {
    /// The lab's hosts, in specification order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name() == name)
    }

    fn kill_all(&mut self) {
        for guest in &self.guests {
            if let Some(mut vm) = lock(&guest.vm).take() {
                vm.kill();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_all();
        self.spawner.take();
        self.switch.take();
        self.dir.take();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Dry run: nothing was started.
    pub planned: bool,
}

impl Outcome for Booted {
    fn status(&self) -> Status {
        if self.planned {
            Status::Planned
        } else {
            Status::Changed
        }
    }

    fn detail(&self) -> Option<String> {
        if self.planned {
            return Some("would boot".into());
        }
        let fallback = if self.fell_back { " (kvm hung, fell back)" } else { "" };
        Some(format!("{:?}{fallback}, agent ready after {:.2}s", self.accel, self.ready_after.as_secs_f64()))
    }
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
        if self.new {
            Status::Changed
        } else {
            Status::Ok
        }
    }

    fn detail(&self) -> Option<String> {
        Some(format!("sha256 {}", self.sha256))
    }
}

/// Shuts a guest down: how it ended.
#[derive(Debug, Clone)]
pub struct Stopped(pub sinew_vm::machine::Ending);

impl Outcome for Stopped {
    fn status(&self) -> Status {
        Status::Changed
    }

    fn detail(&self) -> Option<String> {
        Some(format!("{:?}", self.0))
    }
}

impl crate::Run {
    /// Boots `spec`: prerequisites, agent build, boot media, then every guest in parallel.
    pub fn boot(&self, spec: &LabSpec) -> Result<Lab, TaskFailed> {
        let ctx = self.ctx().clone();
        self.task(&format!("check lab {}", spec.name), || spec.validate().map(|()| ()))?;
        let archs: Vec<Arch> = spec.machines.iter().map(|m| m.arch).collect::<BTreeSet<_>>().into_iter().collect();
        let kernels = self.prepare(&archs)?;
        let agents = self.build(&Build::bins(&["sinew-init"]).archs(&archs))?;
        if ctx.dry_run() {
            return Ok(planned_lab(&ctx, spec, self));
        }
        let mut bases = Vec::new();
        for kernel in &kernels {
            let extra: Vec<&str> = spec
                .machines
                .iter()
                .filter(|m| m.arch == kernel.arch)
                .flat_map(|m| m.modules.iter().map(String::as_str))
                .collect();
            let base = self.task(&format!("initramfs {}", kernel.arch), || {
                base_image(&ctx, kernel, &agents, &extra)
            })?;
            bases.push(base);
        }
        let mut lab = self.task(&format!("start lab {}", spec.name), || start_lab(&ctx, spec))?;
        let secret = Secret::generate();
        let plans: Vec<GuestPlan> = spec
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| GuestPlan { index: i, machine: m.clone(), data_ip: spec.data_ip(i) })
            .collect();
        let setup = LabSetup {
            ctx: &ctx,
            spec,
            secret: &secret,
            kernels: &kernels,
            bases: &bases,
            dir: lab.dir.as_ref().map(|(d, _)| d.path().to_path_buf()).unwrap_or_default(),
            switch_socket: lab.switch.as_ref().map(|s| s.socket().to_path_buf()).unwrap_or_default(),
            spawner: lab.spawner.as_ref().expect("started above"),
        };
        let slots: Vec<Arc<Mutex<Option<Vm>>>> = plans.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        lab.guests = slots.iter().map(|vm| Guest { vm: vm.clone() }).collect();
        let booted = self.each(&plans, "boot", |plan| setup.boot(plan, &slots[plan.index]));
        let booted = booted?;
        lab.hosts = booted.into_iter().map(|(_, host)| host).collect();
        Ok(lab)
    }

    /// Stops every guest of `lab` gracefully (agent poweroff, then QMP), in parallel.
    pub fn shutdown(&self, mut lab: Lab) -> Result<Vec<Stopped>, TaskFailed> {
        if self.is_dry_run() {
            return Ok(Vec::new());
        }
        let pairs: Vec<(Host, Arc<Mutex<Option<Vm>>>)> =
            lab.hosts.iter().cloned().zip(lab.guests.iter().map(|g| g.vm.clone())).collect();
        let named: Vec<Named<(Host, Arc<Mutex<Option<Vm>>>)>> =
            pairs.into_iter().map(|p| Named(p.0.name().to_string(), p)).collect();
        let ctx = self.ctx().clone();
        let stopped = self.each(&named, "shutdown", |Named(_, (host, slot))| {
            let vm = lock(slot).take();
            let Some(mut vm) = vm else {
                return Ok::<_, LabError>(Stopped(sinew_vm::machine::Ending::AlreadyGone));
            };
            // The agent path works on every machine type; QMP powerdown only where the
            // guest has a power button (x86 ACPI). `shutdown` tries both, then quits.
            let _ = host.request_poweroff();
            let ending = ctx.runtime.block_on(vm.shutdown(Duration::from_secs(15)))?;
            Ok(Stopped(ending))
        });
        lab.kill_all();
        stopped
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

fn planned_lab(ctx: &Arc<Ctx>, spec: &LabSpec, run: &crate::Run) -> Lab {
    let hosts = spec
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let _ = run.task(&format!("boot [{} ({})]", m.name, m.arch), || {
                Ok::<_, LabError>(Booted { accel: Accel::Tcg, ready_after: Duration::ZERO, fell_back: false, planned: true })
            });
            let address = HostAddress {
                name: m.name.clone(),
                arch: m.arch,
                data_ip: spec.data_ip(i),
                agent: SocketAddr::from((Ipv4Addr::LOCALHOST, AGENT_PORT)),
                secret: Secret::generate(),
                console_log: ctx.paths.lab_logs(&spec.name).join(format!("{}.console.log", m.name)),
                booted: None,
            };
            Host::new(ctx.clone(), address, None)
        })
        .collect();
    Lab { hosts, guests: Vec::new(), spawner: None, switch: None, dir: None }
}

/// The lab's private directory, switch and spawner thread.
fn start_lab(ctx: &Arc<Ctx>, spec: &LabSpec) -> Result<Lab, LabError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| LabError::Io { action, path, source }
    };
    std::fs::create_dir_all(&ctx.paths.runtime).map_err(io("creating", &ctx.paths.runtime))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("sinew-{}-", spec.name))
        .tempdir_in(&ctx.paths.runtime)
        .map_err(io("creating a private directory in", &ctx.paths.runtime))?;
    let registration = janitor::directory(dir.path().to_path_buf());
    let logs = ctx.paths.lab_logs(&spec.name);
    std::fs::create_dir_all(&logs).map_err(io("creating", &logs))?;
    let switch = Switch::start(&dir.path().join("data.sock"))?;
    Ok(Lab {
        hosts: Vec::new(),
        guests: Vec::new(),
        spawner: Some(Spawner::start()),
        switch: Some(switch),
        dir: Some((dir, registration)),
    })
}

/// Builds (or finds in the cache) the base initramfs for `kernel`'s architecture.
fn base_image(ctx: &Ctx, kernel: &Kernel, agents: &Artifacts, extra: &[&str]) -> Result<BaseImage, LabError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| LabError::Io { action, path, source }
    };
    let agent = agents.get("sinew-init", kernel.arch).map_err(|e| LabError::Spec {
        lab: ctx.name.clone(),
        problem: e.to_string(),
    })?;
    let mut wanted: Vec<&str> = qemu::required_modules(kernel.arch).to_vec();
    wanted.extend(extra);
    let modules = sinew_vm::modules::resolve(&kernel.modules_dir, &wanted)?;
    let mut image = Initramfs::new();
    let agent_bytes = std::fs::read(&agent.path).map_err(io("reading", &agent.path))?;
    image.file(INIT_PATH, 0o755, agent_bytes);
    let mut order = String::new();
    for module in &modules {
        let bytes = std::fs::read(&module.path).map_err(io("reading", &module.path))?;
        image.file(&format!("lib/modules/{}/{}", kernel.release, module.rel_path), 0o644, bytes);
        order.push_str(&module.rel_path);
        order.push('\n');
    }
    image.file("etc/sinew/modules", 0o644, order.into_bytes());
    let bytes = image.finish();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let dir = ctx.paths.cache.join("initramfs");
    let path = dir.join(format!("{sha256}.cpio"));
    let new = !path.exists();
    if new {
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let tmp = dir.join(format!(".{sha256}.partial"));
        std::fs::write(&tmp, &bytes).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("storing", &path))?;
    }
    Ok(BaseImage { arch: kernel.arch, path, sha256, new })
}

/// Everything a guest's boot needs from its lab.
struct LabSetup<'a> {
    ctx: &'a Arc<Ctx>,
    spec: &'a LabSpec,
    secret: &'a Secret,
    kernels: &'a [Kernel],
    bases: &'a [BaseImage],
    dir: PathBuf,
    switch_socket: PathBuf,
    spawner: &'a Spawner,
}

impl LabSetup<'_> {
    /// Boots one guest into `slot` and waits for its agent.
    fn boot(&self, plan: &GuestPlan, slot: &Arc<Mutex<Option<Vm>>>) -> Result<(Booted, Host), LabError> {
        let m = &plan.machine;
        let kernel = self.kernels.iter().find(|k| k.arch == m.arch).expect("prepared for every arch");
        let base = self.bases.iter().find(|b| b.arch == m.arch).expect("made for every arch");
        let initrd = self.guest_initrd(plan, base)?;
        let console_log = self.ctx.paths.lab_logs(&self.spec.name).join(format!("{}.console.log", m.name));
        let mut candidates = accel::candidates(m.arch, &self.ctx.paths.state)?;
        let started = Instant::now();
        let mut fell_back = false;
        loop {
            let accel = candidates.remove(0);
            let port = free_port().map_err(|source| LabError::Io { action: "finding a free port on", path: "127.0.0.1".into(), source })?;
            let vm_spec = qemu::MachineSpec {
                name: m.name.clone(),
                arch: m.arch,
                accel,
                cpus: m.cpus,
                memory_mib: m.memory_mib,
                kernel: kernel.image.clone(),
                initrd: initrd.clone(),
                cmdline_extra: kernel_cmdline(plan, self.spec),
                qmp_socket: self.dir.join(format!("{}.qmp", m.name)),
                console_log: console_log.clone(),
                control: Some(ControlNic { host_port: port, guest_port: AGENT_PORT, mac: mac(plan.index, 0) }),
                data: Some(DataNic { switch_socket: self.switch_socket.clone(), mac: mac(plan.index, 1) }),
            };
            let vm = self.spawner.spawn(vm_spec)?;
            let pgid = vm.pid();
            let registration = janitor::process_group(pgid);
            *lock(slot) = Some(vm);
            if accel == Accel::Kvm && !candidates.is_empty() {
                if self.console_speaks(slot, kvm_deadline()) {
                    accel::remember(&self.ctx.paths.state, true);
                } else {
                    tracing::warn!(guest = %m.name, "no console output under KVM; restarting under TCG");
                    accel::remember(&self.ctx.paths.state, false);
                    if let Some(mut vm) = lock(slot).take() {
                        vm.kill();
                    }
                    drop(registration);
                    fell_back = true;
                    continue;
                }
            }
            let agent = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let client = self.wait_ready(plan, slot, agent, started, &console_log)?;
            std::mem::forget(registration);
            let booted = Booted { accel, ready_after: started.elapsed(), fell_back, planned: false };
            let address = HostAddress {
                name: m.name.clone(),
                arch: m.arch,
                data_ip: plan.data_ip,
                agent,
                secret: self.secret.clone(),
                console_log,
                booted: Some(booted.clone()),
            };
            return Ok((booted, Host::new(self.ctx.clone(), address, Some(client))));
        }
    }

    /// Base image + this guest's own archive (the secret), in the lab's private directory.
    fn guest_initrd(&self, plan: &GuestPlan, base: &BaseImage) -> Result<PathBuf, LabError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| LabError::Io { action, path, source }
        };
        let mut own = Initramfs::new();
        own.file("etc/sinew/agent.key", 0o400, self.secret.to_hex().into_bytes());
        let mut bytes = std::fs::read(&base.path).map_err(io("reading", &base.path))?;
        bytes.extend(own.finish());
        let path = self.dir.join(format!("{}.initrd", plan.machine.name));
        write_private(&path, &bytes).map_err(io("writing", &path))?;
        Ok(path)
    }

    fn console_speaks(&self, slot: &Arc<Mutex<Option<Vm>>>, deadline: Duration) -> bool {
        let console = match lock(slot).as_ref() {
            Some(vm) => vm.console().clone(),
            None => return false,
        };
        self.ctx.runtime.block_on(console.wait_for_output(deadline)).is_ok()
    }

    /// Polls the agent until it completes a handshake, the guest dies, or time runs out.
    fn wait_ready(
        &self,
        plan: &GuestPlan,
        slot: &Arc<Mutex<Option<Vm>>>,
        agent: SocketAddr,
        started: Instant,
        console_log: &Path,
    ) -> Result<AgentClient, LabError> {
        let timeout = self.spec.boot_timeout;
        let not_ready = |why: String| {
            let tail = lock(slot).as_ref().map(|vm| vm.console().last_lines(20).join("\n")).unwrap_or_default();
            LabError::NotReady { guest: plan.machine.name.clone(), waited: timeout, why, log: console_log.into(), tail }
        };
        loop {
            if let Some(status) = lock(slot).as_mut().and_then(|vm| vm.try_wait()) {
                return Err(not_ready(format!("QEMU exited: {status}")));
            }
            let attempt = self.ctx.runtime.block_on(AgentClient::connect(agent, self.secret, Duration::from_secs(2)));
            match attempt {
                Ok(client) => return Ok(client),
                Err(err) if err.is_refused_by_auth() => return Err(not_ready(format!("agent refused the lab's secret: {err}"))),
                Err(err) if started.elapsed() >= timeout => return Err(not_ready(format!("last attempt: {err}"))),
                Err(_) => thread::sleep(Duration::from_millis(25)),
            }
        }
    }
}

fn kernel_cmdline(plan: &GuestPlan, spec: &LabSpec) -> String {
    let ctl = mac_text(mac(plan.index, 0));
    let data = mac_text(mac(plan.index, 1));
    let _ = spec;
    format!(
        "quiet panic=-1 rdinit=/{INIT_PATH} sinew.hostname={} sinew.if={ctl},10.0.2.15/24,10.0.2.2 sinew.if={data},{}/24 sinew.agent_port={AGENT_PORT}",
        plan.machine.name, plan.data_ip
    )
}

/// Locally administered MACs: NIC `nic` (0 control, 1 data) of guest `index`.
fn mac(index: usize, nic: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, nic, (index >> 8) as u8, index as u8]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn kvm_deadline() -> Duration {
    std::env::var("SINEW_KVM_DEADLINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(8))
}

/// A port the kernel just handed out on 127.0.0.1; QEMU binds it a moment later.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// Spawns QEMU from one long-lived thread. QEMU gets `PR_SET_PDEATHSIG`, which fires when
/// the *thread* that forked it ends; boot tasks run on short-lived threads, so they ask
/// this thread to spawn. It lives as long as the lab.
#[derive(Debug)]
struct Spawner {
    requests: Option<mpsc::Sender<(qemu::MachineSpec, mpsc::Sender<Result<Vm, sinew_vm::machine::VmError>>)>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Spawner {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel::<(qemu::MachineSpec, mpsc::Sender<Result<Vm, sinew_vm::machine::VmError>>)>();
        let thread = thread::Builder::new()
            .name("sinew-spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(Vm::spawn(spec));
                }
            })
            .ok();
        Self { requests: Some(tx), thread }
    }

    fn spawn(&self, spec: qemu::MachineSpec) -> Result<Vm, LabError> {
        let name = spec.name.clone();
        let (tx, rx) = mpsc::channel();
        let gone = || LabError::Spec { lab: name.clone(), problem: "the spawner thread is gone".into() };
        self.requests.as_ref().ok_or_else(gone)?.send((spec, tx)).map_err(|_| gone())?;
        Ok(rx.recv().map_err(|_| gone())??)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
