//! A snapshot's data, the state machine's bytes: the v3 and the v2 store's own snapshots,
//! side by side, as JSON.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::v2;
use crate::v3::{self, Store};

/// Why a snapshot's state could not be restored.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The snapshot is not the two stores' snapshots.
    #[error("the snapshot does not hold kvd's two stores: {0}")]
    Decode(#[source] serde_json::Error),
    /// The v3 store's part is unusable.
    #[error("v3 store: {0}")]
    V3(#[from] v3::SnapshotError),
    /// The v2 store's part is unusable.
    #[error("v2 store: {0}")]
    V2(#[from] v2::SnapshotError),
}

/// A snapshot's state: each store's own snapshot.
#[derive(Serialize, Deserialize)]
struct Stores {
    #[serde(with = "crate::base64_bytes")]
    v3: Vec<u8>,
    #[serde(with = "crate::base64_bytes")]
    v2: Vec<u8>,
}

/// Both stores as one snapshot's data.
pub fn encode(store: &Store, v2: &v2::Store) -> Result<Vec<u8>, std::io::Error> {
    let stores = Stores {
        v3: store.snapshot().map_err(std::io::Error::other)?,
        v2: v2.snapshot().map_err(std::io::Error::other)?,
    };
    serde_json::to_vec(&stores).map_err(std::io::Error::other)
}

/// The stores a snapshot's data holds.
pub fn restore(bytes: &[u8]) -> Result<(Store, v2::Store), RestoreError> {
    let stores: Stores = serde_json::from_slice(bytes).map_err(RestoreError::Decode)?;
    Ok((Store::restore(&stores.v3)?, v2::Store::restore(&stores.v2)?))
}
