//! Whole-store snapshots for Raft: current and compacted revisions, every kept version of
//! every key, and the leases, as versioned JSON.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::v3::history::History;
use crate::v3::lease::Lease;
use crate::v3::store::Store;

/// The snapshot format this crate writes and reads.
const FORMAT: u32 = 1;

/// Why a snapshot could not be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Serialising the store failed.
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not a snapshot.
    #[error("cannot decode the snapshot: {0}")]
    Decode(#[source] serde_json::Error),
    /// The snapshot was written in a format this version does not read.
    #[error("snapshot format {0} is not supported (expected {FORMAT})")]
    UnsupportedFormat(u32),
    /// The snapshot decodes but describes an impossible store.
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(&'static str),
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    format: u32,
    revision: i64,
    compacted: i64,
    next_lease_id: i64,
    keys: Vec<KeyOut<'a>>,
    leases: Vec<Lease>,
}

#[derive(Serialize)]
struct KeyOut<'a> {
    #[serde(with = "crate::base64_bytes")]
    key: &'a [u8],
    history: &'a History,
}

#[derive(Deserialize)]
struct SnapshotIn {
    format: u32,
    revision: i64,
    compacted: i64,
    next_lease_id: i64,
    keys: Vec<KeyIn>,
    leases: Vec<Lease>,
}

#[derive(Deserialize)]
struct KeyIn {
    #[serde(with = "crate::base64_bytes")]
    key: Vec<u8>,
    history: History,
}

impl Store {
    /// The whole state as bytes; [`Store::restore`] turns them back into an equal store.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let out = SnapshotOut {
            format: FORMAT,
            revision: self.revision,
            compacted: self.compacted,
            next_lease_id: self.next_lease_id,
            keys: self
                .keys
                .iter()
                .map(|(key, history)| KeyOut { key, history })
                .collect(),
            leases: self.leases(),
        };
        serde_json::to_vec(&out).map_err(SnapshotError::Encode)
    }

    /// Rebuilds a store from [`Store::snapshot`]'s bytes, checking that they describe a
    /// possible store.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snapshot: SnapshotIn = serde_json::from_slice(bytes).map_err(SnapshotError::Decode)?;
        if snapshot.format != FORMAT {
            return Err(SnapshotError::UnsupportedFormat(snapshot.format));
        }
        if snapshot.revision < 1 || !(0..=snapshot.revision).contains(&snapshot.compacted) {
            return Err(SnapshotError::Inconsistent("revisions out of range"));
        }
        if snapshot.next_lease_id < 1 {
            return Err(SnapshotError::Inconsistent("lease id counter out of range"));
        }
        let mut store = Self {
            revision: snapshot.revision,
            compacted: snapshot.compacted,
            next_lease_id: snapshot.next_lease_id,
            ..Self::new()
        };
        for entry in snapshot.keys {
            check_history(&entry.key, &entry.history, snapshot.revision)?;
            store.size += entry.history.size(&entry.key);
            if store.keys.insert(entry.key, entry.history).is_some() {
                return Err(SnapshotError::Inconsistent("a key appears twice"));
            }
        }
        for lease in snapshot.leases {
            if lease.id == 0 || store.leases.insert(lease.id, lease).is_some() {
                return Err(SnapshotError::Inconsistent("bad or repeated lease id"));
            }
        }
        Ok(store)
    }
}

/// A key's history must be non-empty, strictly ordered, within the store's revisions, and
/// hold versions of that key.
fn check_history(key: &[u8], history: &History, revision: i64) -> Result<(), SnapshotError> {
    let records = history.records();
    if key.is_empty() || records.is_empty() {
        return Err(SnapshotError::Inconsistent("empty key or history"));
    }
    let ordered = records
        .windows(2)
        .all(|pair| (pair[0].main, pair[0].sub) < (pair[1].main, pair[1].sub));
    let in_range = records
        .iter()
        .all(|record| (1..=revision).contains(&record.main));
    let same_key = records
        .iter()
        .filter_map(|record| record.kv.as_ref())
        .all(|kv| kv.key == key);
    if ordered && in_range && same_key {
        Ok(())
    } else {
        Err(SnapshotError::Inconsistent("malformed key history"))
    }
}
