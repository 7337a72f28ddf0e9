//! The node's last snapshot on disk: its description and the state machine's bytes in one
//! file, replaced atomically.
//!
//! A snapshot is written to a temporary file, synced, renamed over the old one and the
//! directory synced, so after a crash the file holds either the old snapshot or the new one,
//! whole. On restart the state machine starts from it and openraft re-applies the committed
//! log entries after it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::snapshot_data::RestoreError;
use super::SnapshotMeta;

/// Why the snapshot file could not be read or written.
#[derive(Debug, Error)]
pub enum SnapshotFileError {
    /// The file could not be written, synced or renamed into place.
    #[error("cannot write the snapshot {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file exists but could not be read.
    #[error("cannot read the snapshot {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file does not hold a snapshot this version wrote.
    #[error("the snapshot {path} is damaged: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file decodes but its state machine bytes do not.
    #[error("the snapshot {path} holds a state this version cannot restore: {source}")]
    Restore {
        /// The file.
        path: PathBuf,
        /// Why.
        source: RestoreError,
    },
}

/// A snapshot as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's bytes.
    #[serde(with = "crate::base64_bytes")]
    pub data: Vec<u8>,
}

impl SnapshotFile {
    /// The file's name inside the data directory.
    pub const FILE_NAME: &'static str = "snapshot.json";

    /// Reads the snapshot kept in `data_dir`, `None` if there is none yet.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, SnapshotFileError> {
        let path = data_dir.join(Self::FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotFileError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| SnapshotFileError::Decode { path, source })
    }

    /// Replaces the snapshot kept in `data_dir` with this one, durably.
    pub fn save(&self, data_dir: &Path) -> Result<(), SnapshotFileError> {
        let path = data_dir.join(Self::FILE_NAME);
        let temporary = data_dir.join(format!("{}.tmp", Self::FILE_NAME));
        let write = |source| SnapshotFileError::Write {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(self).map_err(|error| write(io::Error::other(error)))?;
        let mut file = File::create(&temporary).map_err(write)?;
        file.write_all(&bytes).map_err(write)?;
        file.sync_all().map_err(write)?;
        fs::rename(&temporary, &path).map_err(write)?;
        File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;
    use crate::raft::StoredMembership;

    fn snapshot(index: u64, data: &[u8]) -> SnapshotFile {
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(log_id(1, 1, index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("1-{index}"),
            },
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_saved_snapshot_replaces_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SnapshotFile::load(dir.path()).unwrap(), None);

        snapshot(5, b"first").save(dir.path()).unwrap();
        snapshot(9, b"second").save(dir.path()).unwrap();

        assert_eq!(
            SnapshotFile::load(dir.path()).unwrap(),
            Some(snapshot(9, b"second"))
        );
        assert!(!dir.path().join("snapshot.json.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SnapshotFile::FILE_NAME), b"{\"meta\":").unwrap();

        let error = SnapshotFile::load(dir.path()).unwrap_err();

        assert!(matches!(error, SnapshotFileError::Decode { .. }));
        assert!(error.to_string().contains("snapshot.json"), "{error}");
    }
}
