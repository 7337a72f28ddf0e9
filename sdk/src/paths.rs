//! Where sinew keeps things on the machine that runs a playbook.
//!
//! - cache (`SINEW_CACHE_DIR`, else `$XDG_CACHE_HOME/sinew`, else `~/.cache/sinew`):
//!   guest kernels, content-addressed build artifacts. Safe to delete.
//! - state (`SINEW_STATE_DIR`, else `$XDG_STATE_HOME/sinew`, else `~/.local/state/sinew`):
//!   guest console logs of the last run of each lab, what was learnt about this host
//!   (whether KVM works), how many units each build compiled last time.
//! - runtime (`$XDG_RUNTIME_DIR`, else the temp dir): one private directory per running lab
//!   for sockets and boot media holding secrets, removed when the lab ends.
//! - workspace (`SINEW_WORKSPACE`, else the workspace this SDK was compiled in): where
//!   `sinew::build` runs cargo.

use std::path::{Path, PathBuf};

/// The directories a run uses.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Kernels and artifacts.
    pub cache: PathBuf,
    /// Console logs and host facts.
    pub state: PathBuf,
    /// Parent of per-lab private directories.
    pub runtime: PathBuf,
    /// The cargo workspace that builds guest binaries.
    pub workspace: PathBuf,
}

/// The user's home directory (`HOME`, else `/root`).
pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

impl Paths {
    /// Reads the environment as described in the module docs.
    pub fn from_env() -> Self {
        let home = home_dir();
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(fallback))
        };
        let own = |var: &str| std::env::var_os(var).map(PathBuf::from);
        Self {
            cache: own("SINEW_CACHE_DIR")
                .unwrap_or_else(|| xdg("XDG_CACHE_HOME", ".cache").join("sinew")),
            state: own("SINEW_STATE_DIR")
                .unwrap_or_else(|| xdg("XDG_STATE_HOME", ".local/state").join("sinew")),
            runtime: own("XDG_RUNTIME_DIR").unwrap_or_else(std::env::temp_dir),
            workspace: own("SINEW_WORKSPACE").unwrap_or_else(compiled_workspace),
        }
    }

    /// Console logs of `lab`.
    pub fn lab_logs(&self, lab: &str) -> PathBuf {
        self.state.join("logs").join(lab)
    }
}

fn compiled_workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
