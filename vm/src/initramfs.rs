//! Reproducible initramfs images: newc cpio archives whose bytes depend only on
//! what was added, never on when, by whom or in which order.
//!
//! Linux unpacks several archives concatenated into one initrd, later entries
//! replacing earlier ones, as long as each archive starts on a 4-byte boundary
//! (zero bytes between archives are skipped; see `unpack_to_rootfs` in the kernel's
//! `init/initramfs.c`). That lets a cached base image be shipped unchanged with a
//! small per-guest archive appended: see [`Initramfs::concat`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const TRAILER: &str = "TRAILER!!!";

/// Builder for a deterministic newc archive.
///
/// Entries are written sorted by path (so parents come before children), with
/// missing parent directories implied (mode 0755), mtime 0, uid and gid 0, and
/// inode numbers assigned in that order: the same set of entries always gives the
/// same bytes.
#[derive(Debug, Clone, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// Error from adding an entry to an [`Initramfs`].
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The archive path is not a plain relative path.
    #[error("invalid initramfs path `{path}`: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The mode has bits beyond the permission bits (0o7777).
    #[error("invalid mode {mode:#o} for initramfs entry `{path}`: expected permission bits only (at most 0o7777)")]
    BadMode {
        /// The entry.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// The path is already taken by an entry of another kind, or by a file.
    #[error("initramfs entry `{path}` already exists as a {existing}")]
    Exists {
        /// The entry.
        path: String,
        /// What is there already.
        existing: &'static str,
    },
    /// An ancestor of the path is a file or a symlink.
    #[error("cannot add `{path}`: its parent `{parent}` is a {existing}, not a directory")]
    ParentNotDir {
        /// The entry.
        path: String,
        /// The offending ancestor.
        parent: String,
        /// What the ancestor is.
        existing: &'static str,
    },
    /// newc stores sizes in 32 bits.
    #[error("initramfs file `{path}` is {size} bytes; newc archives hold files up to 4 GiB")]
    TooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: usize,
    },
    /// A host file to add could not be read.
    #[error("cannot read {path} for the initramfs: {source}")]
    Read {
        /// The host file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Dir { .. } => "directory",
            Node::File { .. } => "file",
            Node::Symlink { .. } => "symlink",
        }
    }
}

impl Initramfs {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory with permission bits `mode`. Adding an existing directory
    /// again just sets its mode.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, InitramfsError> {
        let path = self.prepare(path, mode)?;
        match self.entries.get(&path) {
            None | Some(Node::Dir { .. }) => {}
            Some(other) => {
                return Err(InitramfsError::Exists {
                    existing: other.kind(),
                    path,
                })
            }
        }
        self.entries.insert(path, Node::Dir { mode });
        Ok(self)
    }

    /// Adds a regular file with contents `data` and permission bits `mode`.
    pub fn add_file(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<&mut Self, InitramfsError> {
        let data = data.into();
        let path = self.prepare(path, mode)?;
        if u32::try_from(data.len()).is_err() {
            return Err(InitramfsError::TooLarge {
                path,
                size: data.len(),
            });
        }
        self.insert_new(path, Node::File { data, mode })
    }

    /// Adds a regular file with the contents of the host file `source`.
    pub fn add_file_from(
        &mut self,
        path: &str,
        source: &Path,
        mode: u32,
    ) -> Result<&mut Self, InitramfsError> {
        let data = std::fs::read(source).map_err(|e| InitramfsError::Read {
            path: source.to_owned(),
            source: e,
        })?;
        self.add_file(path, data, mode)
    }

    /// Adds a symbolic link at `path` pointing to `target` (stored verbatim).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, InitramfsError> {
        let path = self.prepare(path, 0o777)?;
        self.insert_new(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// The archive's bytes, ending with the `TRAILER!!!` record. Its length is a
    /// multiple of 4.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, (path, node)) in self.entries.iter().enumerate() {
            // Inode 0 is left unused; numbers only need to be distinct within the
            // archive since no entry has hard links (nlink of files is 1).
            let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let (mode, nlink, data) = match node {
                Node::Dir { mode } => (S_IFDIR | mode, 2, &[][..]),
                Node::File { data, mode } => (S_IFREG | mode, 1, &data[..]),
                Node::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes()),
            };
            record(&mut out, path, ino, mode, nlink, data);
        }
        record(&mut out, TRAILER, 0, 0, 1, &[]);
        out
    }

    /// Concatenates two archives (either may itself be a concatenation) into one
    /// initrd the kernel unpacks in order, `overlay`'s entries replacing `base`'s.
    /// Pads `base` with zeros to the 4-byte boundary the kernel requires between
    /// archives; output of [`Initramfs::finish`] never needs it.
    pub fn concat(base: &[u8], overlay: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(base.len() + 3 + overlay.len());
        out.extend_from_slice(base);
        out.resize(base.len().next_multiple_of(4), 0);
        out.extend_from_slice(overlay);
        out
    }

    /// Validates `path` and `mode`, and creates any missing parent directories.
    fn prepare(&mut self, path: &str, mode: u32) -> Result<String, InitramfsError> {
        let clean = clean_path(path)?;
        if mode & !0o7777 != 0 {
            return Err(InitramfsError::BadMode { path: clean, mode });
        }
        let mut parent_end = 0;
        while let Some(slash) = clean[parent_end..].find('/') {
            parent_end += slash;
            let parent = &clean[..parent_end];
            match self.entries.get(parent) {
                None => {
                    self.entries
                        .insert(parent.to_owned(), Node::Dir { mode: 0o755 });
                }
                Some(Node::Dir { .. }) => {}
                Some(other) => {
                    return Err(InitramfsError::ParentNotDir {
                        existing: other.kind(),
                        parent: parent.to_owned(),
                        path: clean,
                    })
                }
            }
            parent_end += 1;
        }
        Ok(clean)
    }

    fn insert_new(&mut self, path: String, node: Node) -> Result<&mut Self, InitramfsError> {
        if let Some(existing) = self.entries.get(&path) {
            return Err(InitramfsError::Exists {
                existing: existing.kind(),
                path,
            });
        }
        self.entries.insert(path, node);
        Ok(self)
    }
}

/// Normalises an archive path to `a/b/c` form: a leading `/` is dropped; empty,
/// `.` and `..` components are refused so an entry can never land outside the root.
fn clean_path(path: &str) -> Result<String, InitramfsError> {
    let bad = |reason| InitramfsError::BadPath {
        path: path.to_owned(),
        reason,
    };
    let rel = path.strip_prefix('/').unwrap_or(path);
    if rel.is_empty() {
        return Err(bad("the root directory is implied"));
    }
    if rel.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("empty, `.` and `..` components are not allowed"));
    }
    Ok(rel.to_owned())
}

/// Appends one newc record: 110-byte ASCII header, NUL-terminated name padded to 4
/// bytes, data padded to 4 bytes.
fn record(out: &mut Vec<u8>, name: &str, ino: u32, mode: u32, nlink: u32, data: &[u8]) {
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    // Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
    // rdevminor namesize check.
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name_size, 0];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    fn sample() -> Initramfs {
        let mut image = Initramfs::new();
        image
            .add_file("/init", b"#!/bin/sh\necho hi\n".to_vec(), 0o755)
            .unwrap()
            .add_file("etc/sinew/agent.toml", b"token = \"x\"\n".to_vec(), 0o600)
            .unwrap()
            .add_symlink("bin/sh", "busybox")
            .unwrap()
            .add_file("bin/busybox", vec![0x7f; 4099], 0o755)
            .unwrap()
            .add_dir("proc", 0o555)
            .unwrap()
            .add_dir("/tmp/", 0o1777)
            .unwrap();
        image
    }

    /// Installs GNU cpio from Debian's package if it is missing (the suite runs as root
    /// and installs what it needs).
    fn ensure_cpio() {
        static CHECKED: std::sync::Once = std::sync::Once::new();
        CHECKED.call_once(|| {
            if Command::new("cpio").arg("--version").output().is_err() {
                let status = Command::new("apt-get")
                    .args(crate::deb::APT_LOCK_WAIT)
                    .args(["install", "-y", "-q", "cpio"])
                    .status();
                assert!(
                    status.is_ok_and(|status| status.success()),
                    "GNU cpio is missing and `apt-get install cpio` failed"
                );
            }
        });
    }

    fn run_cpio(args: &[&str], dir: &Path, input: &[u8]) -> String {
        ensure_cpio();
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("GNU cpio is installed (Debian package cpio)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn same_entries_in_any_order_give_identical_bytes() {
        let a = sample().finish();
        let mut other = Initramfs::new();
        other
            .add_dir("tmp", 0o1777)
            .unwrap()
            .add_dir("proc", 0o555)
            .unwrap()
            .add_file("bin/busybox", vec![0x7f; 4099], 0o755)
            .unwrap()
            .add_symlink("/bin/sh", "busybox")
            .unwrap()
            .add_file("etc/sinew/agent.toml", b"token = \"x\"\n".to_vec(), 0o600)
            .unwrap()
            .add_file("init", b"#!/bin/sh\necho hi\n".to_vec(), 0o755)
            .unwrap();
        let b = other.finish();
        assert_eq!(Sha256::digest(&a), Sha256::digest(&b));
        assert_eq!(a, b);
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn gnu_cpio_lists_and_extracts_exactly_the_entries() {
        let bytes = sample().finish();
        let dir = tempfile::tempdir().unwrap();
        let listing = run_cpio(&["-t", "--quiet"], dir.path(), &bytes);
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "etc",
                "etc/sinew",
                "etc/sinew/agent.toml",
                "init",
                "proc",
                "tmp"
            ]
        );
        run_cpio(
            &[
                "-i",
                "--quiet",
                "--make-directories",
                "--no-absolute-filenames",
            ],
            dir.path(),
            &bytes,
        );
        let root = dir.path();
        assert_eq!(
            std::fs::read(root.join("init")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read(root.join("bin/busybox")).unwrap(),
            vec![0x7f; 4099]
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let mode = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("etc/sinew/agent.toml"), 0o600);
        assert_eq!(mode("init"), 0o755);
        assert_eq!(mode("proc"), 0o555);
        assert_eq!(mode("etc"), 0o755);
        let verbose = run_cpio(&["-tv", "--quiet"], dir.path(), &bytes);
        assert!(
            verbose
                .lines()
                .all(|l| l.contains(" root ") && l.contains("1970")),
            "{verbose}"
        );
    }

    #[test]
    fn concatenated_archives_list_both_and_are_aligned() {
        let mut overlay = Initramfs::new();
        overlay
            .add_file(
                "etc/sinew/agent.toml",
                b"token = \"secret\"\n".to_vec(),
                0o600,
            )
            .unwrap();
        let joined = Initramfs::concat(&sample().finish(), &overlay.finish());
        let dir = tempfile::tempdir().unwrap();
        // GNU cpio stops at the first trailer, so unpack the second archive from its
        // start, which `concat` put on a 4-byte boundary like the kernel needs.
        let base_len = sample().finish().len();
        assert_eq!(&joined[base_len..base_len + 6], b"070701");
        let listing = run_cpio(&["-t", "--quiet"], dir.path(), &joined[base_len..]);
        assert_eq!(
            listing.lines().collect::<Vec<_>>(),
            ["etc", "etc/sinew", "etc/sinew/agent.toml"]
        );
        let odd = Initramfs::concat(b"abcde", b"070701");
        assert_eq!(odd, [&b"abcde\0\0\0"[..], b"070701"].concat());
    }

    #[test]
    fn bad_paths_modes_and_conflicts_are_named() {
        let mut image = sample();
        for bad in ["", "/", "a/../b", "a//b", "./a"] {
            let err = image.add_file(bad, Vec::new(), 0o644).unwrap_err();
            assert!(
                matches!(err, InitramfsError::BadPath { .. }),
                "{bad}: {err}"
            );
        }
        let err = image
            .add_file("x", Vec::new(), 0o100_644)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x`") && err.contains("0o100644"), "{err}");
        let err = image
            .add_file("init", Vec::new(), 0o644)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`init` already exists as a file"), "{err}");
        let err = image
            .add_file("init/x", Vec::new(), 0o644)
            .unwrap_err()
            .to_string();
        assert!(err.contains("parent `init` is a file"), "{err}");
        let err = image.add_dir("bin/sh", 0o755).unwrap_err().to_string();
        assert!(
            err.contains("`bin/sh` already exists as a symlink"),
            "{err}"
        );
        let err = image
            .add_file_from("f", Path::new("/nonexistent/f"), 0o644)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/f"), "{err}");
    }
}
