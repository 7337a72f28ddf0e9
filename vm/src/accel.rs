//! Choosing between KVM and TCG, and remembering hosts where KVM fails.
//!
//! On nested-virtualisation hosts `/dev/kvm` can open fine while guests hang before
//! printing anything, or QEMU aborts setting up the vCPU. The caller boots with the
//! first of [`candidates`], and if QEMU exits at startup or the console stays silent
//! past a short deadline, kills the guest, calls
//! [`remember`]`(state_dir, false)` and boots again with the next candidate; the
//! verdict is stored per host kernel and CPU model, so the wait is paid once per host.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Arch;

/// Environment variable holding the [`AccelPolicy`].
pub const ACCEL_ENV: &str = "SINEW_ACCEL";

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm` (host architecture only).
    Kvm,
    /// QEMU's portable binary translator: slower, works everywhere.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Which accelerators to try, from [`ACCEL_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelPolicy {
    /// KVM when it is usable and not known to fail here, else TCG.
    #[default]
    Auto,
    /// KVM only, even on a host remembered as failing (to re-test it).
    Kvm,
    /// TCG only.
    Tcg,
}

/// Error from the accelerator policy or its host memory.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// The policy text is not one of the accepted values.
    #[error("invalid {ACCEL_ENV} value `{0}`: expected auto, kvm or tcg")]
    BadPolicy(String),
    /// KVM was required but cannot be used for this guest.
    #[error("{ACCEL_ENV}=kvm but KVM cannot run this {arch} guest: {reason}")]
    KvmUnavailable {
        /// The guest architecture.
        arch: Arch,
        /// Why not.
        reason: String,
    },
    /// The state file could not be written.
    #[error("cannot record the KVM verdict in {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl FromStr for AccelPolicy {
    type Err = AccelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "auto" => Ok(AccelPolicy::Auto),
            "kvm" => Ok(AccelPolicy::Kvm),
            "tcg" => Ok(AccelPolicy::Tcg),
            other => Err(AccelError::BadPolicy(other.to_owned())),
        }
    }
}

impl AccelPolicy {
    /// Reads [`ACCEL_ENV`]; unset means [`AccelPolicy::Auto`].
    pub fn from_env() -> Result<Self, AccelError> {
        match std::env::var(ACCEL_ENV) {
            Ok(value) => value.parse(),
            Err(std::env::VarError::NotPresent) => Ok(AccelPolicy::Auto),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(AccelError::BadPolicy(v.to_string_lossy().into_owned()))
            }
        }
    }
}

/// The accelerators to try for an `arch` guest, best first, under the policy in
/// [`ACCEL_ENV`] (see [`candidates_for`]).
pub fn candidates(arch: Arch, state_dir: &Path) -> Result<Vec<Accel>, AccelError> {
    candidates_for(AccelPolicy::from_env()?, arch, state_dir)
}

/// The accelerators to try for an `arch` guest under `policy`, best first.
///
/// Under [`AccelPolicy::Auto`]: `[Kvm, Tcg]` when `arch` is the host's, `/dev/kvm`
/// opens read-write and this host is not remembered (in `state_dir`) as one where
/// KVM guests fail; otherwise `[Tcg]`.
pub fn candidates_for(
    policy: AccelPolicy,
    arch: Arch,
    state_dir: &Path,
) -> Result<Vec<Accel>, AccelError> {
    match policy {
        AccelPolicy::Tcg => Ok(vec![Accel::Tcg]),
        AccelPolicy::Kvm => match kvm_usable(arch) {
            Ok(()) => Ok(vec![Accel::Kvm]),
            Err(reason) => Err(AccelError::KvmUnavailable { arch, reason }),
        },
        AccelPolicy::Auto => {
            if kvm_usable(arch).is_ok() && remembered(state_dir) != Some(false) {
                Ok(vec![Accel::Kvm, Accel::Tcg])
            } else {
                Ok(vec![Accel::Tcg])
            }
        }
    }
}

/// Records whether KVM guests boot on this host (same kernel release and CPU model).
pub fn remember(state_dir: &Path, kvm_works: bool) -> Result<(), AccelError> {
    let path = state_path(state_dir);
    let write = |source| AccelError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(write)?;
    let verdict = if kvm_works { "works" } else { "fails" };
    let (release, cpu) = host_identity();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(
        &tmp,
        format!("kvm {verdict}\nkernel {release}\ncpu {cpu}\n"),
    )
    .map_err(write)?;
    // Rename so concurrent readers never see a half-written verdict.
    std::fs::rename(&tmp, &path).map_err(write)
}

/// The verdict stored by [`remember`] for this host, if any.
pub fn remembered(state_dir: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(state_path(state_dir)).ok()?;
    match text.lines().next()? {
        "kvm works" => Some(true),
        "kvm fails" => Some(false),
        _ => None,
    }
}

fn kvm_usable(arch: Arch) -> Result<(), String> {
    if Arch::host() != Some(arch) {
        return Err(format!(
            "the host is {}",
            Arch::host().map_or("another architecture".into(), |a| a.to_string())
        ));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("cannot open /dev/kvm read-write: {e}"))
}

/// One state file per (kernel release, CPU model): an upgrade of either may change
/// whether nested KVM works, so it gets tested afresh.
fn state_path(state_dir: &Path) -> PathBuf {
    let (release, cpu) = host_identity();
    let digest = Sha256::new()
        .chain_update(release)
        .chain_update([0])
        .chain_update(cpu)
        .finalize();
    state_dir.join(format!("kvm-{}.state", hex::encode(&digest[..8])))
}

fn host_identity() -> (String, String) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    // x86 names the model; arm64 only gives implementer and part numbers.
    let cpu = field("model name")
        .or_else(|| {
            Some(format!(
                "{}/{}",
                field("CPU implementer")?,
                field("CPU part")?
            ))
        })
        .unwrap_or_else(|| "unknown".into());
    (release, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_and_names_the_variable_on_error() {
        assert_eq!("auto".parse::<AccelPolicy>().unwrap(), AccelPolicy::Auto);
        assert_eq!("kvm".parse::<AccelPolicy>().unwrap(), AccelPolicy::Kvm);
        assert_eq!("tcg".parse::<AccelPolicy>().unwrap(), AccelPolicy::Tcg);
        let err = "hvf".parse::<AccelPolicy>().unwrap_err().to_string();
        assert!(
            err.contains("SINEW_ACCEL")
                && err.contains("`hvf`")
                && err.contains("auto, kvm or tcg"),
            "{err}"
        );
    }

    #[test]
    fn foreign_guests_and_forced_tcg_get_tcg_only() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arch::host().unwrap();
        let foreign = Arch::ALL.into_iter().find(|a| *a != host).unwrap();
        assert_eq!(
            candidates_for(AccelPolicy::Auto, foreign, dir.path()).unwrap(),
            [Accel::Tcg]
        );
        assert_eq!(
            candidates_for(AccelPolicy::Tcg, host, dir.path()).unwrap(),
            [Accel::Tcg]
        );
        let err = candidates_for(AccelPolicy::Kvm, foreign, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&foreign.to_string()), "{err}");
    }

    #[test]
    fn remembered_hang_removes_kvm_and_a_later_success_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let host = Arch::host().unwrap();
        let kvm_here = kvm_usable(host).is_ok();
        assert_eq!(remembered(&state), None);
        let expect_kvm = |v: Vec<Accel>| if kvm_here { v } else { vec![Accel::Tcg] };
        assert_eq!(
            candidates_for(AccelPolicy::Auto, host, &state).unwrap(),
            expect_kvm(vec![Accel::Kvm, Accel::Tcg])
        );
        remember(&state, false).unwrap();
        assert_eq!(remembered(&state), Some(false));
        assert_eq!(
            candidates_for(AccelPolicy::Auto, host, &state).unwrap(),
            [Accel::Tcg]
        );
        if kvm_here {
            assert_eq!(
                candidates_for(AccelPolicy::Kvm, host, &state).unwrap(),
                [Accel::Kvm]
            );
        }
        remember(&state, true).unwrap();
        assert_eq!(remembered(&state), Some(true));
        assert_eq!(
            candidates_for(AccelPolicy::Auto, host, &state).unwrap(),
            expect_kvm(vec![Accel::Kvm, Accel::Tcg])
        );
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
    }
}
