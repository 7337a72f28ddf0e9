//! Network boot from the guest's side: the firmware and loader that take a guest from
//! power-on to a kernel fetched from a boot server over QEMU's user networking.
//!
//! - x86_64: a PC (`-M pc`) whose SeaBIOS runs the virtio NIC's iPXE option ROM (Debian's
//!   `ipxe-qemu`); QEMU's DHCP server hands iPXE `http://10.0.2.100/boot.ipxe` as its
//!   boot file, and the boot server's scripts do the rest.
//! - aarch64: UEFI (Debian's `qemu-efi-aarch64`). Debian ships no arm64 iPXE, and the
//!   firmware's own HTTP boot comes only after its PXE and IPv6 attempts time out (about
//!   75 s). So the control NIC is first in the boot order (`bootindex=1`) and its first
//!   option, PXE over IPv4, fetches Debian's signed network GRUB from QEMU's TFTP server at
//!   once; that GRUB loads its configuration, the kernel and the initramfs from the boot
//!   server over HTTP (`/grub`). TFTP serves nothing but the loader ([`GrubLoader`]).
//!
//! The boot server listens on the host's loopback; the guest reaches it as
//! [`BOOT_SERVER`] port 80 through a `guestfwd` that opens one connection to it for each
//! connection of the guest. The user networking stays `restrict=on`: the guest reaches
//! nothing else.

use std::ffi::OsString;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::deb::{self, DebError, Downloaded};
use crate::qemu::{escape_opt, NetworkBoot};
use crate::Arch;

/// The boot server's address as guests see it (port 80).
pub const BOOT_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// aarch64 UEFI firmware, from Debian's `qemu-efi-aarch64`.
pub const UEFI_FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";
/// The virtio NIC's iPXE option ROM (legacy BIOS and EFI), from Debian's `ipxe-qemu`.
pub const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";

/// The firmware file a network boot of `arch` needs, and the Debian package shipping it.
pub fn firmware(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => (IPXE_ROM, "ipxe-qemu"),
        Arch::Aarch64 => (UEFI_FIRMWARE, "qemu-efi-aarch64"),
    }
}

/// The options added to the control NIC's `-netdev user,...` for a network boot.
pub(crate) fn netdev_options(arch: Arch, boot: &NetworkBoot) -> OsString {
    // libslirp runs the command without a shell, once per guest connection; bash's
    // /dev/tcp makes the connection to the server, and the two cats carry each direction.
    let mut options = OsString::from(format!(
        ",guestfwd=tcp:{BOOT_SERVER}:80-cmd:bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; \
         cat <&3 & exec cat >&3'",
        boot.server_port
    ));
    match (arch, &boot.loader) {
        (Arch::Aarch64, Some(tftp)) => {
            options.push(",tftp=");
            options.push(escape_opt(tftp.as_os_str()));
            options.push(format!(",bootfile={}", GrubLoader::BOOT_FILE));
        }
        _ => options.push(format!(",bootfile=http://{BOOT_SERVER}/boot.ipxe")),
    }
    options
}

/// Debian's signed network GRUB for arm64 with the modules and configuration that chain
/// it to the boot server: a directory QEMU serves over TFTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubLoader {
    /// The TFTP root: [`GrubLoader::BOOT_FILE`], `grub/grub.cfg`, `grub/arm64-efi/*.mod`.
    pub root: PathBuf,
}

/// Error from finding or fetching the GRUB loader.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Nothing cached yet.
    #[error("no arm64 network GRUB cached in {dir}: run the SDK's setup step (sinew_vm::netboot::GrubLoader::fetch)")]
    NotCached {
        /// The directory it would be in.
        dir: PathBuf,
    },
    /// Getting or unpacking a package failed.
    #[error("cannot fetch {package} (arm64): {source}")]
    Package {
        /// The package.
        package: &'static str,
        /// Why.
        source: DebError,
    },
    /// A package lacks a file it should ship.
    #[error("{package} (arm64) has no {file}")]
    Missing {
        /// The package.
        package: &'static str,
        /// The file, relative to the package's root.
        file: String,
    },
    /// The loader's directory could not be written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where GRUB finds its configuration: `$prefix`, the TFTP server's `grub/` directory.
/// It loads the HTTP module (the signed image has TFTP but not HTTP built in) and the
/// SMBIOS one (for the machine's UUID), then hands over to the boot server's `/grub` with
/// the labels iPXE would send.
const GRUB_CFG: &str = "insmod http\n\
insmod smbios\n\
smbios --type 1 --get-uuid 8 --set uuid\n\
configfile \"(http,10.0.2.100)/grub?mac=${net_default_mac}&uuid=${uuid}&arch=arm64\"\n";

/// The packages the loader is made of, and what is taken from each.
const SIGNED: &str = "grub-efi-arm64-signed";
const SIGNED_IMAGE: &str = "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed";
const MODULES: &str = "grub-efi-arm64-bin";
const MODULE_DIR: &str = "usr/lib/grub/arm64-efi";
const MODULE_NAMES: [&str; 2] = ["http.mod", "smbios.mod"];

impl GrubLoader {
    /// The file the firmware fetches over TFTP and boots.
    pub const BOOT_FILE: &'static str = "grubnetaa64.efi";

    /// The loader in `cache_dir`, if it is there.
    pub fn find(cache_dir: &Path) -> Result<GrubLoader, LoaderError> {
        let root = Self::dir(cache_dir);
        if root.join(Self::BOOT_FILE).is_file() {
            Ok(GrubLoader { root })
        } else {
            Err(LoaderError::NotCached { dir: root })
        }
    }

    /// Makes sure the loader is in `cache_dir`: downloads Debian's signed network GRUB and
    /// its module package for arm64 (or takes them from `SINEW_DEB_DIR`) and keeps the
    /// image, the modules its configuration loads, and that configuration. A download
    /// reports how much has arrived to `on_progress`.
    pub fn fetch(
        cache_dir: &Path,
        on_progress: &(dyn Fn(Downloaded) + Sync),
    ) -> Result<GrubLoader, LoaderError> {
        if let Ok(found) = Self::find(cache_dir) {
            return Ok(found);
        }
        let dest = Self::dir(cache_dir);
        let parent = dest.parent().unwrap_or(cache_dir);
        let package_err = |package| move |source| LoaderError::Package { package, source };
        deb::create_dir_all(parent).map_err(package_err(SIGNED))?;
        if deb::local_dir().is_none() {
            deb::ensure_arch(Arch::Aarch64).map_err(package_err(SIGNED))?;
        }
        let work = deb::work_dir(parent).map_err(package_err(SIGNED))?;
        // Each package in a directory of its own: `obtain` takes the one .deb it finds.
        let unpacked = |package| {
            let own = work.path().join(package);
            deb::obtain(package, Arch::Aarch64, &own, on_progress)
                .and_then(|deb| deb::unpack(&deb, &own))
                .map_err(package_err(package))
        };
        let signed = unpacked(SIGNED)?;
        let modules = unpacked(MODULES)?;
        let root = work.path().join("loader");
        let module_dir = root.join("grub/arm64-efi");
        create_dir(&module_dir)?;
        copy(&signed, SIGNED, SIGNED_IMAGE, &root.join(Self::BOOT_FILE))?;
        for module in MODULE_NAMES {
            let from = format!("{MODULE_DIR}/{module}");
            copy(&modules, MODULES, &from, &module_dir.join(module))?;
        }
        let cfg = root.join("grub/grub.cfg");
        fs::write(&cfg, GRUB_CFG).map_err(|source| LoaderError::Io {
            action: "write",
            path: cfg,
            source,
        })?;
        deb::commit(&root, &dest).map_err(package_err(SIGNED))?;
        Self::find(cache_dir)
    }

    /// The loader's cache directory, named after its configuration so that a new
    /// configuration is a new directory.
    fn dir(cache_dir: &Path) -> PathBuf {
        let digest = hex::encode(Sha256::digest(GRUB_CFG.as_bytes()));
        cache_dir
            .join("netboot")
            .join(format!("grub-arm64-{}", &digest[..12]))
    }
}

fn create_dir(dir: &Path) -> Result<(), LoaderError> {
    fs::create_dir_all(dir).map_err(|source| LoaderError::Io {
        action: "create",
        path: dir.to_owned(),
        source,
    })
}

/// Copies `file` of the unpacked `package` (under `unpacked`) to `to`.
fn copy(unpacked: &Path, package: &'static str, file: &str, to: &Path) -> Result<(), LoaderError> {
    let from = unpacked.join(file);
    if !from.is_file() {
        return Err(LoaderError::Missing {
            package,
            file: file.to_owned(),
        });
    }
    fs::copy(&from, to)
        .map(drop)
        .map_err(|source| LoaderError::Io {
            action: "copy to",
            path: to.to_owned(),
            source,
        })
}
