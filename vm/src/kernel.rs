//! Guest kernels: Debian's stock `linux-image-*-cloud-{amd64,arm64}` packages,
//! unpacked into a cache as `<cache_dir>/kernels/<release>/` (the package tree:
//! `boot/vmlinuz-<release>`, `lib/modules/<release>/`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::deb::{self, DebError, Downloaded};
use crate::Arch;

/// A bootable guest kernel and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The architecture it runs on.
    pub arch: Arch,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The image QEMU loads with `-kernel`.
    pub image: PathBuf,
    /// Its `lib/modules/<release>` directory, for [`crate::modules::resolve`].
    pub modules_dir: PathBuf,
}

/// Error from finding, checking or fetching a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Nothing cached yet.
    #[error("no {arch} kernel cached in {dir}: run the SDK's setup step (sinew_vm::Kernel::fetch), or by hand: {manual}")]
    NotCached {
        /// The architecture wanted.
        arch: Arch,
        /// The kernels directory searched.
        dir: PathBuf,
        /// Shell commands that put one there.
        manual: String,
    },
    /// A kernel tree lacks an image or its modules.
    #[error("{dir} is not an unpacked {arch} kernel package: {reason}")]
    BadTree {
        /// The tree.
        dir: PathBuf,
        /// The architecture expected.
        arch: Arch,
        /// What is missing or wrong.
        reason: String,
    },
    /// apt does not know the package that names the newest cloud kernel.
    #[error("cannot tell the newest {arch} cloud kernel: {reason}")]
    NoCandidate {
        /// The architecture wanted.
        arch: Arch,
        /// Why.
        reason: String,
    },
    /// Getting or unpacking the package failed.
    #[error("cannot fetch the {arch} kernel {package}: {source}")]
    Package {
        /// The architecture.
        arch: Arch,
        /// The package.
        package: String,
        /// Why.
        source: DebError,
    },
}

impl Kernel {
    /// The newest kernel for `arch` already in `cache_dir` (or the tree named by
    /// `SINEW_KERNEL_DIR_<ARCH>`, see [`Kernel::env_override`]).
    pub fn find(cache_dir: &Path, arch: Arch) -> Result<Kernel, KernelError> {
        if let Some(dir) = Self::env_override(arch) {
            return Kernel::from_tree(&dir, arch);
        }
        let dir = cache_dir.join("kernels");
        let newest = cached_releases(&dir, arch)
            .into_iter()
            .max_by(|a, b| release_key(a).cmp(&release_key(b)));
        match newest {
            Some(release) => Kernel::from_tree(&dir.join(release), arch),
            None => Err(KernelError::NotCached {
                arch,
                manual: manual_fetch(arch, &dir),
                dir,
            }),
        }
    }

    /// Makes sure the newest `linux-image-<abi>-cloud-<arch>` kernel is in
    /// `cache_dir` and returns it. Asks apt which version is newest (enabling the
    /// foreign architecture first if needed, which needs root), downloads it with
    /// `apt-get download` and unpacks it with `dpkg -x`; a kernel already cached is
    /// not downloaded again. With `SINEW_DEB_DIR` set, the newest matching `.deb`
    /// in that directory is used and apt is not asked. A download reports how much has
    /// arrived to `on_progress`, a few times a second.
    pub fn fetch(
        cache_dir: &Path,
        arch: Arch,
        on_progress: &(dyn Fn(Downloaded) + Sync),
    ) -> Result<Kernel, KernelError> {
        if let Some(dir) = Self::env_override(arch) {
            return Kernel::from_tree(&dir, arch);
        }
        let (release, packages) = newest_packages(arch)?;
        let dir = cache_dir.join("kernels");
        let dest = dir.join(&release);
        if dest.is_dir() {
            return Kernel::from_tree(&dest, arch);
        }
        let mut last = None;
        // Debian ships the arm64 image in both the signed and the `-unsigned`
        // package; take the first that really holds the image.
        for package in &packages {
            let pkg_err = |source| KernelError::Package {
                arch,
                package: package.clone(),
                source,
            };
            deb::create_dir_all(&dir).map_err(pkg_err)?;
            let work = deb::work_dir(&dir).map_err(pkg_err)?;
            let root = deb::obtain(package, arch, work.path(), on_progress)
                .and_then(|deb| deb::unpack(&deb, work.path()));
            let root = match root {
                Ok(root) => root,
                Err(e) => {
                    last = Some(pkg_err(e));
                    continue;
                }
            };
            match Kernel::from_tree(&root, arch) {
                Ok(_) => {
                    deb::commit(&root, &dest).map_err(pkg_err)?;
                    return Kernel::from_tree(&dest, arch);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(KernelError::NoCandidate {
            arch,
            reason: "no package to try".into(),
        }))
    }

    /// The kernel tree named by `SINEW_KERNEL_DIR_X86_64` or
    /// `SINEW_KERNEL_DIR_AARCH64` (an unpacked package: `boot/` and `lib/modules/`),
    /// which [`Kernel::find`] and [`Kernel::fetch`] use instead of the cache.
    pub fn env_override(arch: Arch) -> Option<PathBuf> {
        let var = format!("SINEW_KERNEL_DIR_{}", arch.uname_machine().to_uppercase());
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// The kernel in an unpacked package tree `dir`: its newest `boot/vmlinuz-*`
    /// whose `lib/modules/<release>` (or `usr/lib/modules/<release>`) exists, after
    /// checking that the image really is an `arch` kernel.
    pub fn from_tree(dir: &Path, arch: Arch) -> Result<Kernel, KernelError> {
        let bad = |reason: String| KernelError::BadTree {
            dir: dir.to_owned(),
            arch,
            reason,
        };
        let boot = dir.join("boot");
        let entries = std::fs::read_dir(&boot)
            .map_err(|e| bad(format!("cannot read {}: {e}", boot.display())))?;
        let release = entries
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("vmlinuz-")
                    .map(str::to_owned)
            })
            .max_by(|a, b| release_key(a).cmp(&release_key(b)))
            .ok_or_else(|| bad(format!("no vmlinuz-* in {}", boot.display())))?;
        let image = boot.join(format!("vmlinuz-{release}"));
        check_image(&image, arch).map_err(&bad)?;
        let modules_dir = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|m| dir.join(m).join(&release))
            .find(|p| p.is_dir())
            .ok_or_else(|| bad(format!("no lib/modules/{release}")))?;
        Ok(Kernel {
            arch,
            release,
            image,
            modules_dir,
        })
    }
}

/// Release names for `arch` among the directories of `dir`.
fn cached_releases(dir: &Path, arch: Arch) -> Vec<String> {
    let suffix = format!("-{}", arch.debian_arch());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            !name.starts_with('.')
                && name.ends_with(&suffix)
                && dir.join(name).join("boot").is_dir()
        })
        .collect()
}

/// The newest cloud kernel's release and its package names, signed first.
fn newest_packages(arch: Arch) -> Result<(String, Vec<String>), KernelError> {
    let da = arch.debian_arch();
    let no_candidate = |reason: String| KernelError::NoCandidate { arch, reason };
    let image_package = if let Some(dir) = deb::local_dir() {
        let debs = deb::local_debs(&dir, arch).map_err(|e| no_candidate(e.to_string()))?;
        debs.into_iter()
            .map(|d| d.package)
            .filter(|p| release_of(p, arch).is_some())
            .max_by(|a, b| release_key(a).cmp(&release_key(b)))
            .ok_or_else(|| {
                no_candidate(format!(
                    "no linux-image-*-cloud-{da}_*_{da}.deb in {}",
                    dir.display()
                ))
            })?
    } else {
        deb::ensure_arch(arch).map_err(|e| no_candidate(e.to_string()))?;
        let meta = format!("linux-image-cloud-{da}");
        let show = deb::apt_show(&meta, arch).map_err(|e| {
            no_candidate(format!(
                "{e} (is apt's package list current? try: apt-get update)"
            ))
        })?;
        // The metapackage depends on exactly the current ABI's image package.
        show.lines()
            .filter_map(|l| l.strip_prefix("Depends:"))
            .flat_map(|deps| deps.split([',', '|']))
            .map(|dep| {
                dep.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .find(|p| release_of(p, arch).is_some())
            .ok_or_else(|| {
                no_candidate(format!(
                    "{meta} depends on no linux-image-*-cloud-{da} package"
                ))
            })?
    };
    let release = release_of(&image_package, arch)
        .ok_or_else(|| no_candidate(format!("odd package name {image_package}")))?;
    let signed = format!("linux-image-{release}");
    let unsigned = format!("{signed}-unsigned");
    let packages = if image_package == unsigned {
        vec![unsigned]
    } else {
        vec![signed, unsigned]
    };
    Ok((release, packages))
}

/// `6.1.0-56-cloud-arm64` from `linux-image-6.1.0-56-cloud-arm64[-unsigned]`.
fn release_of(package: &str, arch: Arch) -> Option<String> {
    let rest = package.strip_prefix("linux-image-")?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let abi = rest.strip_suffix(&format!("-cloud-{}", arch.debian_arch()))?;
    abi.starts_with(|c: char| c.is_ascii_digit())
        .then(|| rest.to_owned())
}

/// Sort key for kernel releases and packages: the leading numeric fields, so that
/// `6.1.0-56` sorts after `6.1.0-9`.
fn release_key(name: &str) -> Vec<u64> {
    let start = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    name[start..]
        .split(['.', '-', '+', '~'])
        .map_while(|f| f.parse().ok())
        .collect()
}

/// Checks the boot-protocol magic: x86 bzImage has `HdrS` at 0x202, the arm64
/// Image header has `ARM\x64` at 56. Catches a kernel override of the wrong arch.
fn check_image(image: &Path, arch: Arch) -> Result<(), String> {
    let mut head = [0u8; 0x206];
    std::fs::File::open(image)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", image.display()))?;
    let ok = match arch {
        Arch::X86_64 => &head[0x202..0x206] == b"HdrS",
        Arch::Aarch64 => &head[56..60] == b"ARM\x64",
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an {arch} Linux kernel image",
            image.display()
        ))
    }
}

fn manual_fetch(arch: Arch, dir: &Path) -> String {
    let da = arch.debian_arch();
    let enable = match arch {
        Arch::X86_64 => String::new(),
        Arch::Aarch64 => format!("dpkg --add-architecture {da} && apt-get update && "),
    };
    let var = format!("SINEW_KERNEL_DIR_{}", arch.uname_machine().to_uppercase());
    format!(
        "{enable}P=$(apt-cache depends linux-image-cloud-{da}:{da} | grep -o 'linux-image-[0-9][^ :]*') && \
         apt-get download $P:{da} && mkdir -p {dir} && dpkg -x ${{P}}_*.deb {dir}/${{P#linux-image-}}; \
         or set {var} to a tree unpacked with dpkg -x",
        dir = dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree(root: &Path, release: &str, arch: Arch) {
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::create_dir_all(root.join("lib/modules").join(release).join("kernel")).unwrap();
        let mut image = vec![0u8; 4096];
        match arch {
            Arch::X86_64 => image[0x202..0x206].copy_from_slice(b"HdrS"),
            Arch::Aarch64 => image[56..60].copy_from_slice(b"ARM\x64"),
        }
        std::fs::write(root.join("boot").join(format!("vmlinuz-{release}")), image).unwrap();
    }

    #[test]
    fn find_picks_the_newest_release_of_the_arch() {
        let cache = tempfile::tempdir().unwrap();
        let kernels = cache.path().join("kernels");
        for (rel, arch) in [
            ("6.1.0-9-cloud-amd64", Arch::X86_64),
            ("6.1.0-56-cloud-amd64", Arch::X86_64),
            ("6.1.0-60-cloud-arm64", Arch::Aarch64),
        ] {
            fake_tree(&kernels.join(rel), rel, arch);
        }
        std::fs::create_dir_all(kernels.join(".partial-xyz/boot")).unwrap();
        let k = Kernel::find(cache.path(), Arch::X86_64).unwrap();
        assert_eq!(k.release, "6.1.0-56-cloud-amd64");
        assert_eq!(
            k.image,
            kernels.join("6.1.0-56-cloud-amd64/boot/vmlinuz-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            k.modules_dir,
            kernels.join("6.1.0-56-cloud-amd64/lib/modules/6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            Kernel::find(cache.path(), Arch::Aarch64).unwrap().release,
            "6.1.0-60-cloud-arm64"
        );
    }

    #[test]
    fn missing_kernel_says_how_to_get_one() {
        let cache = tempfile::tempdir().unwrap();
        let err = Kernel::find(cache.path(), Arch::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aarch64") && err.contains("Kernel::fetch"),
            "{err}"
        );
        assert!(
            err.contains("dpkg --add-architecture arm64")
                && err.contains("SINEW_KERNEL_DIR_AARCH64"),
            "{err}"
        );
    }

    #[test]
    fn wrong_arch_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path(), "6.1.0-56-cloud-arm64", Arch::Aarch64);
        let err = Kernel::from_tree(dir.path(), Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an x86_64 Linux kernel image"), "{err}");
        assert!(Kernel::from_tree(dir.path(), Arch::Aarch64).is_ok());
    }

    #[test]
    fn package_names_map_to_releases() {
        assert_eq!(
            release_of("linux-image-6.1.0-56-cloud-arm64-unsigned", Arch::Aarch64).as_deref(),
            Some("6.1.0-56-cloud-arm64")
        );
        assert_eq!(
            release_of("linux-image-6.1.0-56-cloud-amd64", Arch::X86_64).as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            release_of("linux-image-6.1.0-56-cloud-amd64-dbg", Arch::X86_64),
            None
        );
        assert_eq!(release_of("linux-image-cloud-amd64", Arch::X86_64), None);
        assert_eq!(
            release_of("linux-image-6.1.0-56-cloud-amd64", Arch::Aarch64),
            None
        );
        assert!(release_key("6.1.0-56-cloud-amd64") > release_key("6.1.0-9-cloud-amd64"));
        assert!(release_key("6.12.38+deb13-cloud-amd64") > release_key("6.1.0-56-cloud-amd64"));
    }
}
