//! Assets (kernels, initrds, images) served from one directory, by name (`/assets/NAME`)
//! or by content (`/assets/sha256/HEX`), never a file whose digest differs from the one a
//! profile expects.
//!
//! A file's digest is computed once per version of the file (its size, modification time
//! and inode), so a tampered or replaced file is hashed again before it is served.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub use sinew_proto::Sha256Digest as Digest;

/// Why an asset cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The server has no assets directory.
    #[error("no assets directory is configured")]
    NoDirectory,
    /// The name leaves the directory or is empty.
    #[error("asset name {0:?} is not a plain path inside the assets directory")]
    BadName(String),
    /// No such file, or unreadable.
    #[error("asset {name:?} cannot be read: {source}")]
    Unreadable {
        /// The asset's name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the one expected.
    #[error("asset {name:?} has sha256 {actual}, but {expected} is expected")]
    Mismatch {
        /// The asset's name.
        name: String,
        /// The digest a profile names.
        expected: Digest,
        /// The file's.
        actual: Digest,
    },
    /// `/assets/sha256/X` where X is not a digest.
    #[error("{0}")]
    BadDigest(#[from] sinew_proto::DigestParseError),
    /// No file in the directory has this digest.
    #[error("no asset has sha256 {0}")]
    UnknownDigest(Digest),
}

/// A file ready to serve, checked.
#[derive(Debug)]
pub struct Asset {
    /// Its name under the assets directory.
    pub name: String,
    /// The open file.
    pub file: fs::File,
    /// Its size.
    pub len: u64,
    /// Its digest.
    pub digest: Digest,
}

/// Which version of a file a digest belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    len: u64,
    modified: (i64, i64),
    inode: u64,
}

impl Version {
    fn of(metadata: &fs::Metadata) -> Self {
        Self {
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            inode: metadata.ino(),
        }
    }
}

/// The assets directory and the digests computed so far; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    dir: Option<PathBuf>,
    digests: Arc<Mutex<HashMap<PathBuf, (Version, Digest)>>>,
}

impl Assets {
    /// Assets in `dir`; none when `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            digests: Arc::default(),
        }
    }

    /// Checks that asset `name` exists and, when `expected` is given, has that digest.
    pub fn check(&self, name: &str, expected: Option<&Digest>) -> Result<(), AssetError> {
        self.open(name, expected).map(drop)
    }

    /// Opens asset `name`, checked against `expected` when given.
    pub fn open(&self, name: &str, expected: Option<&Digest>) -> Result<Asset, AssetError> {
        let path = self.path(name)?;
        let unreadable = |source| AssetError::Unreadable {
            name: name.to_owned(),
            source,
        };
        let file = fs::File::open(&path).map_err(unreadable)?;
        let metadata = file.metadata().map_err(unreadable)?;
        if !metadata.is_file() {
            return Err(unreadable(std::io::Error::other("not a regular file")));
        }
        let digest = self.digest(&path, &metadata).map_err(unreadable)?;
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(AssetError::Mismatch {
                    name: name.to_owned(),
                    expected: *expected,
                    actual: digest,
                });
            }
        }
        Ok(Asset {
            name: name.to_owned(),
            file,
            len: metadata.len(),
            digest,
        })
    }

    /// The asset whose content has `digest` (any file directly in the directory).
    pub fn open_by_digest(&self, digest: &Digest) -> Result<Asset, AssetError> {
        let dir = self.dir.as_ref().ok_or(AssetError::NoDirectory)?;
        let entries = fs::read_dir(dir).map_err(|source| AssetError::Unreadable {
            name: String::new(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            if let Ok(asset) = self.open(&name, Some(digest)) {
                return Ok(asset);
            }
        }
        Err(AssetError::UnknownDigest(*digest))
    }

    fn path(&self, name: &str) -> Result<PathBuf, AssetError> {
        let dir = self.dir.as_ref().ok_or(AssetError::NoDirectory)?;
        let relative = Path::new(name);
        let plain = !name.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if plain {
            Ok(dir.join(relative))
        } else {
            Err(AssetError::BadName(name.to_owned()))
        }
    }

    fn digest(&self, path: &Path, metadata: &fs::Metadata) -> std::io::Result<Digest> {
        let version = Version::of(metadata);
        let known = self
            .digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .filter(|(v, _)| *v == version)
            .map(|(_, digest)| *digest);
        if let Some(digest) = known {
            return Ok(digest);
        }
        let (_, digest) = Digest::of_file(path)?;
        // A file written while it was read has another version now, and is hashed again
        // on its next use.
        let after = fs::metadata(path).map(|m| Version::of(&m))?;
        if after == version {
            self.digests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(path.to_path_buf(), (version, digest));
        }
        Ok(digest)
    }
}

/// A `Range` header that no byte of the file satisfies (answered with 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The first and last byte of a file of `len` bytes that a `Range` header asks for: `None`
/// for the whole file (no header, or one this server does not honour, such as several
/// ranges).
pub fn requested_range(
    header: Option<&str>,
    len: u64,
) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let parse = |text: &str| text.trim().parse::<u64>().ok();
    let range = match (start.trim().is_empty(), end.trim().is_empty()) {
        // The last N bytes.
        (true, false) => {
            let suffix = parse(end).ok_or(Unsatisfiable)?;
            if suffix == 0 || len == 0 {
                return Err(Unsatisfiable);
            }
            (len.saturating_sub(suffix), len - 1)
        }
        (false, _) => {
            let first = parse(start).ok_or(Unsatisfiable)?;
            let last = if end.trim().is_empty() {
                len.saturating_sub(1)
            } else {
                parse(end).ok_or(Unsatisfiable)?.min(len.saturating_sub(1))
            };
            if first >= len || last < first {
                return Err(Unsatisfiable);
            }
            (first, last)
        }
        (true, true) => return Ok(None),
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Assets) {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            fs::write(dir.path().join(name), data).unwrap();
        }
        let assets = Assets::new(Some(dir.path().to_path_buf()));
        (dir, assets)
    }

    #[test]
    fn an_asset_is_served_only_with_the_expected_digest_even_after_it_changes() {
        let (dir, assets) = dir_with(&[("vmlinuz", b"kernel v1")]);
        let good = Digest::of(b"kernel v1");
        let asset = assets.open("vmlinuz", Some(&good)).unwrap();
        assert_eq!((asset.len, asset.digest), (9, good));
        // Tampered after the check: same name, other bytes.
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(dir.path().join("vmlinuz"), b"kernel v2!").unwrap();
        match assets.open("vmlinuz", Some(&good)) {
            Err(AssetError::Mismatch {
                expected, actual, ..
            }) => {
                assert_eq!(expected, good);
                assert_eq!(actual, Digest::of(b"kernel v2!"));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(assets.open("vmlinuz", None).is_ok());
    }

    #[test]
    fn names_outside_the_directory_and_missing_files_are_refused() {
        let (_dir, assets) = dir_with(&[("a", b"x")]);
        for bad in ["../a", "/etc/passwd", "", "sub/../../a"] {
            assert!(
                matches!(assets.open(bad, None), Err(AssetError::BadName(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            assets.open("missing", None),
            Err(AssetError::Unreadable { .. })
        ));
        assert!(matches!(
            Assets::new(None).open("a", None),
            Err(AssetError::NoDirectory)
        ));
    }

    #[test]
    fn an_asset_is_found_by_its_content() {
        let (_dir, assets) = dir_with(&[("a", b"first"), ("b", b"second")]);
        let asset = assets.open_by_digest(&Digest::of(b"second")).unwrap();
        assert_eq!(asset.name, "b");
        assert!(matches!(
            assets.open_by_digest(&Digest::of(b"third")),
            Err(AssetError::UnknownDigest(_))
        ));
    }

    #[test]
    fn ranges_as_firmware_asks_for_them() {
        assert_eq!(requested_range(None, 100), Ok(None));
        assert_eq!(requested_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(requested_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(requested_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(
            requested_range(Some("bytes=50-500"), 100),
            Ok(Some((50, 99)))
        );
        assert_eq!(requested_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(requested_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(requested_range(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(requested_range(Some("bytes=5-2"), 100), Err(Unsatisfiable));
        assert_eq!(requested_range(Some("bytes=x-2"), 100), Err(Unsatisfiable));
    }
}
