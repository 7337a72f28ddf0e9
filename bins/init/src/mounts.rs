//! The pseudo file systems every Linux userland expects.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use thiserror::Error;

/// A file system to mount at boot.
struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
    /// Boot goes on without it (with a warning) if it fails.
    optional: bool,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// In order: each target exists once the ones before it are mounted.
const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: false,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: false,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        optional: false,
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
        optional: false,
    },
    Mount {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
        optional: false,
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
        optional: false,
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
        optional: false,
    },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
        optional: true,
    },
];

/// Links that programs expect in /dev, which devtmpfs does not provide.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// Why a file system could not be mounted.
#[derive(Debug, Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("cannot create mount point {target}: {source}")]
    MountPoint {
        /// The mount point.
        target: &'static str,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The mount itself failed.
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        /// The file system type.
        fstype: &'static str,
        /// The mount point.
        target: &'static str,
        /// What the kernel said.
        source: Errno,
    },
}

/// Mounts everything in order. A failed essential mount is returned as the error; failed
/// optional mounts are returned in the list, to be logged once logging is up.
pub fn mount_all() -> Result<Vec<MountError>, MountError> {
    let mut warnings = Vec::new();
    for entry in MOUNTS {
        match mount_one(entry) {
            Ok(()) => {}
            Err(error) if entry.optional => warnings.push(error),
            Err(error) => return Err(error),
        }
    }
    for (target, link) in DEV_LINKS {
        // Already present (e.g. shipped in the image) is as good as created.
        let _ = std::os::unix::fs::symlink(target, link);
    }
    Ok(warnings)
}

fn mount_one(entry: &Mount) -> Result<(), MountError> {
    std::fs::create_dir_all(entry.target).map_err(|source| MountError::MountPoint {
        target: entry.target,
        source,
    })?;
    match mount(
        Some(entry.source),
        Path::new(entry.target),
        Some(entry.fstype),
        entry.flags,
        entry.data,
    ) {
        // EBUSY: already mounted, e.g. by the kernel (CONFIG_DEVTMPFS_MOUNT).
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(source) => Err(MountError::Mount {
            fstype: entry.fstype,
            target: entry.target,
            source,
        }),
    }
}
