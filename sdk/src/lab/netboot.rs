//! The lab's boot server: each network-booted guest is a group selected by its control
//! NIC's MAC, with a profile of its own: its machine image or its architecture's kernel and
//! base initramfs (assets named by content in the lab's directory, served only while their
//! digests match) and its command line. The secret is not among them: it reaches every
//! guest through fw_cfg.

use std::path::Path;

use sinew_vm::qemu;
use tokio::net::TcpListener;

use super::{io_error, kernel_cmdline, nic_mac, GuestPlan, LabError, Media};
use crate::boot::{BootServer, ConfigSource, Digest, Group, NetBoot, Profile};
use crate::run::Ctx;

/// Starts a boot server on 127.0.0.1 for `guests`, each to boot its media, the assets
/// linked into `dir/assets`.
pub(super) fn start(
    ctx: &Ctx,
    dir: &Path,
    guests: &[(&GuestPlan, Media)],
) -> Result<BootServer, LabError> {
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets).map_err(io_error("creating", &assets))?;
    let mut source = ConfigSource::default().assets(&assets);
    for (plan, media) in guests {
        let kernel_digest = match media.kernel_sha256 {
            Some(digest) => digest,
            None => {
                Digest::of_file(&media.kernel)
                    .map_err(io_error("reading", &media.kernel))?
                    .1
            }
        };
        // Named by content: two guests booting the same part share it.
        let kernel_name = format!("vmlinuz-{}", kernel_digest.to_hex());
        let initrd_name = format!("initrd-{}", media.initrd_sha256.to_hex());
        link(&media.kernel, &assets.join(&kernel_name))?;
        link(&media.initrd, &assets.join(&initrd_name))?;
        let kernel_url = format!("/assets/{kernel_name}");
        let initrd_url = format!("/assets/{initrd_name}");
        let arch = plan.machine.arch;
        let mut args: Vec<String> = qemu::kernel_args(arch)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        args.extend(media.args.iter().cloned());
        args.extend(kernel_cmdline(plan).split_whitespace().map(str::to_owned));
        let name = &plan.machine.name;
        source = source
            .profile(Profile {
                id: name.clone(),
                boot: NetBoot {
                    kernel: kernel_url.clone(),
                    initrd: vec![initrd_url.clone()],
                    args,
                },
                digests: [
                    (kernel_url, kernel_digest.to_hex()),
                    (initrd_url, media.initrd_sha256.to_hex()),
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
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .and_then(|l| BootServer::start(l, config))
        .map_err(io_error(
            "listening for the boot server on",
            Path::new("127.0.0.1"),
        ))
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
