//! The capabilities a container keeps: Docker's default set, without `CAP_SYS_CHROOT`.
//!
//! A container's root user otherwise holds every capability: it could mount, load modules,
//! change the clock or trace the host's processes. Docker's set is what images are written
//! for. `CAP_SYS_CHROOT` is left out because where `pivot_root` cannot leave the initial ramfs
//! (sinew guests) the old root stays under the container's, and `chroot` is the way back to it.

use caps::Capability;

/// What a container process keeps in its bounding set (the most an exec as root can gain).
pub const KEPT: [Capability; 13] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Whether a container keeps `cap`.
pub fn is_kept(cap: Capability) -> bool {
    KEPT.contains(&cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_without_chroot_or_admin() {
        assert!(is_kept(Capability::CAP_NET_BIND_SERVICE));
        assert!(is_kept(Capability::CAP_CHOWN));
        for dropped in [
            Capability::CAP_SYS_CHROOT,
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_SYS_MODULE,
            Capability::CAP_SYS_PTRACE,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_SYS_TIME,
        ] {
            assert!(!is_kept(dropped), "{dropped} must be dropped");
        }
    }
}
