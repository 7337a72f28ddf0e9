//! The lab's boot server: each network-booted guest is a group selected by its control
//! NIC's MAC, with a profile of its own: its machine image or its architecture's kernel and
//! base initramfs (assets named by content in the lab's directory, served only while their
//! digests match) and its command line. The secret is not among them: it reaches every
//! guest through fw_cfg.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sinew_vm::qemu;
use tokio::net::TcpListener;

use super::{io_error, kernel_cmdline, nic_mac, GuestPlan, LabError, Media};
use crate::boot::{BootServer, Config, ConfigSource, Digest, Group, NetBoot, Profile};
use crate::outcome::{Outcome, Status};
use crate::run::Ctx;

/// Starts a boot server on 127.0.0.1 for `guests`, each to boot its media, the assets
/// linked into `dir/assets`.
pub(super) fn start(
    ctx: &Ctx,
    dir: &Path,
    guests: &[(&GuestPlan, Media)],
) -> Result<Started, LabError> {
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets).map_err(io_error("creating", &assets))?;
    let mut source = ConfigSource::default().assets(&assets);
    // Guests of one architecture share a kernel: it is read once.
    let mut kernels_read = HashMap::new();
    for (plan, media) in guests {
        let kernel_digest = kernel_digest(media, &mut kernels_read)?;
        let profile = profile(plan, media, kernel_digest, &assets)?;
        source = source.profile(profile).group(Group {
            id: plan.machine.name.clone(),
            profile: plan.machine.name.clone(),
            selector: [("mac".to_owned(), nic_mac(plan, 0).to_string())].into(),
            ..Group::default()
        });
    }
    let config = check(dir, source.clone())?;
    let _entered = ctx.runtime.enter();
    let server = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .and_then(|l| BootServer::start(l, config))
        .map_err(io_error(
            "listening for the boot server on",
            Path::new("127.0.0.1"),
        ))?;
    Ok(Started { server, source })
}

/// A started boot server and its configuration, which [`set_media`] changes.
pub(super) struct Started {
    pub(super) server: BootServer,
    pub(super) source: ConfigSource,
}

impl Outcome for Started {
    fn status(&self) -> Status {
        self.server.status()
    }

    fn detail(&self) -> Option<String> {
        self.server.detail()
    }
}

/// Serves `plan`'s guest `media` from now on (its next boot takes them).
pub(super) fn set_media(
    server: &BootServer,
    source: &mut ConfigSource,
    dir: &Path,
    plan: &GuestPlan,
    media: &Media,
) -> Result<(), LabError> {
    let assets = dir.join("assets");
    let kernel_digest = kernel_digest(media, &mut HashMap::new())?;
    let new = profile(plan, media, kernel_digest, &assets)?;
    let mut changed = source.clone();
    for (_, profile) in &mut changed.profiles {
        if profile.id == new.id {
            *profile = new.clone();
        }
    }
    server.reload(check(dir, changed.clone())?);
    *source = changed;
    Ok(())
}

fn check(dir: &Path, source: ConfigSource) -> Result<Config, LabError> {
    source.check().map_err(|e| LabError::Spec {
        lab: dir.display().to_string(),
        problem: format!("boot server configuration: {e}"),
    })
}

/// `plan`'s profile: its media, as assets named by content (two guests booting the same
/// part share it) with their digests, and its command line.
fn profile(
    plan: &GuestPlan,
    media: &Media,
    kernel_digest: Digest,
    assets: &Path,
) -> Result<Profile, LabError> {
    let kernel_name = format!("vmlinuz-{}", kernel_digest.to_hex());
    let initrd_name = format!("initrd-{}", media.initrd_sha256.to_hex());
    link(&media.kernel, &assets.join(&kernel_name))?;
    link(&media.initrd, &assets.join(&initrd_name))?;
    let kernel_url = format!("/assets/{kernel_name}");
    let initrd_url = format!("/assets/{initrd_name}");
    let mut args: Vec<String> = qemu::kernel_args(plan.machine.arch)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    args.extend(media.args.iter().cloned());
    args.extend(kernel_cmdline(plan).split_whitespace().map(str::to_owned));
    Ok(Profile {
        id: plan.machine.name.clone(),
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
}

/// The digest of `media`'s kernel: its image's, or read from the file once per file in
/// `read`.
fn kernel_digest(media: &Media, read: &mut HashMap<PathBuf, Digest>) -> Result<Digest, LabError> {
    if let Some(digest) = media.kernel_sha256 {
        return Ok(digest);
    }
    if let Some(digest) = read.get(&media.kernel) {
        return Ok(*digest);
    }
    let (_, digest) = Digest::of_file(&media.kernel).map_err(io_error("reading", &media.kernel))?;
    read.insert(media.kernel.clone(), digest);
    Ok(digest)
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
