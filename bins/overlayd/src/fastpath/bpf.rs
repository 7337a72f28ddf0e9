//! The few `bpf(2)` commands the fast path needs: a hash map and its elements, and loading
//! a `sched_cls` program. Each command's attribute block is a `#[repr(C)]` struct laid out
//! as in `union bpf_attr`; the kernel reads only the fields of its command.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

use super::program::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

/// Room for the verifier's explanation of a rejected program.
const VERIFIER_LOG_SIZE: usize = 64 * 1024;

/// A `bpf(2)` command failed.
#[derive(Debug, Error)]
pub enum BpfError {
    /// The map could not be created.
    #[error("creating BPF map {name}")]
    MapCreate {
        /// The map's name.
        name: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// A map element could not be written or removed.
    #[error("{what} in BPF map {name}")]
    MapElement {
        /// What was being done.
        what: &'static str,
        /// The map's name.
        name: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the program; the verifier's log says why.
    #[error("loading BPF program {name}: {source}{}", verifier_tail(log))]
    Load {
        /// The program's name.
        name: String,
        /// The errno.
        source: std::io::Error,
        /// The verifier's log.
        log: String,
    },
}

/// The end of a verifier log, where the reason for a rejection is.
fn verifier_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|line| !line.is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(4)..];
    format!(" (verifier: {})", tail.join(" | "))
}

/// `BPF_MAP_CREATE`'s attributes.
#[repr(C)]
#[derive(Debug, Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `BPF_MAP_*_ELEM`'s attributes.
#[repr(C)]
#[derive(Debug, Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_PROG_LOAD`'s attributes, up to `expected_attach_type`.
#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// An object name as the kernel takes it: at most 15 bytes and a NUL.
fn object_name(name: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    bytes
}

/// Runs `bpf(cmd, attr)`; a non-negative result is returned as is.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    let size = std::mem::size_of::<T>();
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` attribute block of `size`
    // bytes laid out as the kernel's `union bpf_attr` member for `cmd`; every pointer
    // inside it refers to memory that outlives this call.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Takes ownership of the file descriptor a `bpf(2)` command returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    let fd = i32::try_from(fd).expect("bpf(2) returns file descriptors that fit an int");
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An open descriptor as `bpf(2)` and netlink attributes take it.
fn descriptor(fd: &OwnedFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).expect("an open descriptor is not negative")
}

/// A BPF hash map with fixed-size keys and values.
#[derive(Debug)]
pub struct HashMap<const K: usize, const V: usize> {
    fd: OwnedFd,
    name: String,
}

impl<const K: usize, const V: usize> HashMap<K, V> {
    /// Creates a map for up to `max_entries` elements.
    pub fn create(name: &str, max_entries: u32) -> Result<Self, BpfError> {
        const { assert!(K <= 512 && V <= 512, "BPF keys and values are small") };
        // Both at most 512, as asserted above.
        #[allow(clippy::cast_possible_truncation)]
        let (key_size, value_size) = (K as u32, V as u32);
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size,
            value_size,
            max_entries,
            map_name: object_name(name),
            ..MapCreateAttr::default()
        };
        let fd = bpf(BPF_MAP_CREATE, &mut attr).map_err(|source| BpfError::MapCreate {
            name: name.to_owned(),
            source,
        })?;
        Ok(Self {
            fd: owned(fd),
            name: name.to_owned(),
        })
    }

    /// The descriptor a program refers to the map by.
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Sets `key` to `value`.
    pub fn insert(&self, key: &[u8; K], value: &[u8; V]) -> Result<(), BpfError> {
        let mut attr = MapElemAttr {
            map_fd: self.fd_u32(),
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..MapElemAttr::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|source| self.element_error("writing an element", source))
    }

    /// Removes `key`; one already absent is fine.
    pub fn remove(&self, key: &[u8; K]) -> Result<(), BpfError> {
        let mut attr = MapElemAttr {
            map_fd: self.fd_u32(),
            key: key.as_ptr() as u64,
            ..MapElemAttr::default()
        };
        match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Ok(_) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(source) => Err(self.element_error("removing an element", source)),
        }
    }

    fn fd_u32(&self) -> u32 {
        descriptor(&self.fd)
    }

    fn element_error(&self, what: &'static str, source: std::io::Error) -> BpfError {
        BpfError::MapElement {
            what,
            name: self.name.clone(),
            source,
        }
    }
}

/// A loaded program; it stays in the kernel while this descriptor or an attachment lives.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as a traffic-control classifier named `name`, GPL-licensed (the
    /// redirect and FIB helpers are GPL-only).
    pub fn load_classifier(name: &str, insns: &[Insn]) -> Result<Self, BpfError> {
        let license = c"GPL";
        let mut log = vec![0u8; VERIFIER_LOG_SIZE];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: u32::try_from(insns.len()).expect("a program of a few dozen instructions"),
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: u32::try_from(log.len()).expect("a 64 KiB log"),
            log_buf: log.as_mut_ptr() as u64,
            prog_name: object_name(name),
            ..ProgLoadAttr::default()
        };
        let first = bpf(BPF_PROG_LOAD, &mut attr);
        let loaded = match first {
            // A log too small for the verifier's account fails a load that would pass;
            // load again without one.
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => {
                attr.log_level = 0;
                attr.log_size = 0;
                attr.log_buf = 0;
                bpf(BPF_PROG_LOAD, &mut attr)
            }
            other => other,
        };
        match loaded {
            Ok(fd) => Ok(Self { fd: owned(fd) }),
            Err(source) => {
                let end = log.iter().position(|&byte| byte == 0).unwrap_or(log.len());
                Err(BpfError::Load {
                    name: name.to_owned(),
                    source,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                })
            }
        }
    }

    /// The descriptor a tc filter attaches the program by.
    pub fn fd(&self) -> u32 {
        descriptor(&self.fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_to_fifteen_bytes_and_a_nul() {
        assert_eq!(&object_name("sinew_rx")[..9], b"sinew_rx\0");
        let long = object_name("a_name_longer_than_fifteen");
        assert_eq!(&long[..15], b"a_name_longer_t");
        assert_eq!(long[15], 0);
    }

    #[test]
    fn a_rejection_names_the_verifiers_last_words() {
        let log = "0: (b7) r0 = 0\n1: (95) exit\n\nR0 !read_ok\nprocessed 2 insns\n";
        assert_eq!(
            verifier_tail(log),
            " (verifier: 0: (b7) r0 = 0 | 1: (95) exit | R0 !read_ok | processed 2 insns)"
        );
        assert_eq!(verifier_tail(""), "");
    }
}
