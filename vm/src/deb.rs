//! Debian packages as a source of guest parts (kernels, firmware, test tools):
//! obtained with `apt-get download`, or from a local directory of `.deb` files for
//! offline hosts, and unpacked with `dpkg -x` into a cache, atomically.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use crate::Arch;

/// apt options that make it wait for a lock another apt or dpkg holds (a parallel
/// install, unattended upgrades) instead of failing at once; for every apt-get that
/// changes the machine.
pub const APT_LOCK_WAIT: [&str; 2] = ["-o", "DPkg::Lock::Timeout=600"];

/// Environment variable naming a directory of pre-downloaded `.deb` files. When
/// set, packages are taken from there and apt is never asked (air-gapped setups).
pub const DEB_DIR_ENV: &str = "SINEW_DEB_DIR";

/// Error from obtaining or unpacking a package.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// A packaging command could not be started.
    #[error("cannot run `{command}`: {source} (fetching packages needs a Debian-like host with apt and dpkg, or {DEB_DIR_ENV})")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A packaging command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// Adding a foreign architecture to dpkg needs root.
    #[error("{arch} packages are not enabled in dpkg; run as root: dpkg --add-architecture {debian_arch} && apt-get update")]
    ForeignArch {
        /// The architecture.
        arch: Arch,
        /// Its Debian name.
        debian_arch: &'static str,
    },
    /// The package is not in the local package directory.
    #[error("no {package}_*_{debian_arch}.deb in {dir} ({DEB_DIR_ENV})")]
    NotInDir {
        /// The package.
        package: String,
        /// Its architecture.
        debian_arch: &'static str,
        /// The directory searched.
        dir: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How often a download in progress is measured.
const DOWNLOAD_POLL: Duration = Duration::from_millis(250);

/// How much of a package has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes on disk so far.
    pub bytes: u64,
    /// The package's size as apt knows it, if it does.
    pub total: Option<u64>,
}

impl fmt::Display for Downloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        match self.total {
            Some(total) => write!(
                f,
                "{:.1} MiB of {:.1} MiB downloaded",
                mib(self.bytes),
                mib(total)
            ),
            None => write!(f, "{:.1} MiB downloaded", mib(self.bytes)),
        }
    }
}

/// A `.deb` file in the local package directory, from its `name_version_arch.deb` name.
#[derive(Debug, Clone)]
pub(crate) struct LocalDeb {
    pub(crate) package: String,
    pub(crate) path: PathBuf,
}

/// Unpacks `package` for `arch` into `dest` unless `dest` already exists, and
/// returns `dest`. The package comes from [`DEB_DIR_ENV`] if set, else from
/// `apt-get download`; `dest` appears complete or not at all.
pub fn fetch(package: &str, arch: Arch, dest: &Path) -> Result<PathBuf, DebError> {
    if dest.is_dir() {
        return Ok(dest.to_owned());
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    create_dir_all(parent)?;
    let work = work_dir(parent)?;
    let deb = obtain(package, arch, work.path(), &|_| {})?;
    let root = unpack(&deb, work.path())?;
    commit(&root, dest)?;
    Ok(dest.to_owned())
}

/// The local package directory, if configured.
pub(crate) fn local_dir() -> Option<PathBuf> {
    std::env::var_os(DEB_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The `.deb` files for `arch` in `dir`, sorted by file name.
pub(crate) fn local_debs(dir: &Path, arch: Arch) -> Result<Vec<LocalDeb>, DebError> {
    let suffix = format!("_{}.deb", arch.debian_arch());
    let mut debs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| io_err("cannot read", dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_err("cannot read", dir, source))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(&suffix)) else {
            continue;
        };
        if let Some((package, _version)) = stem.split_once('_') {
            debs.push(LocalDeb {
                package: package.to_owned(),
                path: entry.path(),
            });
        }
    }
    debs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(debs)
}

/// Makes `arch` packages visible to apt, adding the architecture if needed.
pub(crate) fn ensure_arch(arch: Arch) -> Result<(), DebError> {
    let native = run(Command::new("dpkg").arg("--print-architecture"))?;
    let foreign = run(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let da = arch.debian_arch();
    if native.trim() == da || foreign.split_whitespace().any(|a| a == da) {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(DebError::ForeignArch {
            arch,
            debian_arch: da,
        });
    }
    run(Command::new("dpkg").args(["--add-architecture", da]))?;
    run(Command::new("apt-get").args(APT_LOCK_WAIT).arg("update"))?;
    Ok(())
}

/// `apt-cache show` of the candidate version of `package:<arch>`.
pub(crate) fn apt_show(package: &str, arch: Arch) -> Result<String, DebError> {
    run(Command::new("apt-cache").args([
        "show",
        "--no-all-versions",
        &format!("{package}:{}", arch.debian_arch()),
    ]))
}

/// Puts the `.deb` of `package` for `arch` into (or finds it for) `work`, telling
/// `on_progress` how much of a download has arrived as it goes.
pub(crate) fn obtain(
    package: &str,
    arch: Arch,
    work: &Path,
    on_progress: &(dyn Fn(Downloaded) + Sync),
) -> Result<PathBuf, DebError> {
    if let Some(dir) = local_dir() {
        return local_debs(&dir, arch)?
            .into_iter()
            .rev()
            .find(|d| d.package == package)
            .map(|d| d.path)
            .ok_or(DebError::NotInDir {
                package: package.to_owned(),
                debian_arch: arch.debian_arch(),
                dir,
            });
    }
    let download = work.join("download");
    create_dir_all(&download)?;
    let total = download_size(package, arch);
    watch_download(&download, total, on_progress, || {
        run(Command::new("apt-get")
            .args([
                "download",
                "-q",
                &format!("{package}:{}", arch.debian_arch()),
            ])
            .current_dir(&download))
    })?;
    let mut entries = std::fs::read_dir(&download)
        .map_err(|source| io_err("cannot read", &download, source))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some(OsStr::new("deb")));
    entries.next().ok_or(DebError::NotInDir {
        package: package.to_owned(),
        debian_arch: arch.debian_arch(),
        dir: download,
    })
}

/// The size of the candidate `.deb` of `package` for `arch`, from apt's package list.
fn download_size(package: &str, arch: Arch) -> Option<u64> {
    apt_show(package, arch)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Size:"))?
        .trim()
        .parse()
        .ok()
}

/// Runs `download` while measuring what it has written under `dir`: apt-get prints no
/// progress without a terminal, but writes the package there as it arrives.
fn watch_download<T>(
    dir: &Path,
    total: Option<u64>,
    on_progress: &(dyn Fn(Downloaded) + Sync),
    download: impl FnOnce() -> T,
) -> T {
    let measure = &|| {
        on_progress(Downloaded {
            bytes: bytes_under(dir),
            total,
        })
    };
    let (done, finished) = mpsc::channel::<()>();
    let result = thread::scope(|scope| {
        scope.spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(DOWNLOAD_POLL) {
                measure();
            }
        });
        let result = download();
        drop(done);
        result
    });
    measure();
    result
}

/// The bytes in the files under `dir`, subdirectories included.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// A scratch directory next to the final destination, so that the final rename
/// stays on one filesystem; removed on drop.
pub(crate) fn work_dir(parent: &Path) -> Result<tempfile::TempDir, DebError> {
    tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .map_err(|source| io_err("cannot create a directory in", parent, source))
}

/// Unpacks `deb` under `work` and returns the unpacked root.
pub(crate) fn unpack(deb: &Path, work: &Path) -> Result<PathBuf, DebError> {
    let root = work.join("root");
    run(Command::new("dpkg").arg("-x").arg(deb).arg(&root))?;
    Ok(root)
}

/// Moves an unpacked `root` to `dest`. Losing a race to another process that
/// committed the same `dest` is fine: both unpacked the same package.
pub(crate) fn commit(root: &Path, dest: &Path) -> Result<(), DebError> {
    match std::fs::rename(root, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => Ok(()),
        Err(source) => Err(io_err("cannot move the unpacked package to", dest, source)),
    }
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<(), DebError> {
    std::fs::create_dir_all(dir).map_err(|source| io_err("cannot create", dir, source))
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> DebError {
    DebError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Runs a command to completion and returns its standard output.
fn run(command: &mut Command) -> Result<String, DebError> {
    let line = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    tracing::debug!(command = %line, "running");
    let out = command.output().map_err(|source| DebError::Spawn {
        command: line.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(DebError::Failed {
            command: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    #[test]
    fn a_download_shows_mebibytes_of_its_total() {
        let part = Downloaded {
            bytes: 22 * 1024 * 1024,
            total: Some(72_225_000),
        };
        assert_eq!(part.to_string(), "22.0 MiB of 68.9 MiB downloaded");
        let unknown = Downloaded {
            bytes: 1536 * 1024,
            total: None,
        };
        assert_eq!(unknown.to_string(), "1.5 MiB downloaded");
    }

    #[test]
    fn a_download_is_measured_as_it_grows_and_once_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = Mutex::new(Vec::new());
        let file = dir.path().join("partial").join("linux.deb");
        let written = watch_download(
            dir.path(),
            Some(3000),
            &|d| seen.lock().expect("seen").push(d.bytes),
            || {
                std::fs::create_dir_all(file.parent().expect("parent")).expect("partial dir");
                // Appended, as a download grows: a rewrite would be seen empty mid-way.
                let mut partial = std::fs::File::create(&file).expect("partial file");
                for _ in 0..3 {
                    partial.write_all(&[0u8; 1000]).expect("write");
                    thread::sleep(DOWNLOAD_POLL + DOWNLOAD_POLL / 2);
                }
                "done"
            },
        );
        assert_eq!(written, "done");
        let seen = seen.into_inner().expect("seen");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(
            seen.iter().any(|&b| b < 3000),
            "never measured mid-way: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&3000));
    }
}
