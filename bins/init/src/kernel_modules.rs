//! Loading the kernel modules the host listed for this boot.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use thiserror::Error;

/// The list: one path per line, relative to `/lib/modules/<release>/`, in dependency order.
pub const MODULE_LIST: &str = "/etc/sinew/modules";

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>`: let the kernel decompress the
/// module (Linux 6.1+ with `CONFIG_MODULE_DECOMPRESS`). nix does not name it.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// Why a module could not be loaded.
#[derive(Debug, Error)]
pub enum ModuleError {
    /// The list could not be read.
    #[error("cannot read module list {}: {source}", path.display())]
    List {
        /// The list.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The module file could not be opened.
    #[error("cannot open kernel module {module}: {source}")]
    Open {
        /// The module, as listed.
        module: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The kernel refused the module.
    #[error("cannot load kernel module {module}: {source}")]
    Load {
        /// The module, as listed.
        module: String,
        /// What the kernel said (e.g. ENOENT for an unknown symbol: a dependency is missing
        /// or listed after it).
        source: Errno,
    },
}

/// What happened to the listed modules.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// How many were loaded now.
    pub loaded: usize,
    /// How many were already loaded (or built in).
    pub present: usize,
    /// Those that failed; the others were still loaded.
    pub failures: Vec<ModuleError>,
}

/// Loads every module in `list` from `/lib/modules/<release>/`. A missing list means no
/// modules; a failing module does not stop the rest.
pub fn load_listed(list: &Path, release: &str) -> Result<LoadReport, ModuleError> {
    let text = match std::fs::read_to_string(list) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadReport::default())
        }
        Err(source) => {
            return Err(ModuleError::List {
                path: list.to_owned(),
                source,
            })
        }
    };
    let base = Path::new("/lib/modules").join(release);
    let mut report = LoadReport::default();
    for module in listed_modules(&text) {
        match load(&base, module) {
            Ok(true) => report.loaded += 1,
            Ok(false) => report.present += 1,
            Err(error) => report.failures.push(error),
        }
    }
    Ok(report)
}

/// The non-empty, non-comment lines of the list.
fn listed_modules(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Loads one module; `false` if it was already there.
fn load(base: &Path, module: &str) -> Result<bool, ModuleError> {
    let file = File::open(base.join(module)).map_err(|source| ModuleError::Open {
        module: module.to_owned(),
        source,
    })?;
    let mut flags = ModuleInitFlags::empty();
    if [".xz", ".zst", ".gz"]
        .iter()
        .any(|suffix| module.ends_with(suffix))
    {
        flags |= ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE);
    }
    match finit_module(&file, c"", flags) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(source) => Err(ModuleError::Load {
            module: module.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_skips_blanks_and_comments() {
        let text = "kernel/drivers/virtio/virtio_ring.ko\n\n# network\n  kernel/drivers/net/virtio_net.ko  \n";
        let modules: Vec<_> = listed_modules(text).collect();
        assert_eq!(
            modules,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/net/virtio_net.ko"
            ]
        );
    }

    #[test]
    fn missing_list_means_no_modules() {
        let report = load_listed(Path::new("/nonexistent/modules"), "0").unwrap();
        assert_eq!(
            (report.loaded, report.present, report.failures.len()),
            (0, 0, 0)
        );
    }
}
