//! Running QEMU guests: spawn, watch, shut down, and never leave one behind.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::console::{qemu_output, Console};
use crate::netboot::{self, GrubLoader};
use crate::process::Process;
use crate::qemu::host_tsc_khz;
use crate::qmp::{Qmp, QmpError};
use crate::{args, Accel, Arch, Boot, MachineSpec};

/// How long [`Vm::spawn`] waits for QEMU to finish initialising.
const STARTUP: Duration = Duration::from_secs(10);
/// Longest unix socket path (`sun_path` is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Time allowed for each QMP step of [`Vm::shutdown`] (connect, then `quit` and
/// the exit that follows).
const QMP_STEP: Duration = Duration::from_secs(3);

/// A running (or finished, not yet dropped) QEMU guest. Dropping it kills and
/// reaps QEMU and removes its QMP socket.
#[derive(Debug)]
pub struct Vm {
    spec: MachineSpec,
    process: Process,
    console: Console,
}

/// How [`Vm::shutdown`] ended the guest (QEMU's exit status is then in
/// [`Vm::try_wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// QEMU had already exited before the shutdown began.
    AlreadyGone,
    /// The guest powered off within the grace period.
    PoweredOff,
    /// QEMU obeyed QMP `quit` after the grace period.
    Quit,
    /// QEMU had to be killed with SIGKILL.
    Killed,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ending::AlreadyGone => "already gone",
            Ending::PoweredOff => "powered off",
            Ending::Quit => "quit through QMP after the grace period",
            Ending::Killed => "killed",
        })
    }
}

/// Error from starting or controlling a [`Vm`].
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The kernel, initrd, loader or an fw_cfg file is missing or unreadable.
    #[error("guest {name}: cannot read its {what} {path}: {source}")]
    BootFile {
        /// The guest.
        name: String,
        /// `kernel`, `initrd`, `network loader` or `fw_cfg file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A network boot was asked for a guest without a control NIC to boot from.
    #[error("guest {name}: a network boot needs a control NIC (MachineSpec::control)")]
    NetworkBootWithoutNic {
        /// The guest.
        name: String,
    },
    /// An aarch64 network boot without the GRUB loader.
    #[error("guest {name}: an aarch64 network boot needs the GRUB loader (NetworkBoot::loader, from sinew_vm::netboot::GrubLoader)")]
    NoLoader {
        /// The guest.
        name: String,
    },
    /// The firmware a network boot needs is not installed.
    #[error("guest {name}: network boot needs {path}; install the Debian package {package}")]
    NoFirmware {
        /// The guest.
        name: String,
        /// The missing file.
        path: PathBuf,
        /// The package that ships it.
        package: &'static str,
    },
    /// An fw_cfg entry name QEMU cannot take.
    #[error("guest {name}: fw_cfg entry {entry:?} must be a non-empty name without commas")]
    FwCfgName {
        /// The guest.
        name: String,
        /// The entry's name.
        entry: String,
    },
    /// A unix socket path is longer than the kernel allows.
    #[error("guest {name}: socket path {path} is {len} bytes; unix sockets allow at most {MAX_SOCKET_PATH}")]
    SocketPath {
        /// The guest.
        name: String,
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// An x86_64 TCG guest without `tsc_khz` would hang at TSC calibration.
    #[error("guest {name}: x86_64 under TCG needs MachineSpec::tsc_khz (see host_tsc_khz); the kernel hangs calibrating the TSC without it")]
    NoTsc {
        /// The guest.
        name: String,
    },
    /// The QEMU binary is not installed.
    #[error("guest {name}: {binary} not found; install the Debian package {package}")]
    NoQemu {
        /// The guest.
        name: String,
        /// The missing binary.
        binary: &'static str,
        /// The package that ships it.
        package: &'static str,
    },
    /// A file the guest needs could not be prepared.
    #[error("guest {name}: cannot {action} {path}: {source}")]
    Io {
        /// The guest.
        name: String,
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU could not be started or waited for.
    #[error("guest {name}: {binary}: {source}")]
    Process {
        /// The guest.
        name: String,
        /// The QEMU binary.
        binary: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU exited while starting, typically over its arguments.
    #[error("guest {name}: {binary} exited at startup ({status}): {output}")]
    EarlyExit {
        /// The guest.
        name: String,
        /// The QEMU binary.
        binary: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its stdout/stderr.
        output: String,
    },
}

impl Vm {
    /// Starts QEMU for `spec` and returns once it runs the guest, or reports why
    /// not: missing boot files, a missing QEMU binary, or QEMU's own error output
    /// when it gives up during initialisation (bad arguments, an unreadable
    /// kernel, a host port or switch socket it cannot use).
    ///
    /// QEMU runs in its own process group with `PR_SET_PDEATHSIG(SIGKILL)`, so it
    /// dies with this program even if this program is SIGKILLed. The kernel sends
    /// that signal when the *thread* that spawned QEMU exits, not the process:
    /// call this from a thread that lives as long as the guest (the main thread),
    /// never from a pool thread such as tokio's `spawn_blocking`, which may end and
    /// take the guest with it.
    pub fn spawn(mut spec: MachineSpec) -> Result<Vm, VmError> {
        let name = spec.name.clone();
        if spec.tsc_khz.is_none() {
            spec.tsc_khz = host_tsc_khz();
        }
        preflight(&spec)?;
        let binary = spec.arch.qemu_binary();
        let io_err = |action, path: &Path| {
            let name = name.clone();
            let path = path.to_owned();
            move |source| VmError::Io {
                name,
                action,
                path,
                source,
            }
        };
        for path in [&spec.console_log, &spec.qmp_socket] {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            }
        }
        match std::fs::remove_file(&spec.qmp_socket) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(io_err("remove stale", &spec.qmp_socket)(e))
            }
            _ => {}
        }
        // An empty log now, so that waits never see the previous boot's output.
        File::create(&spec.console_log).map_err(io_err("create", &spec.console_log))?;
        let qemu_log = spec.qemu_log();
        let out = File::create(&qemu_log).map_err(io_err("create", &qemu_log))?;
        let err = out.try_clone().map_err(io_err("open", &qemu_log))?;

        let mut command = Command::new(binary);
        command
            .args(args(&spec))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes the
        // async-signal-safe prctl and getppid system calls.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The parent may have died before prctl took effect.
                if nix::unistd::getppid().as_raw() != parent.cast_signed() {
                    // No allocation between fork and exec: a static errno, not a message.
                    return Err(nix::errno::Errno::ESRCH.into());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| match source.kind() {
            ErrorKind::NotFound => VmError::NoQemu {
                name: name.clone(),
                binary,
                package: spec.arch.qemu_package(),
            },
            _ => VmError::Process {
                name: name.clone(),
                binary,
                source,
            },
        })?;
        tracing::debug!(guest = %name, pid = child.id(), accel = %spec.accel, "QEMU started");
        let process = Process::new(child);
        let console = Console::new(&name, &spec.console_log, &qemu_log, process.clone());
        let vm = Vm {
            spec,
            process,
            console,
        };
        vm.await_startup()?;
        Ok(vm)
    }

    /// The spec it was started with.
    pub fn spec(&self) -> &MachineSpec {
        &self.spec
    }

    /// QEMU's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The guest's serial console.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// QEMU's exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// Waits up to `timeout` for QEMU to exit; `None` if it still runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20).min(deadline - now)).await;
        }
    }

    /// Opens a QMP connection to this guest's QEMU, waiting up to `timeout`.
    pub async fn qmp(&self, timeout: Duration) -> Result<Qmp, QmpError> {
        Qmp::connect(&self.spec.qmp_socket, timeout).await
    }

    /// Shuts the guest down: presses the power button over QMP (harmless where the
    /// guest ignores it: aarch64 cloud kernels have no power-button driver, so the
    /// SDK asks the agent instead), waits up to `grace` for QEMU to exit, then
    /// sends QMP `quit`, then SIGKILL. QEMU is always reaped. QEMU serves one QMP
    /// client at a time: drop any [`Qmp`] of this guest first, or the steps that
    /// need QMP are skipped.
    pub async fn shutdown(&mut self, grace: Duration) -> Result<Ending, VmError> {
        if self.try_wait().is_some() {
            return Ok(Ending::AlreadyGone);
        }
        let deadline = Instant::now() + grace;
        if let Ok(mut qmp) = self.qmp(grace.min(QMP_STEP)).await {
            let powerdown = tokio::time::timeout_at(deadline.into(), qmp.system_powerdown()).await;
            if matches!(powerdown, Ok(Ok(()))) {
                let left = deadline.saturating_duration_since(Instant::now());
                if self.wait_exit(left).await.is_some() {
                    return Ok(Ending::PoweredOff);
                }
            }
            if let Ok(Err(e)) = tokio::time::timeout(QMP_STEP, qmp.quit()).await {
                tracing::debug!(guest = %self.spec.name, error = %e, "QMP quit failed");
            }
            if self.wait_exit(QMP_STEP).await.is_some() {
                return Ok(Ending::Quit);
            }
        }
        match self.process.kill().map_err(|e| self.process_err(e))? {
            (_, true) => Ok(Ending::Killed),
            (_, false) => Ok(Ending::PoweredOff),
        }
    }

    /// Kills QEMU with SIGKILL and reaps it; returns its exit status (`None` only
    /// if it could not be collected, which is logged). Calling it again, or on a
    /// QEMU that already exited, just returns the status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        match self.process.kill() {
            Ok((status, _)) => Some(status),
            Err(e) => {
                tracing::warn!(guest = %self.spec.name, error = %e, "cannot kill and reap QEMU");
                None
            }
        }
    }

    /// Waits until QEMU has initialised, or fails with its output if it exits
    /// first. QEMU serves the QMP socket (and greets) from its monitor thread
    /// early, but runs commands in its main loop, which starts only after the
    /// machine, kernel and backends are set up: an answered command means
    /// everything that can fail at startup has passed.
    fn await_startup(&self) -> Result<(), VmError> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(VmError::EarlyExit {
                    name: self.spec.name.clone(),
                    binary: self.spec.arch.qemu_binary(),
                    status,
                    output: qemu_output(&self.spec.qemu_log()),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || greeted(&self.spec.qmp_socket, left) {
                // Past the deadline QEMU is merely slow; later waits see it die.
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn process_err(&self, source: std::io::Error) -> VmError {
        VmError::Process {
            name: self.spec.name.clone(),
            binary: self.spec.arch.qemu_binary(),
            source,
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.spec.qmp_socket);
    }
}

/// Whether QEMU's QMP socket greets and answers `qmp_capabilities` within
/// `timeout`. The connection is closed afterwards, which leaves the monitor free
/// for the next client.
fn greeted(socket: &Path, timeout: Duration) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let Ok(reader) = stream.try_clone() else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    let mut lines = BufReader::new(reader).lines();
    let greeting = lines.next().and_then(Result::ok).unwrap_or_default();
    if !greeting.contains("\"QMP\"")
        || stream
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .is_err()
    {
        return false;
    }
    lines
        .next()
        .and_then(Result::ok)
        .is_some_and(|reply| reply.contains("\"return\""))
}

/// Checks what would make QEMU fail or hang, before starting it.
fn preflight(spec: &MachineSpec) -> Result<(), VmError> {
    let mut needed: Vec<(&'static str, PathBuf)> = Vec::new();
    match &spec.boot {
        Boot::Direct { kernel, initrd, .. } => {
            needed.push(("kernel", kernel.clone()));
            needed.push(("initrd", initrd.clone()));
        }
        Boot::Network(boot) => {
            if spec.control.is_none() {
                return Err(VmError::NetworkBootWithoutNic {
                    name: spec.name.clone(),
                });
            }
            let (firmware, package) = netboot::firmware(spec.arch);
            if !Path::new(firmware).is_file() {
                return Err(VmError::NoFirmware {
                    name: spec.name.clone(),
                    path: firmware.into(),
                    package,
                });
            }
            match (spec.arch, &boot.loader) {
                (Arch::Aarch64, Some(loader)) => {
                    needed.push(("network loader", loader.join(GrubLoader::BOOT_FILE)));
                }
                (Arch::Aarch64, None) => {
                    return Err(VmError::NoLoader {
                        name: spec.name.clone(),
                    })
                }
                (Arch::X86_64, _) => {}
            }
        }
    }
    for (name, file) in &spec.fw_cfg {
        if name.is_empty() || name.contains(',') {
            return Err(VmError::FwCfgName {
                name: spec.name.clone(),
                entry: name.clone(),
            });
        }
        needed.push(("fw_cfg file", file.clone()));
    }
    for (what, path) in needed {
        File::open(&path).map_err(|source| VmError::BootFile {
            name: spec.name.clone(),
            what,
            path,
            source,
        })?;
    }
    let sockets = [
        Some(&spec.qmp_socket),
        spec.data.as_ref().map(|d| &d.switch_socket),
    ];
    for path in sockets.into_iter().flatten() {
        let len = path.as_os_str().as_bytes().len();
        if len > MAX_SOCKET_PATH {
            return Err(VmError::SocketPath {
                name: spec.name.clone(),
                path: path.clone(),
                len,
            });
        }
    }
    let direct = matches!(spec.boot, Boot::Direct { .. });
    if direct && spec.arch == Arch::X86_64 && spec.accel == Accel::Tcg && spec.tsc_khz.is_none() {
        return Err(VmError::NoTsc {
            name: spec.name.clone(),
        });
    }
    Ok(())
}
