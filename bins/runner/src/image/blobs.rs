//! The content-addressed blob store, `blobs/sha256/<hex>`. Blobs enter only by rename of a
//! file whose digest was checked while it was written, and are checked again when read.

use std::fs::{self, File};
use std::io::{self, Seek};
use std::path::{Path, PathBuf};

use super::digest::{copy_hashing, Digest};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A stored blob's content no longer matches its name: the store was tampered with or is
    /// damaged.
    #[error("stored blob {expected} is corrupt: its content hashes to {actual}")]
    Corrupt {
        /// The blob's name.
        expected: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// A blob file could not be read, written or listed.
    #[error("blob store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// The blob directory of a store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The blob store at `dir` (the `blobs/sha256` directory), created if missing.
    pub fn open(dir: PathBuf) -> Result<BlobStore, BlobError> {
        fs::create_dir_all(&dir).map_err(|source| BlobError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(BlobStore { dir })
    }

    /// Where a blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// True when the blob is present (content not checked).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Copies a stored blob into `writer` after checking its digest; returns its size.
    pub fn copy_verified(&self, digest: &Digest, writer: &mut File) -> Result<u64, BlobError> {
        let path = self.path(digest);
        let io_err = |source| BlobError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io_err)?;
        let (actual, size) = copy_hashing(&mut file, writer).map_err(io_err)?;
        if actual != *digest {
            return Err(BlobError::Corrupt {
                expected: digest.clone(),
                actual,
            });
        }
        writer.rewind().map_err(io_err)?;
        Ok(size)
    }

    /// Moves a staged file, whose digest the caller checked while writing it, into the store.
    /// A blob already present is kept and the staged copy dropped.
    pub fn adopt(&self, digest: &Digest, staged: &Path) -> Result<(), BlobError> {
        let path = self.path(digest);
        if path.is_file() {
            return Ok(());
        }
        fs::rename(staged, &path).map_err(|source| BlobError::Io { path, source })
    }

    /// Every stored blob with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, BlobError> {
        let io_err = |source| BlobError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut blobs = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            if let Ok(digest) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) {
                blobs.push((digest, entry.metadata().map_err(io_err)?.len()));
            }
        }
        blobs.sort();
        Ok(blobs)
    }

    /// Deletes a blob.
    pub fn remove(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        fs::remove_file(&path).map_err(|source| BlobError::Io { path, source })
    }
}
