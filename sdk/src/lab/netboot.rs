//! The lab's boot server: each network-booted guest is a group selected by its control
//! NIC's MAC, with a profile of its own: its architecture's kernel and base initramfs
//! (assets named in the lab's directory, checked against their digests) and its command
//! line. The secret is not among them: it reaches every guest through fw_cfg.

use std::path::Path;

use sinew_vm::kernel::Kernel;
use sinew_vm::qemu;
use tokio::net::TcpListener;

use super::{io_error, kernel_cmdline, nic_mac, BaseImage, GuestPlan, LabError};
use crate::boot::{BootServer, ConfigSource, Digest, Group, NetBoot, Profile};
use crate::run::Ctx;

/// Starts a boot server on 127.0.0.1 for the network-booted guests among `plans`, its
/// assets linked into `dir/assets`.
pub(super) fn start(
    ctx: &Ctx,
    dir: &Path,
    plans: &[&GuestPlan],
    kernels: &[Kernel],
    bases: &[BaseImage],
) -> Result<BootServer, LabError> {
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets).map_err(io_error("creating", &assets))?;
    let mut source = ConfigSource::default().assets(&assets);
    for plan in plans {
        let arch = plan.machine.arch;
        let kernel = kernels
            .iter()
            .find(|k| k.arch == arch)
            .expect("prepared for every arch");
        let base = bases
            .iter()
            .find(|b| b.arch == arch)
            .expect("made for every arch");
        let kernel_name = format!("vmlinuz-{}", kernel.release);
        let initrd_name = format!("initramfs-{}.cpio", base.sha256);
        link(&kernel.image, &assets.join(&kernel_name))?;
        link(&base.path, &assets.join(&initrd_name))?;
        let (_, kernel_digest) =
            Digest::of_file(&kernel.image).map_err(io_error("reading", &kernel.image))?;
        let kernel_url = format!("/assets/{kernel_name}");
        let initrd_url = format!("/assets/{initrd_name}");
        let args = format!("{} {}", qemu::kernel_args(arch), kernel_cmdline(plan));
        let name = &plan.machine.name;
        source = source
            .profile(Profile {
                id: name.clone(),
                boot: NetBoot {
                    kernel: kernel_url.clone(),
                    initrd: vec![initrd_url.clone()],
                    args: args.split_whitespace().map(str::to_owned).collect(),
                },
                digests: [
                    (kernel_url, kernel_digest.to_hex()),
                    (initrd_url, base.sha256.clone()),
                ]
                .into(),
                ..Profile::default()
            })
            .group(Group {
                id: name.clone(),
                profile: name.clone(),
                selector: [("mac".to_owned(), nic_mac(plan, 0).to_string())].into(),
                ..Group::default()
            });
    }
    let config = source.check().map_err(|e| LabError::Spec {
        lab: dir.display().to_string(),
        problem: format!("boot server configuration: {e}"),
    })?;
    let _entered = ctx.runtime.enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .and_then(|l| BootServer::start(l, config))
        .map_err(io_error(
            "listening for the boot server on",
            Path::new("127.0.0.1"),
        ))?;
    Ok(listener)
}

/// Links `target` as the asset `link` (two guests of an architecture share their assets).
fn link(target: &Path, link: &Path) -> Result<(), LabError> {
    match std::os::unix::fs::symlink(target, link) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(io_error("linking an asset at", link)(e))
        }
        _ => Ok(()),
    }
}
