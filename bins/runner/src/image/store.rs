//! The image store under the state directory: blobs, rendered root filesystems and one small
//! record per image name. Records are what `resolve` reads, so starting a container costs
//! one small file read.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::blobs::{BlobError, BlobStore};
use super::digest::Digest;
use super::lock::StoreLock;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No image has this name or digest.
    #[error("no image named {0:?} and no image digest starting with it in the store (see `sinew-run image list`)")]
    NotFound(String),
    /// A digest prefix matches several images.
    #[error("{reference:?} matches several images: {}", .matches.join(", "))]
    Ambiguous {
        /// The reference given.
        reference: String,
        /// The names of the matching images.
        matches: Vec<String>,
    },
    /// An image record does not parse.
    #[error("image record {path} is corrupt: {reason}")]
    CorruptRecord {
        /// The record file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A blob operation failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A store file or directory could not be read or written.
    #[error("image store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// How to run an image, from its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
}

/// A fetched, verified and rendered image, ready to run.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The image name.
    pub name: String,
    /// `sha256:` digest of the image manifest that was rendered.
    pub manifest_digest: String,
    /// The rendered root filesystem (shared by all containers of the image; do not write to
    /// it, mount it read-only or under an overlay).
    pub rootfs: PathBuf,
    /// How to run it.
    pub config: RuntimeConfig,
}

/// What the store records about one image name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image name.
    pub name: String,
    /// Digest of the rendered image manifest.
    pub manifest_digest: String,
    /// Digest of the signed top-level blob (manifest or index).
    pub top_digest: String,
    /// OCI architecture of the rendered manifest.
    pub architecture: String,
    /// Total size of the image's blobs in bytes.
    pub size: u64,
    /// When it was fetched, seconds since the Unix epoch.
    pub fetched_unix: u64,
    /// Fingerprint of the key whose signature was verified; `None` when fetched insecurely.
    pub signed_by: Option<String>,
    /// Every blob the image references.
    pub blobs: Vec<String>,
    /// How to run it.
    pub config: RuntimeConfig,
}

/// What `gc` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Unreferenced blobs deleted.
    pub blobs_removed: usize,
    /// Unreferenced rendered root filesystems deleted.
    pub rootfs_removed: usize,
    /// Rendered root filesystems of removed images kept because containers still run on them.
    pub rootfs_in_use: usize,
    /// Abandoned staging directories of dead fetches deleted.
    pub staging_removed: usize,
    /// Bytes freed in total.
    pub bytes_freed: u64,
}

/// The image store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    blobs: BlobStore,
}

impl Store {
    /// Opens (creating if needed) the store in the sinew-run state directory `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for sub in ["rootfs", "images", "tmp"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|source| StoreError::Io { path, source })?;
        }
        Ok(Store {
            dir: dir.to_owned(),
            blobs: BlobStore::open(dir.join("blobs/sha256"))?,
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Looks an image up by exact name, or by manifest digest (with or without `sha256:`,
    /// any unambiguous prefix). Reads only the small record file; no hashing.
    pub fn resolve(&self, reference: &str) -> Result<Rendered, StoreError> {
        let record = self.find(reference)?;
        Ok(self.rendered(record))
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.dir.join("images");
        let io_err = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            if path.extension().is_some_and(|e| e == "json") {
                records.push(read_record(&path)?);
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Forgets the image with this name, or every image whose manifest digest matches;
    /// `gc` frees the space. Returns the removed records.
    pub fn remove(&self, reference: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let _lock = self.lock(true)?;
        let removed = match self.find(reference) {
            Ok(record) => vec![record],
            Err(StoreError::Ambiguous { .. }) | Err(StoreError::NotFound(_)) => {
                let matching = self.matching_digest(reference)?;
                if matching.is_empty() {
                    return Err(StoreError::NotFound(reference.to_owned()));
                }
                matching
            }
            Err(e) => return Err(e),
        };
        for record in &removed {
            let path = self.record_path(&record.name);
            fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })?;
        }
        Ok(removed)
    }

    /// Deletes blobs and rendered root filesystems no image references, and staging
    /// directories left by fetches that died. Rendered root filesystems of the manifests in
    /// `in_use` (those running containers sit on) are kept even when no image names them.
    pub fn gc(&self, in_use: &[Digest]) -> Result<GcReport, StoreError> {
        let _lock = self.lock(true)?;
        let records = self.list()?;
        let mut report = GcReport::default();
        for (digest, size) in self.blobs.list()? {
            if !records
                .iter()
                .any(|r| r.blobs.contains(&digest.to_string()))
            {
                self.blobs.remove(&digest)?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for (path, name) in self.entries("rootfs")? {
            let referenced = records
                .iter()
                .any(|r| r.manifest_digest.strip_prefix("sha256:") == Some(&name));
            if !referenced && in_use.iter().any(|digest| digest.hex() == name) {
                report.rootfs_in_use += 1;
            } else if !referenced {
                report.bytes_freed += remove_tree(&path)?;
                report.rootfs_removed += 1;
            }
        }
        for (path, name) in self.entries("tmp")? {
            if staging_owner_is_dead(&name) {
                report.bytes_freed += remove_tree(&path)?;
                report.staging_removed += 1;
            }
        }
        Ok(report)
    }

    /// Where the rendered root filesystem of a manifest lives (`rootfs/<hex>/rootfs`, with the
    /// image configuration next to it as `config.json`).
    pub fn rootfs_dir(&self, manifest: &Digest) -> PathBuf {
        self.dir.join("rootfs").join(manifest.hex())
    }

    /// A fresh staging directory for one fetch, named after this process so `gc` can tell
    /// abandoned ones.
    pub(super) fn staging(&self) -> Result<tempfile::TempDir, StoreError> {
        let path = self.dir.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("stage-{}-", std::process::id()))
            .tempdir_in(&path)
            .map_err(|source| StoreError::Io { path, source })
    }

    /// Takes the store lock.
    pub(super) fn lock(&self, exclusive: bool) -> Result<StoreLock, StoreError> {
        let path = self.dir.join("lock");
        StoreLock::acquire(&path, exclusive).map_err(|source| StoreError::Io { path, source })
    }

    /// Writes (replacing) the record for `record.name`; the caller holds the exclusive lock.
    pub(super) fn write_record(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let dir = self.dir.join("images");
        let path = self.record_path(&record.name);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(record).map_err(|e| io_err(e.into()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err)?;
        tmp.write_all(&json).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&path).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    fn rendered(&self, record: ImageRecord) -> Rendered {
        let hex = record.manifest_digest.trim_start_matches("sha256:");
        Rendered {
            rootfs: self.dir.join("rootfs").join(hex).join("rootfs"),
            name: record.name,
            manifest_digest: record.manifest_digest,
            config: record.config,
        }
    }

    fn find(&self, reference: &str) -> Result<ImageRecord, StoreError> {
        let by_name = self.record_path(reference);
        if by_name.is_file() {
            return read_record(&by_name);
        }
        let mut matching = self.matching_digest(reference)?;
        match matching.len() {
            0 => Err(StoreError::NotFound(reference.to_owned())),
            1 => Ok(matching.remove(0)),
            _ => Err(StoreError::Ambiguous {
                reference: reference.to_owned(),
                matches: matching.into_iter().map(|r| r.name).collect(),
            }),
        }
    }

    fn matching_digest(&self, reference: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let hex = hex.to_ascii_lowercase();
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| {
                r.manifest_digest
                    .trim_start_matches("sha256:")
                    .starts_with(&hex)
            })
            .collect())
    }

    /// Records are named by the hash of the image name, which may hold `/` and `:`.
    fn record_path(&self, name: &str) -> PathBuf {
        self.dir
            .join("images")
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    fn entries(&self, sub: &str) -> Result<Vec<(PathBuf, String)>, StoreError> {
        let dir = self.dir.join(sub);
        let io_err = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            out.push((
                entry.path(),
                entry.file_name().to_string_lossy().into_owned(),
            ));
        }
        Ok(out)
    }
}

fn read_record(path: &Path) -> Result<ImageRecord, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptRecord {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// True for `stage-<pid>-…` directories whose process no longer exists.
fn staging_owner_is_dead(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix("stage-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<i32>().ok())
    else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

/// Removes a file or directory tree; returns the bytes its files held.
fn remove_tree(path: &Path) -> Result<u64, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let size = tree_size(path).map_err(io_err)?;
    let meta = fs::symlink_metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(io_err)?;
    } else {
        fs::remove_file(path).map_err(io_err)?;
    }
    Ok(size)
}

fn tree_size(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        total += tree_size(&entry?.path())?;
    }
    Ok(total)
}
