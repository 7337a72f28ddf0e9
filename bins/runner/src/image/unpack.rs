//! Applies an OCI layer (tar, optionally gzip) onto a root filesystem directory, refusing
//! anything that could write outside it.
//!
//! Paths are resolved component by component inside the rootfs: `..` and absolute entry paths
//! are refused, a symlink met on the way is followed only while it stays inside (absolute link
//! targets resolve against the rootfs, as they would in the container; a relative target that
//! climbs above the rootfs is refused), hard links must point inside, and device nodes are
//! refused. Whiteouts are applied in a first pass because they hide lower layers only, never
//! entries of their own layer.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;

use super::digest::{Digest, HashingReader};
use tar::{Archive, EntryType};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const MAX_SYMLINKS: usize = 40;

/// Why a layer could not be applied. Every refusal names the layer and the entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer's media type is not a (gzip) tar.
    #[error("layer {layer}: unsupported media type {media_type:?} (expected an OCI/Docker tar or tar+gzip layer)")]
    UnsupportedMediaType {
        /// The layer digest.
        layer: String,
        /// Its media type.
        media_type: String,
    },
    /// An entry path holds a `..` component.
    #[error("layer {layer}: entry {path:?} climbs out with '..'")]
    ParentDir {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
    },
    /// An entry path is absolute.
    #[error("layer {layer}: entry {path:?} is an absolute path")]
    AbsolutePath {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
    },
    /// Writing the entry would go through a symlink that leaves the rootfs.
    #[error("layer {layer}: entry {path:?} goes through a symlink that escapes the rootfs")]
    SymlinkEscape {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
    },
    /// A hard link points outside the rootfs (or to nothing).
    #[error("layer {layer}: hard link {path:?} points outside the rootfs or at a missing file: {target:?}")]
    HardlinkEscape {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
        /// The link target as written in the tar.
        target: String,
    },
    /// The uncompressed layer does not hash to the config's diff_id.
    #[error("layer {layer}: uncompressed content hashes to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        /// The layer digest.
        layer: String,
        /// The diff_id in the config.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// A whiteout that names no sibling (`.wh.`, `.wh..`, `.wh...`).
    #[error("layer {layer}: whiteout {path:?} does not name an entry")]
    BadWhiteout {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
    },
    /// The entry is a character or block device.
    #[error("layer {layer}: entry {path:?} is a device node, which images may not carry")]
    DeviceNode {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
    },
    /// Resolving the entry path met more than 40 symlinks.
    #[error("layer {layer}: entry {path:?} resolves through too many symlinks")]
    SymlinkLoop {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
    },
    /// The entry is of a tar type sinew-run does not render (e.g. sparse files).
    #[error("layer {layer}: entry {path:?} has unsupported tar type {kind}")]
    UnsupportedEntry {
        /// The layer digest.
        layer: String,
        /// The entry path.
        path: String,
        /// The tar entry type.
        kind: String,
    },
    /// Reading the layer or writing into the rootfs failed (including malformed tar).
    #[error("layer {layer}: {path:?}: {source}")]
    Io {
        /// The layer digest.
        layer: String,
        /// The entry path, or the layer file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// Applies the layer file `layer_file` (named `layer` in errors) onto `rootfs`, after checking
/// that its uncompressed content hashes to `diff_id` (from the image config).
pub fn apply_layer(
    rootfs: &Path,
    layer_file: &Path,
    media_type: &str,
    layer: &str,
    diff_id: &str,
) -> Result<(), UnpackError> {
    if !media_type.contains("tar") || media_type.contains("zstd") {
        return Err(UnpackError::UnsupportedMediaType {
            layer: layer.to_owned(),
            media_type: media_type.to_owned(),
        });
    }
    let unpacker = Unpacker {
        rootfs,
        layer,
        as_root: nix::unistd::geteuid().is_root(),
    };
    let actual = unpacker.for_each_entry(layer_file, |u, entry, components| {
        u.apply_whiteout(entry, components)
    })?;
    if actual.to_string() != diff_id {
        return Err(UnpackError::DiffIdMismatch {
            layer: layer.to_owned(),
            expected: diff_id.to_owned(),
            actual: actual.to_string(),
        });
    }
    unpacker.for_each_entry(layer_file, |u, entry, components| {
        u.extract(entry, components)
    })?;
    Ok(())
}

struct Unpacker<'a> {
    rootfs: &'a Path,
    layer: &'a str,
    as_root: bool,
}

type Components = Vec<OsString>;
type LayerReader = HashingReader<Box<dyn Read>>;

impl Unpacker<'_> {
    fn for_each_entry(
        &self,
        layer_file: &Path,
        mut visit: impl FnMut(
            &Self,
            &mut tar::Entry<'_, LayerReader>,
            Components,
        ) -> Result<(), UnpackError>,
    ) -> Result<Digest, UnpackError> {
        let file_err = |source| self.io_err(&layer_file.display().to_string(), source);
        let reader = HashingReader::new(open_maybe_gzip(layer_file).map_err(file_err)?);
        let mut archive = Archive::new(reader);
        for entry in archive.entries().map_err(file_err)? {
            let mut entry = entry.map_err(file_err)?;
            if entry.header().entry_type() == EntryType::XGlobalHeader {
                continue;
            }
            let path = entry.path().map_err(file_err)?.into_owned();
            let components = self.components(&path)?;
            visit(self, &mut entry, components)?;
        }
        // The diff_id covers the whole stream, padding after the end-of-archive marker included.
        let mut reader = archive.into_inner();
        io::copy(&mut reader, &mut io::sink()).map_err(file_err)?;
        Ok(reader.finish())
    }

    /// First pass: `.wh.name` deletes `name` from lower layers, `.wh..wh..opq` empties its
    /// directory.
    fn apply_whiteout(
        &self,
        _entry: &mut tar::Entry<'_, LayerReader>,
        mut components: Components,
    ) -> Result<(), UnpackError> {
        let Some(name) = components.pop() else {
            return Ok(());
        };
        let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT_PREFIX)) else {
            return Ok(());
        };
        let shown = display(&components, &name);
        if name != OPAQUE_MARKER && matches!(hidden, "" | "." | "..") {
            return Err(UnpackError::BadWhiteout {
                layer: self.layer.to_owned(),
                path: shown,
            });
        }
        let dir = self.resolve(&components, true, &shown)?;
        if name == OPAQUE_MARKER {
            return match fs::read_dir(&dir) {
                Ok(children) => {
                    for child in children {
                        let child = child.map_err(|e| self.io_err(&shown, e))?;
                        remove_any(&child.path()).map_err(|e| self.io_err(&shown, e))?;
                    }
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io_err(&shown, e)),
            };
        }
        match remove_any(&dir.join(hidden)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.io_err(&shown, e)),
            _ => Ok(()),
        }
    }

    /// Second pass: everything but whiteouts.
    fn extract(
        &self,
        entry: &mut tar::Entry<'_, LayerReader>,
        mut components: Components,
    ) -> Result<(), UnpackError> {
        let Some(name) = components.pop() else {
            return Ok(());
        };
        if name.to_string_lossy().starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        let shown = display(&components, &name);
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block) {
            return Err(UnpackError::DeviceNode {
                layer: self.layer.to_owned(),
                path: shown,
            });
        }
        let parent = self.resolve(&components, true, &shown)?;
        let io = |e| self.io_err(&shown, e);
        fs::create_dir_all(&parent).map_err(io)?;
        let target = parent.join(&name);
        let header = entry.header();
        let mode = header.mode().map_err(io)? & 0o7777;
        let owner = (header.uid().map_err(io)?, header.gid().map_err(io)?);
        let mtime = header.mtime().map_err(io)?;
        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        remove_any(&target).map_err(io)?;
                        fs::create_dir(&target).map_err(io)?;
                    }
                    Err(_) => fs::create_dir(&target).map_err(io)?,
                }
                self.set_owner_and_mode(&target, owner, Some(mode))
                    .map_err(io)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                replace(&target).map_err(io)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io)?;
                io::copy(entry, &mut file).map_err(io)?;
                file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
                    .map_err(io)?;
                self.set_owner_and_mode(&target, owner, Some(mode))
                    .map_err(io)?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| io(missing_link_name()))?;
                replace(&target).map_err(io)?;
                std::os::unix::fs::symlink(&link, &target).map_err(io)?;
                self.set_owner_and_mode(&target, owner, None).map_err(io)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| io(missing_link_name()))?;
                let source = self.hardlink_source(&link, &shown)?;
                replace(&target).map_err(io)?;
                fs::hard_link(&source, &target).map_err(io)?;
            }
            EntryType::Fifo => {
                replace(&target).map_err(io)?;
                nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| io(io::Error::from(e)))?;
                self.set_owner_and_mode(&target, owner, Some(mode))
                    .map_err(io)?;
            }
            other => {
                return Err(UnpackError::UnsupportedEntry {
                    layer: self.layer.to_owned(),
                    path: shown,
                    kind: format!("{other:?}"),
                })
            }
        }
        Ok(())
    }

    /// Splits an entry path into normal components, refusing `..` and absolute paths.
    fn components(&self, path: &Path) -> Result<Components, UnpackError> {
        let shown = path.display().to_string();
        let mut out = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => out.push(name.to_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(UnpackError::ParentDir {
                        layer: self.layer.to_owned(),
                        path: shown,
                    })
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(UnpackError::AbsolutePath {
                        layer: self.layer.to_owned(),
                        path: shown,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Resolves `components` inside the rootfs, following symlinks (the last one only when
    /// `follow_last`). Missing components are kept as they are; they will be created.
    fn resolve(
        &self,
        components: &[OsString],
        follow_last: bool,
        shown: &str,
    ) -> Result<PathBuf, UnpackError> {
        let escape = || UnpackError::SymlinkEscape {
            layer: self.layer.to_owned(),
            path: shown.to_owned(),
        };
        let mut resolved: Vec<OsString> = Vec::new();
        let mut pending: VecDeque<OsString> = components.iter().cloned().collect();
        let mut links = 0;
        while let Some(component) = pending.pop_front() {
            if component == ".." {
                resolved.pop().ok_or_else(escape)?;
                continue;
            }
            resolved.push(component);
            if pending.is_empty() && !follow_last {
                break;
            }
            let here = join(self.rootfs, &resolved);
            let Ok(meta) = fs::symlink_metadata(&here) else {
                continue;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(UnpackError::SymlinkLoop {
                    layer: self.layer.to_owned(),
                    path: shown.to_owned(),
                });
            }
            let target = fs::read_link(&here).map_err(|e| self.io_err(shown, e))?;
            resolved.pop();
            let mut expanded = VecDeque::new();
            for part in target.components() {
                match part {
                    Component::RootDir | Component::Prefix(_) => resolved.clear(),
                    Component::CurDir => {}
                    Component::ParentDir => expanded.push_back(OsString::from("..")),
                    Component::Normal(name) => expanded.push_back(name.to_owned()),
                }
            }
            expanded.extend(pending);
            pending = expanded;
        }
        Ok(join(self.rootfs, &resolved))
    }

    /// The existing file a hard link entry points at, which must lie inside the rootfs.
    fn hardlink_source(&self, link: &Path, shown: &str) -> Result<PathBuf, UnpackError> {
        let escape = || UnpackError::HardlinkEscape {
            layer: self.layer.to_owned(),
            path: shown.to_owned(),
            target: link.display().to_string(),
        };
        let components = self.components(link).map_err(|_| escape())?;
        let source = self
            .resolve(&components, false, shown)
            .map_err(|_| escape())?;
        match fs::symlink_metadata(&source) {
            Ok(meta) if !meta.is_dir() => Ok(source),
            _ => Err(escape()),
        }
    }

    fn set_owner_and_mode(
        &self,
        path: &Path,
        (uid, gid): (u64, u64),
        mode: Option<u32>,
    ) -> io::Result<()> {
        if self.as_root {
            let uid = u32::try_from(uid)
                .map_err(|_| io::Error::other(format!("uid {uid} out of range")))?;
            let gid = u32::try_from(gid)
                .map_err(|_| io::Error::other(format!("gid {gid} out of range")))?;
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        if let Some(mode) = mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    fn io_err(&self, path: &str, source: io::Error) -> UnpackError {
        UnpackError::Io {
            layer: self.layer.to_owned(),
            path: path.to_owned(),
            source,
        }
    }
}

/// Opens a layer, decompressing when it starts with the gzip magic whatever its media type.
pub(super) fn open_maybe_gzip(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let is_gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.rewind()?;
    let reader = BufReader::new(file);
    Ok(if is_gzip {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Removes whatever is at `path` (not following a final symlink) so a new entry can take its
/// place; a missing path is fine.
fn replace(path: &Path) -> io::Result<()> {
    match remove_any(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn missing_link_name() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "link entry without a link name")
}

fn join(root: &Path, components: &[OsString]) -> PathBuf {
    components
        .iter()
        .fold(root.to_owned(), |path, c| path.join(c))
}

fn display(components: &[OsString], name: &OsStr) -> String {
    join(Path::new(""), components)
        .join(name)
        .display()
        .to_string()
}
