//! The container's root filesystem: an overlay over the shared, read-only rendered rootfs,
//! with a minimal /dev, a fresh /proc and a read-only /sys, then `pivot_root` into it.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::sys::{Mount, Sys, SysError};

/// Where the container's root filesystem comes from and where it is assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsPlan {
    /// The rendered image rootfs: the read-only lower layer, shared between containers.
    pub lower: PathBuf,
    /// The container's writable layer.
    pub upper: PathBuf,
    /// overlayfs scratch directory, on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Mount point of the assembled root.
    pub merged: PathBuf,
    /// Where a private copy of `lower` goes when overlayfs is unavailable.
    pub copy: PathBuf,
}

impl RootfsPlan {
    /// The standard layout inside a container directory.
    pub fn in_container_dir(lower: &Path, dir: &Path) -> Self {
        RootfsPlan {
            lower: lower.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("rootfs"),
            copy: dir.join("copy"),
        }
    }
}

/// Character devices every container gets: name, major, minor.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Links every container gets in /dev: name, target.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Assembles the root filesystem and pivots into it. Runs in the container's fresh
/// mount namespace, before the program is executed.
pub fn enter(sys: &dyn Sys, plan: &RootfsPlan) -> Result<(), SysError> {
    // Nothing mounted from here on may propagate back to the host.
    sys.mount(
        Path::new("/"),
        &Mount {
            source: "none",
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            data: None,
        },
    )?;
    mount_root(sys, plan)?;
    let root = &plan.merged;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_at(
        sys,
        &root.join("proc"),
        "proc",
        "proc",
        nosuid_nodev_noexec,
        None,
    )?;
    mount_at(
        sys,
        &root.join("sys"),
        "sysfs",
        "sysfs",
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;
    populate_dev(sys, &root.join("dev"))?;
    sys.pivot_root(root)
}

/// overlayfs over the rendered rootfs; a private copy when the kernel refuses overlay
/// (no module, or an upper directory on a filesystem overlay cannot use).
fn mount_root(sys: &dyn Sys, plan: &RootfsPlan) -> Result<(), SysError> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        plan.lower.display(),
        plan.upper.display(),
        plan.work.display()
    );
    // The upper layer lives and dies with the container: "volatile" skips the sync of
    // the upper filesystem at unmount, which otherwise stalls every container exit on a
    // journal commit. Kernels before 5.10 refuse the option; retry without it.
    let volatile = format!("{options},volatile");
    let overlay = |data: &str| {
        let mount = Mount {
            source: "overlay",
            fstype: Some("overlay"),
            flags: MsFlags::empty(),
            data: Some(data),
        };
        sys.mount(&plan.merged, &mount)
    };
    let result = match overlay(&volatile) {
        Err(e) if e.errno() == Some(libc::EINVAL) => overlay(&options),
        other => other,
    };
    match result {
        Ok(()) => Ok(()),
        Err(err)
            if matches!(
                err.errno(),
                Some(libc::ENODEV | libc::EINVAL | libc::EOPNOTSUPP)
            ) =>
        {
            tracing::warn!(error = %err, "overlayfs unavailable; copying the rootfs instead");
            sys.copy_tree(&plan.lower, &plan.copy)?;
            let bind = Mount {
                source: path_str(&plan.copy),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None,
            };
            sys.mount(&plan.merged, &bind)
        }
        Err(err) => Err(err),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

fn mount_at(
    sys: &dyn Sys,
    target: &Path,
    source: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SysError> {
    sys.mkdir_all(target)?;
    sys.mount(
        target,
        &Mount {
            source,
            fstype: Some(fstype),
            flags,
            data,
        },
    )
}

/// A tmpfs /dev with just the devices a program expects, its own devpts and shm.
fn populate_dev(sys: &dyn Sys, dev: &Path) -> Result<(), SysError> {
    mount_at(
        sys,
        dev,
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEVICES {
        sys.mknod_char(&dev.join(name), major, minor, 0o666)?;
    }
    for (name, target) in DEV_LINKS {
        sys.symlink(target, &dev.join(name))?;
    }
    mount_at(
        sys,
        &dev.join("pts"),
        "devpts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mount_at(
        sys,
        &dev.join("shm"),
        "shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fake::FakeSys;

    fn plan() -> RootfsPlan {
        RootfsPlan::in_container_dir(Path::new("/images/busybox"), Path::new("/c/1"))
    }

    #[test]
    fn mounts_overlay_then_proc_sys_dev_and_pivots_last() {
        let sys = FakeSys::default();
        enter(&sys, &plan()).unwrap();
        let calls = sys.calls();
        assert!(
            calls[0].starts_with("mount - / MS_REC | MS_PRIVATE"),
            "{calls:?}"
        );
        assert_eq!(
            calls[1],
            "mount overlay /c/1/rootfs (empty) lowerdir=/images/busybox,upperdir=/c/1/upper,workdir=/c/1/work,volatile"
        );
        let proc = calls
            .iter()
            .position(|c| c.starts_with("mount proc /c/1/rootfs/proc"))
            .unwrap();
        let sys_mount = calls
            .iter()
            .position(|c| c.starts_with("mount sysfs /c/1/rootfs/sys"))
            .unwrap();
        assert!(
            calls[sys_mount].contains("MS_RDONLY"),
            "{}",
            calls[sys_mount]
        );
        assert!(proc > 1 && sys_mount > proc);
        assert_eq!(calls.last().unwrap(), "pivot_root /c/1/rootfs");
        for dev in [
            "null 1:3",
            "zero 1:5",
            "full 1:7",
            "random 1:8",
            "urandom 1:9",
            "tty 5:0",
        ] {
            assert!(
                calls.contains(&format!("mknod /c/1/rootfs/dev/{dev} 666")),
                "{dev}: {calls:?}"
            );
        }
        assert!(calls.iter().any(
            |c| c.starts_with("mount devpts /c/1/rootfs/dev/pts") && c.contains("newinstance")
        ));
        assert!(calls.contains(&"symlink /c/1/rootfs/dev/ptmx -> pts/ptmx".to_string()));
        assert!(calls.contains(&"symlink /c/1/rootfs/dev/stdout -> /proc/self/fd/1".to_string()));
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount tmpfs /c/1/rootfs/dev/shm")));
    }

    #[test]
    fn falls_back_to_a_copy_when_overlay_is_refused() {
        let sys = FakeSys {
            fail: vec!["mount overlay".into()],
            ..FakeSys::default()
        };
        enter(&sys, &plan()).unwrap();
        let calls = sys.calls();
        assert!(
            calls[1].ends_with(",volatile") && calls[2].ends_with("workdir=/c/1/work"),
            "{calls:?}"
        );
        assert_eq!(calls[3], "copy /images/busybox /c/1/copy");
        assert!(
            calls[4].starts_with("mount - /c/1/rootfs MS_BIND | MS_REC"),
            "{calls:?}"
        );
        assert_eq!(calls.last().unwrap(), "pivot_root /c/1/rootfs");
    }

    #[test]
    fn kernels_without_volatile_overlays_get_a_plain_one() {
        let volatile = "mount overlay /c/1/rootfs (empty) lowerdir=/images/busybox,upperdir=/c/1/upper,workdir=/c/1/work,volatile";
        let sys = FakeSys {
            fail: vec![volatile.into()],
            ..FakeSys::default()
        };
        enter(&sys, &plan()).unwrap();
        let calls = sys.calls();
        assert_eq!(calls[2], "mount overlay /c/1/rootfs (empty) lowerdir=/images/busybox,upperdir=/c/1/upper,workdir=/c/1/work");
        assert!(!calls.iter().any(|c| c.starts_with("copy")), "{calls:?}");
    }

    #[test]
    fn a_failing_step_stops_the_sequence_before_pivot_root() {
        let sys = FakeSys {
            fail: vec!["mount proc".into()],
            ..FakeSys::default()
        };
        let err = enter(&sys, &plan()).unwrap_err();
        assert!(err.target.contains("mount proc"), "{err}");
        assert!(!sys.calls().iter().any(|c| c.starts_with("pivot_root")));
    }
}
