//! The kernel calls a sandbox is built from, behind a trait so that the setup sequence and
//! the cgroup decisions can be unit-tested with a fake that records calls.

use std::ffi::{CStr, CString};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// A failed kernel call: what was attempted, on what, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}")]
pub struct SysError {
    /// The operation, e.g. `mount overlay`.
    pub op: &'static str,
    /// The path or object it was applied to.
    pub target: String,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl SysError {
    fn new(
        op: &'static str,
        target: impl std::fmt::Display,
        source: impl Into<std::io::Error>,
    ) -> Self {
        SysError {
            op,
            target: target.to_string(),
            source: source.into(),
        }
    }

    /// The raw OS error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result of a kernel call.
pub type SysResult<T> = Result<T, SysError>;

/// A filesystem to mount: what `mount(2)` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    /// Source device or filesystem name.
    pub source: &'a str,
    /// Filesystem type; `None` for bind mounts and propagation changes.
    pub fstype: Option<&'a str>,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem-specific options.
    pub data: Option<&'a str>,
}

/// What kind of filesystem a path is on, as far as cgroup detection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// A cgroup v1 hierarchy.
    Cgroup1,
    /// The cgroup v2 hierarchy.
    Cgroup2,
    /// Anything else (tmpfs, ...).
    Other,
}

/// The kernel interface used by the sandbox and the cgroup code.
pub trait Sys {
    /// `mount(2)` on `target`.
    fn mount(&self, target: &Path, mount: &Mount<'_>) -> SysResult<()>;
    /// Makes `new_root` the root directory and detaches the old root.
    fn pivot_root(&self, new_root: &Path) -> SysResult<()>;
    /// Creates a directory and its parents; existing directories are fine.
    fn mkdir_all(&self, path: &Path) -> SysResult<()>;
    /// Removes an empty directory (a cgroup).
    fn rmdir(&self, path: &Path) -> SysResult<()>;
    /// Creates a character device node.
    fn mknod_char(&self, path: &Path, major: u64, minor: u64, mode: u32) -> SysResult<()>;
    /// Creates a symbolic link at `link` pointing to `target`.
    fn symlink(&self, target: &str, link: &Path) -> SysResult<()>;
    /// Copies a directory tree (the fallback when overlayfs is unavailable).
    fn copy_tree(&self, from: &Path, to: &Path) -> SysResult<()>;
    /// Writes `contents` to an existing file (cgroup control files).
    fn write_file(&self, path: &Path, contents: &str) -> SysResult<()>;
    /// Reads a whole file as text.
    fn read_file(&self, path: &Path) -> SysResult<String>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// The filesystem `path` is on (`statfs`), `None` if it does not exist.
    fn fs_kind(&self, path: &Path) -> Option<FsKind>;
    /// Sets the UTS hostname.
    fn sethostname(&self, name: &str) -> SysResult<()>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> SysResult<()>;
    /// Switches to the given user and group, dropping supplementary groups.
    fn set_user(&self, uid: u32, gid: u32) -> SysResult<()>;
    /// Drops every capability a container does not keep from the bounding set, and clears
    /// the inheritable and ambient sets, so that no exec can gain them back.
    fn limit_capabilities(&self) -> SysResult<()>;
    /// Changes the working directory.
    fn chdir(&self, path: &Path) -> SysResult<()>;
    /// Replaces the process image; returns only on failure.
    fn exec(&self, program: &CStr, argv: &[CString], envp: &[CString]) -> SysError;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn mount(&self, target: &Path, m: &Mount<'_>) -> SysResult<()> {
        nix::mount::mount(Some(m.source), target, m.fstype, m.flags, m.data).map_err(|e| {
            SysError::new(
                "mount",
                format!("{} on {}", m.fstype.unwrap_or(m.source), target.display()),
                e,
            )
        })
    }

    fn pivot_root(&self, new_root: &Path) -> SysResult<()> {
        // pivot_root(".", ".") stacks the old root on top of the new one, so no directory
        // has to be created inside the image for it; unmounting "." then drops it.
        nix::unistd::chdir(new_root).map_err(|e| SysError::new("chdir", new_root.display(), e))?;
        match nix::unistd::pivot_root(".", ".") {
            Ok(()) => nix::mount::umount2(".", MntFlags::MNT_DETACH)
                .map_err(|e| SysError::new("umount old root", ".", e))?,
            // The initial ramfs cannot be pivoted away from (sinew guests run from it): move
            // the new root over "/" and chroot, as runc's no-pivot mode does. The old root
            // stays underneath, out of reach of a process without CAP_SYS_CHROOT.
            Err(nix::errno::Errno::EINVAL) if root_is_initramfs() => {
                nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                    .map_err(|e| SysError::new("move new root over /", new_root.display(), e))?;
                nix::unistd::chroot(".").map_err(|e| SysError::new("chroot", ".", e))?;
            }
            Err(e) => return Err(SysError::new("pivot_root", new_root.display(), e)),
        }
        nix::unistd::chdir("/").map_err(|e| SysError::new("chdir", "/", e))
    }

    fn mkdir_all(&self, path: &Path) -> SysResult<()> {
        std::fs::create_dir_all(path).map_err(|e| SysError::new("mkdir", path.display(), e))
    }

    fn rmdir(&self, path: &Path) -> SysResult<()> {
        std::fs::remove_dir(path).map_err(|e| SysError::new("rmdir", path.display(), e))
    }

    fn mknod_char(&self, path: &Path, major: u64, minor: u64, mode: u32) -> SysResult<()> {
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), dev)
            .map_err(|e| SysError::new("mknod", path.display(), e))?;
        // mknod applies the umask; devices like /dev/null must be world-writable.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| SysError::new("chmod", path.display(), e))
    }

    fn symlink(&self, target: &str, link: &Path) -> SysResult<()> {
        std::os::unix::fs::symlink(target, link)
            .map_err(|e| SysError::new("symlink", link.display(), e))
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> SysResult<()> {
        crate::sandbox::copy::copy_tree(from, to)
            .map_err(|e| SysError::new("copy", from.display(), e))
    }

    fn write_file(&self, path: &Path, contents: &str) -> SysResult<()> {
        std::fs::write(path, contents).map_err(|e| SysError::new("write", path.display(), e))
    }

    fn read_file(&self, path: &Path) -> SysResult<String> {
        std::fs::read_to_string(path).map_err(|e| SysError::new("read", path.display(), e))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn fs_kind(&self, path: &Path) -> Option<FsKind> {
        let kind = nix::sys::statfs::statfs(path).ok()?.filesystem_type();
        Some(if kind == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            FsKind::Cgroup2
        } else if kind == nix::sys::statfs::CGROUP_SUPER_MAGIC {
            FsKind::Cgroup1
        } else {
            FsKind::Other
        })
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        nix::unistd::sethostname(name).map_err(|e| SysError::new("sethostname", name, e))
    }

    fn loopback_up(&self) -> SysResult<()> {
        loopback_up().map_err(|e| SysError::new("set link up", "lo", e))
    }

    fn set_user(&self, uid: u32, gid: u32) -> SysResult<()> {
        let gid = Gid::from_raw(gid);
        nix::unistd::setgroups(&[gid]).map_err(|e| SysError::new("setgroups", gid, e))?;
        nix::unistd::setgid(gid).map_err(|e| SysError::new("setgid", gid, e))?;
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| SysError::new("setuid", uid, e))
    }

    fn limit_capabilities(&self) -> SysResult<()> {
        let failed = |what: &'static str, e: caps::errors::CapsError| {
            SysError::new(
                "limit capabilities",
                what,
                std::io::Error::other(e.to_string()),
            )
        };
        for cap in
            caps::read(None, caps::CapSet::Bounding).map_err(|e| failed("bounding set", e))?
        {
            if !super::capabilities::is_kept(cap) {
                caps::drop(None, caps::CapSet::Bounding, cap)
                    .map_err(|e| failed("bounding set", e))?;
            }
        }
        caps::clear(None, caps::CapSet::Inheritable).map_err(|e| failed("inheritable set", e))?;
        caps::clear(None, caps::CapSet::Ambient).map_err(|e| failed("ambient set", e))
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chdir(path).map_err(|e| SysError::new("chdir", path.display(), e))
    }

    fn exec(&self, program: &CStr, argv: &[CString], envp: &[CString]) -> SysError {
        match nix::unistd::execve(program, argv, envp) {
            Err(e) => SysError::new("exec", program.to_string_lossy(), e),
            Ok(never) => match never {},
        }
    }
}

/// `IFF_UP` in the width of `ifreq`'s flags member.
#[allow(clippy::cast_possible_truncation)] // IFF_UP is 1
const IFF_UP: libc::c_short = libc::IFF_UP as libc::c_short;

/// Sets IFF_UP on `lo` with two ioctls: far cheaper than a netlink round trip.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: the socket is open and `req` is a valid ifreq naming an interface.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as libc::Ioctl,
            &mut req,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= IFF_UP };
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as libc::Ioctl, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether "/" is the kernel's initial ramfs, which `pivot_root` refuses to move.
fn root_is_initramfs() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|table| root_fstype(&table) == Some("rootfs"))
}

/// The file system type of the bottom mount on "/" in a `/proc/self/mountinfo` table.
fn root_fstype(mountinfo: &str) -> Option<&str> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        (fields.split(' ').nth(4) == Some("/")).then(|| rest.split(' ').next())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_fstype_reads_the_first_mount_on_slash() {
        let initramfs = "1 1 0:2 / / rw - rootfs rootfs rw,size=1024k\n\
                         20 1 0:20 / /proc rw,relatime - proc proc rw\n";
        assert_eq!(root_fstype(initramfs), Some("rootfs"));
        let disk = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    23 22 0:21 / /sys rw - sysfs sysfs rw\n";
        assert_eq!(root_fstype(disk), Some("ext4"));
        assert_eq!(root_fstype("garbage\n"), None);
    }
}
