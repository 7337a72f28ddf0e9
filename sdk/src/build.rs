//! Cross-compiling workspace binaries into static musl artifacts for guests.
//!
//! One cargo call builds every requested binary for every requested architecture
//! (`--target` given once per architecture). Each result is checked to be a static ELF of
//! the right machine, then stored by content under the cache (`artifacts/<sha256>/<name>`),
//! so an artifact handed out never changes under its holder and identical builds are
//! recognised: a build whose outputs are all already in the store reports `ok`. While cargo
//! runs, the task line counts the crates compiled (see `cargo`).

mod cargo;

pub use cargo::nested as nested_cargo;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sinew_vm::Arch;

use crate::outcome::{Outcome, Status};
use crate::paths::Paths;
use crate::report::Progress;
use crate::stored::store_once;

/// Errors building or checking an artifact.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A build needs at least one binary and one architecture.
    #[error("nothing to build: give at least one binary and one architecture")]
    Empty,
    /// The cross-compiling toolchain could not be installed.
    #[error("preparing the toolchain: {0}")]
    Toolchain(#[from] crate::setup::SetupError),
    /// cargo could not be started, or its output not read.
    #[error("running cargo in {workspace}: {source}")]
    Cargo {
        /// Where cargo ran.
        workspace: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// cargo ran and failed.
    #[error("cargo build failed (`{command}`):\n{tail}")]
    Failed {
        /// The command line.
        command: String,
        /// The last lines of cargo's output.
        tail: String,
    },
    /// Reading or storing an artifact failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid ELF executable.
    #[error("{path} is not an ELF executable sinew can ship: {source}")]
    NotElf {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: sinew_vm::elf::ElfError,
    },
    /// The file was built for another machine.
    #[error("{path} is a {found} binary, expected {expected}")]
    WrongArch {
        /// The file concerned.
        path: PathBuf,
        /// The architecture asked for.
        expected: Arch,
        /// The architecture found in its ELF header.
        found: Arch,
    },
    /// The file links dynamically; guests have no libc to load.
    #[error("{path} is dynamically linked; guests need static binaries (build for *-linux-musl)")]
    NotStatic {
        /// The file concerned.
        path: PathBuf,
    },
    /// No artifact of that name and architecture in this build.
    #[error("no artifact `{name}` for {arch} in this build (built: {built})")]
    Missing {
        /// The binary asked for.
        name: String,
        /// The architecture asked for.
        arch: Arch,
        /// What the build holds.
        built: String,
    },
}

/// What to build: binaries of the workspace, for some architectures.
#[derive(Debug, Clone)]
pub struct Build {
    /// Binary names (`cargo build --bin NAME`).
    pub bins: Vec<String>,
    /// Target architectures; each maps to its `*-unknown-linux-musl` triple.
    pub archs: Vec<Arch>,
}

impl Build {
    /// Builds `bins` for both x86_64 and aarch64.
    pub fn bins(bins: &[&str]) -> Self {
        Self {
            bins: bins.iter().map(|b| b.to_string()).collect(),
            archs: Arch::ALL.to_vec(),
        }
    }

    /// Restricts the build to `archs`.
    pub fn archs(mut self, archs: &[Arch]) -> Self {
        self.archs = archs.to_vec();
        self
    }

    fn describe(&self) -> String {
        let archs: Vec<String> = self.archs.iter().map(Arch::to_string).collect();
        format!("{} ({})", self.bins.join(", "), archs.join(", "))
    }
}

/// A checked static binary for one architecture, stored by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The binary's name.
    pub name: String,
    /// The machine it runs on.
    pub arch: Arch,
    /// Where it is stored (never rewritten).
    pub path: PathBuf,
    /// Hex sha256 of its content; empty in a dry run, where nothing is built.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.arch)
    }
}

/// The artifacts of one build.
#[derive(Debug, Clone)]
pub struct Artifacts {
    items: Vec<Artifact>,
    stored: usize,
    plan: Option<String>,
}

impl Artifacts {
    /// Artifacts as a build would return them, for unit tests of what is made from them.
    #[cfg(test)]
    pub(crate) fn built(items: Vec<Artifact>) -> Self {
        Self {
            items,
            stored: 0,
            plan: None,
        }
    }

    /// The artifact `name` for `arch`.
    pub fn get(&self, name: &str, arch: Arch) -> Result<&Artifact, BuildError> {
        self.items
            .iter()
            .find(|a| a.name == name && a.arch == arch)
            .ok_or_else(|| BuildError::Missing {
                name: name.to_string(),
                arch,
                built: self
                    .items
                    .iter()
                    .map(Artifact::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Every artifact, in (binary, architecture) order.
    pub fn iter(&self) -> impl Iterator<Item = &Artifact> {
        self.items.iter()
    }
}

impl Outcome for Artifacts {
    fn status(&self) -> Status {
        if self.plan.is_some() {
            Status::Planned
        } else if self.stored > 0 {
            Status::Changed
        } else {
            Status::Ok
        }
    }

    fn detail(&self) -> Option<String> {
        if let Some(plan) = &self.plan {
            return Some(format!("would run: {plan}"));
        }
        let lines: Vec<String> = self
            .items
            .iter()
            .map(|a| format!("{a}: {} bytes, sha256 {}", a.size, &a.sha256[..12]))
            .collect();
        Some(lines.join("\n"))
    }
}

// Extends `Run` (run.rs) with builds; indexed in `Run`'s doc comment.
impl crate::Run {
    /// Cross-compiles `spec` as a task (`build NAMES (ARCHS)`) that counts the crates
    /// compiled as it goes.
    pub fn build(&self, spec: &Build) -> Result<Artifacts, crate::TaskFailed> {
        let ctx = self.ctx();
        self.task_with_progress(&format!("build {}", spec.describe()), |progress| {
            build(&ctx.paths, spec, ctx.dry_run(), progress)
        })
    }
}

/// The cargo target directory for guest builds, kept apart from the host's so a nested
/// cargo (a playbook run by `cargo run`, a test run by `cargo test`) never waits on the
/// outer one's lock.
pub fn target_dir(paths: &Paths) -> PathBuf {
    paths.workspace.join("target").join("sinew-guest")
}

/// Builds `spec` in the workspace, checks and stores each result; cargo's progress goes to
/// `progress`.
pub fn build(
    paths: &Paths,
    spec: &Build,
    dry_run: bool,
    progress: &Progress,
) -> Result<Artifacts, BuildError> {
    if spec.bins.is_empty() || spec.archs.is_empty() {
        return Err(BuildError::Empty);
    }
    if !dry_run {
        crate::setup::ensure_toolchain(&spec.archs, false)?;
    }
    let target_dir = target_dir(paths);
    let mut args: Vec<String> = vec![
        "build".into(),
        "--release".into(),
        cargo::MESSAGE_FORMAT.into(),
    ];
    args.push("--target-dir".into());
    args.push(target_dir.display().to_string());
    for arch in &spec.archs {
        args.extend(["--target".into(), arch.rust_target().into()]);
    }
    for bin in &spec.bins {
        args.extend(["--bin".into(), bin.clone()]);
    }
    let outputs: Vec<(String, Arch, PathBuf)> = spec
        .archs
        .iter()
        .flat_map(|arch| spec.bins.iter().map(move |bin| (bin.clone(), *arch)))
        .map(|(bin, arch)| {
            let path = target_dir
                .join(arch.rust_target())
                .join("release")
                .join(&bin);
            (bin, arch, path)
        })
        .collect();
    if dry_run {
        let items = outputs
            .into_iter()
            .map(|(name, arch, path)| Artifact {
                name,
                arch,
                path,
                sha256: String::new(),
                size: 0,
            })
            .collect();
        return Ok(Artifacts {
            items,
            stored: 0,
            plan: Some(format!("cargo {}", args.join(" "))),
        });
    }
    cargo::run(paths, &args, progress)?;
    let store = paths.cache.join("artifacts");
    let mut items = Vec::new();
    let mut stored = 0;
    for (name, arch, built) in outputs {
        let (artifact, new) = check_and_store(&store, &name, arch, &built)?;
        stored += usize::from(new);
        items.push(artifact);
    }
    Ok(Artifacts {
        items,
        stored,
        plan: None,
    })
}

/// Checks that `bytes` are a static ELF for `arch`; `path` names it in errors.
pub fn check_binary(path: &Path, bytes: &[u8], arch: Arch) -> Result<(), BuildError> {
    let info = sinew_vm::elf::inspect(bytes).map_err(|source| BuildError::NotElf {
        path: path.into(),
        source,
    })?;
    if info.arch != arch {
        return Err(BuildError::WrongArch {
            path: path.into(),
            expected: arch,
            found: info.arch,
        });
    }
    if !info.is_static {
        return Err(BuildError::NotStatic { path: path.into() });
    }
    Ok(())
}

fn check_and_store(
    store: &Path,
    name: &str,
    arch: Arch,
    built: &Path,
) -> Result<(Artifact, bool), BuildError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    };
    let bytes = fs::read(built).map_err(io("reading", built))?;
    check_binary(built, &bytes, arch)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let path = store.join(&sha256).join(name);
    let new = store_once(&path, &bytes).map_err(io("storing", &path))?;
    let artifact = Artifact {
        name: name.into(),
        arch,
        path,
        sha256,
        size: bytes.len() as u64,
    };
    Ok((artifact, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_dynamic_binary_is_refused_with_its_path() {
        let exe = std::env::current_exe().expect("test binary path");
        let bytes = fs::read(&exe).expect("read test binary");
        let host = Arch::host().expect("tests run on x86_64 or aarch64");
        let other = if host == Arch::X86_64 {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        let wrong = check_binary(&exe, &bytes, other).expect_err("other arch must be refused");
        assert!(matches!(wrong, BuildError::WrongArch { .. }), "{wrong}");
        assert!(wrong.to_string().contains(&exe.display().to_string()));
        let dynamic = check_binary(&exe, &bytes, host).expect_err("test binaries link glibc");
        assert!(matches!(dynamic, BuildError::NotStatic { .. }), "{dynamic}");
    }

    /// Directories for a build under `dir`, none of them created.
    pub(super) fn paths_in(dir: &Path) -> Paths {
        Paths {
            cache: dir.join("cache"),
            state: dir.join("state"),
            runtime: dir.to_path_buf(),
            workspace: dir.join("ws"),
        }
    }

    #[test]
    fn dry_run_plans_one_cargo_call_and_builds_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = paths_in(dir.path());
        let spec = Build::bins(&["a", "b"]);
        let plan = build(&paths, &spec, true, &Progress::default()).expect("dry run");
        assert_eq!(plan.status(), Status::Planned);
        assert_eq!(plan.iter().count(), 4);
        let detail = plan.detail().expect("plan detail");
        assert!(detail
            .contains("--target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl"));
        assert!(detail.contains("--bin a --bin b"));
        assert!(!paths.cache.exists(), "a dry run must not touch the cache");
        assert!(plan.get("b", Arch::Aarch64).is_ok());
        assert!(plan.get("c", Arch::Aarch64).is_err());
    }
}
