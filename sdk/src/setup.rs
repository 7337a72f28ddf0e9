//! Getting a machine ready to run playbooks: QEMU and a C cross-compiler for each guest
//! architecture, the musl rust targets, and Debian's stock cloud kernels.
//!
//! What is missing is installed when that is possible without asking (root, Debian's
//! `apt-get`, and `SINEW_NO_INSTALL` unset); otherwise the error gives the exact command.

use std::path::Path;
use std::process::Command;

use sinew_vm::deb::APT_LOCK_WAIT;
use sinew_vm::kernel::Kernel;
use sinew_vm::netboot::{self, GrubLoader};
use sinew_vm::Arch;

use crate::outcome::{last_lines, Outcome, Status};
use crate::paths::Paths;
use crate::report::Progress;

/// Errors preparing the machine.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Something is missing and sinew may not install it here.
    #[error("{what} is missing; install it with:\n    {command}")]
    Missing {
        /// What is missing.
        what: String,
        /// The command that installs it.
        command: String,
    },
    /// An install command failed.
    #[error("`{command}` failed:\n{output}")]
    InstallFailed {
        /// The command.
        command: String,
        /// The tail of its output.
        output: String,
    },
    /// A command could not be started at all.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Getting a kernel failed.
    #[error(transparent)]
    Kernel(#[from] sinew_vm::kernel::KernelError),
    /// Getting the aarch64 network loader failed.
    #[error(transparent)]
    Loader(#[from] sinew_vm::netboot::LoaderError),
}

/// A program on `PATH` (or a file at an absolute path, such as firmware) and the Debian
/// package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program name, or the file's absolute path.
    pub program: &'static str,
    /// The Debian package.
    pub package: &'static str,
}

/// The QEMU system emulator for guests of `arch`.
pub fn qemu(arch: Arch) -> Tool {
    match arch {
        Arch::X86_64 => Tool {
            program: "qemu-system-x86_64",
            package: "qemu-system-x86",
        },
        Arch::Aarch64 => Tool {
            program: "qemu-system-aarch64",
            package: "qemu-system-arm",
        },
    }
}

/// The firmware QEMU needs to boot a guest of `arch` from the network.
pub fn netboot_firmware(arch: Arch) -> Tool {
    let (program, package) = netboot::firmware(arch);
    Tool { program, package }
}

/// The C compiler that cross-compiles C and assembly in guest builds for `arch` (ring, under
/// rustls in sinew-run), as `.cargo/config.toml` names it: the host's gcc serves x86_64,
/// clang serves aarch64.
pub fn cross_cc(arch: Arch) -> Tool {
    match arch {
        Arch::X86_64 => Tool {
            program: "gcc",
            package: "gcc",
        },
        Arch::Aarch64 => Tool {
            program: "clang",
            package: "clang",
        },
    }
}

/// What a setup step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// What was installed or fetched (empty: all was there).
    pub installed: Vec<String>,
    /// Dry run: what would be installed.
    pub planned: bool,
}

impl Outcome for Prepared {
    fn status(&self) -> Status {
        match (self.planned, self.installed.is_empty()) {
            (_, true) => Status::Ok,
            (true, false) => Status::Planned,
            (false, false) => Status::Changed,
        }
    }

    fn detail(&self) -> Option<String> {
        let verb = if self.planned {
            "would install"
        } else {
            "installed"
        };
        (!self.installed.is_empty()).then(|| format!("{verb}: {}", self.installed.join(", ")))
    }
}

/// A kernel made ready for a run.
#[derive(Debug, Clone)]
pub struct ReadyKernel {
    /// The kernel.
    pub kernel: Kernel,
    /// True when it was fetched now.
    pub fetched: bool,
}

impl Outcome for ReadyKernel {
    fn status(&self) -> Status {
        Status::changed_if(self.fetched)
    }

    fn detail(&self) -> Option<String> {
        Some(format!(
            "{} ({})",
            self.kernel.release,
            self.kernel.image.display()
        ))
    }
}

/// The aarch64 network loader made ready for a run.
#[derive(Debug, Clone)]
pub struct ReadyLoader {
    /// The loader.
    pub loader: GrubLoader,
    /// True when it was fetched now.
    pub fetched: bool,
}

impl Outcome for ReadyLoader {
    fn status(&self) -> Status {
        Status::changed_if(self.fetched)
    }

    fn detail(&self) -> Option<String> {
        Some(self.loader.root.display().to_string())
    }
}

// Extends `Run` (run.rs) with machine preparation; indexed in `Run`'s doc comment.
impl crate::Run {
    /// Makes sure QEMU, the C cross-compilers and the rust targets for `archs` are installed
    /// (one task), and that a kernel for each architecture is cached (one task each, which
    /// shows a download's progress). Returns the kernels, in the order of `archs`.
    pub fn prepare(&self, archs: &[Arch]) -> Result<Vec<Kernel>, crate::TaskFailed> {
        let ctx = self.ctx();
        let dry = ctx.dry_run();
        self.task("prerequisites: qemu, musl targets", || {
            ensure_host(archs, dry)
        })?;
        let mut kernels = Vec::new();
        for &arch in archs {
            let name = format!("kernel {}", arch.debian_arch());
            if dry {
                let found = Kernel::find(&ctx.paths.cache, arch).is_ok();
                self.task(&name, || {
                    Ok::<_, SetupError>(Prepared {
                        installed: if found {
                            vec![]
                        } else {
                            vec![format!("{arch} cloud kernel")]
                        },
                        planned: true,
                    })
                })?;
                continue;
            }
            let ready = self
                .task_with_progress(&name, |progress| ensure_kernel(&ctx.paths, arch, progress))?;
            kernels.push(ready.kernel);
        }
        Ok(kernels)
    }

    /// Makes sure what network-booted guests of `archs` need is here: their firmware (one
    /// task) and, for aarch64, the GRUB loader (one task, which shows a download's
    /// progress). Returns the loader when `archs` has aarch64.
    pub fn prepare_network_boot(
        &self,
        archs: &[Arch],
    ) -> Result<Option<GrubLoader>, crate::TaskFailed> {
        if archs.is_empty() {
            return Ok(None);
        }
        let ctx = self.ctx();
        let dry = ctx.dry_run();
        let firmware: Vec<Tool> = archs.iter().map(|&a| netboot_firmware(a)).collect();
        self.task("prerequisites: network boot firmware", || {
            ensure_tools(&firmware, dry)
        })?;
        if !archs.contains(&Arch::Aarch64) || dry {
            return Ok(None);
        }
        let ready = self.task_with_progress("network loader arm64", |progress| {
            ensure_loader(&ctx.paths, progress)
        })?;
        Ok(Some(ready.loader))
    }
}

/// Installs QEMU, the C cross-compiler and the rust target for each of `archs` where missing.
pub fn ensure_host(archs: &[Arch], dry_run: bool) -> Result<Prepared, SetupError> {
    let qemus: Vec<Tool> = archs.iter().map(|&a| qemu(a)).collect();
    let mut prepared = ensure_tools(&qemus, dry_run)?;
    prepared
        .installed
        .extend(ensure_toolchain(archs, dry_run)?.installed);
    Ok(prepared)
}

/// Installs what cross-compiling for `archs` needs where missing: the C compiler that
/// crates with C code use (`.cargo/config.toml` names it per target) and the rust target.
pub fn ensure_toolchain(archs: &[Arch], dry_run: bool) -> Result<Prepared, SetupError> {
    let compilers: Vec<Tool> = archs.iter().map(|&a| cross_cc(a)).collect();
    let mut prepared = ensure_tools(&compilers, dry_run)?;
    let targets = ensure_rust_targets(archs, dry_run)?;
    prepared.installed.extend(targets.installed);
    Ok(prepared)
}

/// Installs the Debian packages of the `tools` not found on `PATH`.
pub fn ensure_tools(tools: &[Tool], dry_run: bool) -> Result<Prepared, SetupError> {
    let mut packages: Vec<&str> = tools
        .iter()
        .filter(|t| !installed(t.program))
        .map(|t| t.package)
        .collect();
    packages.dedup();
    if packages.is_empty() || dry_run {
        return Ok(Prepared {
            installed: packages.iter().map(|p| p.to_string()).collect(),
            planned: dry_run,
        });
    }
    let command = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    if !may_install() {
        return Err(SetupError::Missing {
            what: packages.join(", "),
            command: format!("sudo sh -c '{command}'"),
        });
    }
    run(
        "apt-get",
        &[APT_LOCK_WAIT.as_slice(), &["update", "-q"]].concat(),
    )?;
    let mut args: Vec<String> = APT_LOCK_WAIT.map(String::from).into();
    args.extend(["install", "-y", "-q"].map(String::from));
    args.extend(packages.iter().map(|p| p.to_string()));
    args.extend(qemu_utils_pins(&packages));
    run(
        "apt-get",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    Ok(Prepared {
        installed: packages.iter().map(|p| p.to_string()).collect(),
        planned: false,
    })
}

/// Some images carry a newer `qemu-utils` (from backports) that conflicts with the
/// distribution's `qemu-system-*`; pin it to the candidate version of the system
/// emulator so one install command resolves.
fn qemu_utils_pins(packages: &[&str]) -> Vec<String> {
    if !packages.iter().any(|p| p.starts_with("qemu-system")) {
        return Vec::new();
    }
    let installed = dpkg_version("qemu-utils");
    let candidate = apt_candidate("qemu-system-common");
    match (installed, candidate) {
        (Some(have), Some(want)) if have != want => vec![
            format!("qemu-utils={want}"),
            format!("qemu-block-extra={want}"),
            "--allow-downgrades".into(),
        ],
        _ => Vec::new(),
    }
}

fn dpkg_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}

fn apt_candidate(package: &str) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["policy", package])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_string())
        })
        .filter(|v| v != "(none)")
}

/// Adds the `*-unknown-linux-musl` rust targets of `archs` that rustup lacks.
pub fn ensure_rust_targets(archs: &[Arch], dry_run: bool) -> Result<Prepared, SetupError> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|source| SetupError::Spawn {
            command: "rustup target list --installed".into(),
            source,
        })?;
    let installed = String::from_utf8_lossy(&out.stdout).to_string();
    let missing: Vec<&str> = archs
        .iter()
        .map(|a| a.rust_target())
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() && !dry_run {
        let mut args = vec!["target", "add"];
        args.extend(&missing);
        run("rustup", &args)?;
    }
    Ok(Prepared {
        installed: missing.iter().map(|t| t.to_string()).collect(),
        planned: dry_run,
    })
}

/// The cached kernel for `arch`, fetched first if missing; a download's progress goes to
/// `progress`.
pub fn ensure_kernel(
    paths: &Paths,
    arch: Arch,
    progress: &Progress,
) -> Result<ReadyKernel, SetupError> {
    let (kernel, fetched) = find_or_fetch(
        || Kernel::find(&paths.cache, arch),
        || {
            Kernel::fetch(&paths.cache, arch, &|got| {
                progress.set_message(got.to_string())
            })
        },
    )?;
    Ok(ReadyKernel { kernel, fetched })
}

/// The aarch64 network loader, fetched first if missing; a download's progress goes to
/// `progress`.
pub fn ensure_loader(paths: &Paths, progress: &Progress) -> Result<ReadyLoader, SetupError> {
    let (loader, fetched) = find_or_fetch(
        || GrubLoader::find(&paths.cache),
        || GrubLoader::fetch(&paths.cache, &|got| progress.set_message(got.to_string())),
    )?;
    Ok(ReadyLoader { loader, fetched })
}

/// What `find` finds in the cache, or else what `fetch` puts there where sinew may install
/// (else `find`'s error, which says how); true when fetched now.
fn find_or_fetch<T, E: Into<SetupError>>(
    find: impl FnOnce() -> Result<T, E>,
    fetch: impl FnOnce() -> Result<T, E>,
) -> Result<(T, bool), SetupError> {
    match find() {
        Ok(found) => Ok((found, false)),
        Err(missing) if !may_install() => Err(missing.into()),
        Err(_) => fetch().map(|fetched| (fetched, true)).map_err(Into::into),
    }
}

fn may_install() -> bool {
    nix::unistd::geteuid().is_root()
        && std::env::var_os("SINEW_NO_INSTALL").is_none()
        && on_path("apt-get")
}

/// Whether `program` is on `PATH`, or, given as an absolute path, is a file.
fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    on_path(program)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program))))
        .unwrap_or(false)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str]) -> Result<(), SetupError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|source| SetupError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(SetupError::InstallFailed {
        command,
        output: last_lines(&text, 20, "\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_tools_name_the_debian_packages() {
        assert_eq!(qemu(Arch::X86_64).package, "qemu-system-x86");
        assert_eq!(qemu(Arch::Aarch64).program, "qemu-system-aarch64");
    }

    #[test]
    fn aarch64_guest_builds_need_clang() {
        assert_eq!(cross_cc(Arch::Aarch64).package, "clang");
        assert_eq!(cross_cc(Arch::X86_64).program, "gcc");
    }

    #[test]
    fn a_dry_run_reports_a_missing_tool_without_installing() {
        let tool = Tool {
            program: "sinew-no-such-program",
            package: "sinew-no-such-package",
        };
        let prepared = ensure_tools(&[tool], true).expect("dry run never fails");
        assert_eq!(prepared.status(), Status::Planned);
        assert_eq!(
            prepared.detail().as_deref(),
            Some("would install: sinew-no-such-package")
        );
    }
}
