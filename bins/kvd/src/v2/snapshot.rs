//! Whole-store snapshots of the v2 store for Raft: index, nodes, event history and
//! counters, as versioned JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::v2::history::{History, HISTORY_CAPACITY};
use crate::v2::path::{ancestors, clean, depth, MAX_DEPTH};
use crate::v2::stats::Stats;
use crate::v2::store::{Entry, Store};

/// The snapshot format this crate writes and reads.
const FORMAT: u32 = 1;

/// Why a v2 snapshot could not be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Serialising the store failed.
    #[error("cannot encode the v2 snapshot: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not a v2 snapshot.
    #[error("cannot decode the v2 snapshot: {0}")]
    Decode(#[source] serde_json::Error),
    /// The snapshot was written in a format this version does not read.
    #[error("v2 snapshot format {0} is not supported (expected {FORMAT})")]
    UnsupportedFormat(u32),
    /// The snapshot decodes but describes an impossible store.
    #[error("inconsistent v2 snapshot: {0}")]
    Inconsistent(&'static str),
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    index: u64,
    nodes: BTreeMap<String, Entry>,
    history: History,
    stats: Stats,
}

impl Store {
    /// The whole state as bytes; [`Store::restore`] turns them back into an equal store.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let snapshot = Snapshot {
            format: FORMAT,
            index: self.index,
            nodes: self.nodes.clone(),
            history: self.history.clone(),
            stats: self.stats,
        };
        serde_json::to_vec(&snapshot).map_err(SnapshotError::Encode)
    }

    /// Rebuilds a store from [`Store::snapshot`]'s bytes, checking that they describe a
    /// possible store.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(SnapshotError::Decode)?;
        if snapshot.format != FORMAT {
            return Err(SnapshotError::UnsupportedFormat(snapshot.format));
        }
        check_nodes(&snapshot.nodes, snapshot.index)?;
        check_history(&snapshot.history, snapshot.index)?;
        Ok(Self {
            index: snapshot.index,
            nodes: snapshot.nodes,
            history: snapshot.history,
            stats: snapshot.stats,
        })
    }
}

/// Every path must be clean, below the root and not too deep, under directories that
/// exist, with indexes the store has reached.
fn check_nodes(nodes: &BTreeMap<String, Entry>, index: u64) -> Result<(), SnapshotError> {
    for (path, entry) in nodes {
        if path == "/" || clean(path) != *path || depth(path) > MAX_DEPTH {
            return Err(SnapshotError::Inconsistent(
                "a node path is not a clean key",
            ));
        }
        let parents_are_dirs = ancestors(path).all(|ancestor| {
            nodes
                .get(ancestor)
                .is_some_and(|parent| parent.value.is_none())
        });
        if !parents_are_dirs {
            return Err(SnapshotError::Inconsistent(
                "a node's parent is not a directory",
            ));
        }
        let created = entry.created_index;
        if created == 0 || created > entry.modified_index || entry.modified_index > index {
            return Err(SnapshotError::Inconsistent("node indexes out of range"));
        }
    }
    Ok(())
}

/// The history must fit its capacity and be in index order within the store's index.
fn check_history(history: &History, index: u64) -> Result<(), SnapshotError> {
    let indexes: Vec<u64> = history.events().map(|event| event.index()).collect();
    let ordered = indexes.windows(2).all(|pair| pair[0] < pair[1]);
    let in_range = indexes.iter().all(|&at| (1..=index).contains(&at));
    if indexes.len() > HISTORY_CAPACITY || !ordered || !in_range {
        return Err(SnapshotError::Inconsistent("malformed event history"));
    }
    Ok(())
}
