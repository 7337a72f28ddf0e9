//! The node's last snapshot on disk: its description and the state machine's bytes in one
//! file, replaced atomically. The description is a line of JSON that also says how many
//! bytes follow; the bytes follow as they are (kvd kept the whole snapshot as JSON before,
//! the bytes in base64, in `snapshot.json`, which it still reads).
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
    #[error("the snapshot {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
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

/// The file's first line.
#[derive(Serialize, Deserialize)]
struct Description {
    meta: SnapshotMeta,
    /// How many bytes of state follow the line.
    bytes: usize,
}

impl SnapshotFile {
    /// The file's name inside the data directory.
    pub const FILE_NAME: &'static str = "snapshot";

    /// Where kvd kept its snapshot before, all of it as JSON; read when there is no
    /// [`Self::FILE_NAME`], removed once a snapshot is saved.
    const JSON_FILE_NAME: &'static str = "snapshot.json";

    /// Reads the snapshot kept in `data_dir`, `None` if there is none yet.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, SnapshotFileError> {
        let path = data_dir.join(Self::FILE_NAME);
        if let Some(bytes) = read(&path)? {
            return Self::decode(bytes)
                .map(Some)
                .map_err(|reason| SnapshotFileError::Damaged { path, reason });
        }
        let path = data_dir.join(Self::JSON_FILE_NAME);
        let Some(bytes) = read(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| SnapshotFileError::Damaged {
                path,
                reason: error.to_string(),
            })
    }

    fn decode(mut bytes: Vec<u8>) -> Result<Self, String> {
        let line = bytes
            .iter()
            .position(|&byte| byte == b'\n')
            .ok_or("no description line")?;
        let description: Description = serde_json::from_slice(&bytes[..line])
            .map_err(|error| format!("description: {error}"))?;
        bytes.drain(..=line);
        if bytes.len() != description.bytes {
            return Err(format!(
                "{} bytes of state where the description says {}",
                bytes.len(),
                description.bytes
            ));
        }
        Ok(Self {
            meta: description.meta,
            data: bytes,
        })
    }

    /// Replaces the snapshot kept in `data_dir` with this one, durably.
    pub fn save(&self, data_dir: &Path) -> Result<(), SnapshotFileError> {
        let path = data_dir.join(Self::FILE_NAME);
        let temporary = data_dir.join(format!("{}.tmp", Self::FILE_NAME));
        let write = |source| SnapshotFileError::Write {
            path: path.clone(),
            source,
        };
        let description = Description {
            meta: self.meta.clone(),
            bytes: self.data.len(),
        };
        let mut line =
            serde_json::to_vec(&description).map_err(|error| write(io::Error::other(error)))?;
        line.push(b'\n');
        let mut file = File::create(&temporary).map_err(write)?;
        file.write_all(&line).map_err(write)?;
        file.write_all(&self.data).map_err(write)?;
        file.sync_all().map_err(write)?;
        fs::rename(&temporary, &path).map_err(write)?;
        match fs::remove_file(data_dir.join(Self::JSON_FILE_NAME)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(write(error)),
            _ => {}
        }
        File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write)
    }
}

/// The file's bytes, `None` if it does not exist.
fn read(path: &Path) -> Result<Option<Vec<u8>>, SnapshotFileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
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
        assert!(!dir.path().join("snapshot.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        snapshot(5, b"state").save(dir.path()).unwrap();
        let path = dir.path().join(SnapshotFile::FILE_NAME);
        let whole = fs::read(&path).unwrap();

        for damaged in [&whole[..whole.len() - 1], &whole[..10], b"{\"meta\":"] {
            fs::write(&path, damaged).unwrap();
            let error = SnapshotFile::load(dir.path()).unwrap_err();
            assert!(matches!(error, SnapshotFileError::Damaged { .. }));
            assert!(
                error.to_string().contains(&path.display().to_string()),
                "{error}"
            );
        }
    }

    #[test]
    fn a_json_snapshot_that_kvd_kept_before_is_read_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let old = snapshot(5, b"old state");
        let json = serde_json::to_vec(&old).unwrap();
        assert!(json.starts_with(b"{\"meta\":"), "{json:?}");
        fs::write(dir.path().join("snapshot.json"), json).unwrap();

        assert_eq!(SnapshotFile::load(dir.path()).unwrap(), Some(old));

        snapshot(9, b"new state").save(dir.path()).unwrap();
        assert!(!dir.path().join("snapshot.json").exists());
        assert_eq!(
            SnapshotFile::load(dir.path()).unwrap(),
            Some(snapshot(9, b"new state"))
        );
    }
}
