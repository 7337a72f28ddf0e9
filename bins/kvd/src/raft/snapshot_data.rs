//! A snapshot's data, the state machine's bytes: the v3 and the v2 store's own snapshots,
//! side by side, and the alarms raised, as JSON.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::alarm::{Alarm, Alarms};
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

/// A snapshot's state: each store's own snapshot, and the alarms (absent from snapshots
/// written before kvd kept alarms).
#[derive(Serialize, Deserialize)]
struct Stores {
    #[serde(with = "crate::base64_bytes")]
    v3: Vec<u8>,
    #[serde(with = "crate::base64_bytes")]
    v2: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    alarms: Vec<Alarm>,
}

/// What a snapshot holds.
#[derive(Debug)]
pub struct State {
    /// The v3 store.
    pub store: Store,
    /// The v2 store.
    pub v2: v2::Store,
    /// The alarms raised.
    pub alarms: Alarms,
}

/// Both stores and the alarms as one snapshot's data.
pub fn encode(store: &Store, v2: &v2::Store, alarms: &Alarms) -> Result<Vec<u8>, std::io::Error> {
    let stores = Stores {
        v3: store.snapshot().map_err(std::io::Error::other)?,
        v2: v2.snapshot().map_err(std::io::Error::other)?,
        alarms: alarms.list(),
    };
    serde_json::to_vec(&stores).map_err(std::io::Error::other)
}

/// What a snapshot's data holds.
pub fn restore(bytes: &[u8]) -> Result<State, RestoreError> {
    let stores: Stores = serde_json::from_slice(bytes).map_err(RestoreError::Decode)?;
    Ok(State {
        store: Store::restore(&stores.v3)?,
        v2: v2::Store::restore(&stores.v2)?,
        alarms: Alarms::from_list(stores.alarms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::AlarmKind;

    #[test]
    fn alarms_survive_a_snapshot_and_older_snapshots_have_none() {
        let alarms = Alarms::from_list([Alarm {
            member: 9,
            kind: AlarmKind::Nospace,
        }]);
        let bytes = encode(&Store::new(), &v2::Store::default(), &alarms).unwrap();
        assert_eq!(restore(&bytes).unwrap().alarms, alarms);

        // Without alarms a snapshot is what kvd wrote before it kept alarms.
        let older = encode(&Store::new(), &v2::Store::default(), &Alarms::default()).unwrap();
        let stores: serde_json::Value = serde_json::from_slice(&older).unwrap();
        assert_eq!(stores.as_object().unwrap().len(), 2, "{stores}");
        let restored = restore(&older).unwrap();
        assert_eq!(restored.alarms, Alarms::default());
    }
}
