//! A snapshot's data, the state machine's bytes: the v3 and the v2 store's own snapshots,
//! side by side, and the alarms raised, in protobuf. Snapshots kvd wrote before as JSON
//! (the stores' bytes in base64) are still read.

use prost::Message;
use serde::Deserialize;
use sinew_etcd_api::etcdserverpb::AlarmMember;
use thiserror::Error;

use crate::alarm::{Alarm, Alarms};
use crate::v2;
use crate::v3::{self, Store};

/// Why a snapshot's state could not be restored.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The snapshot is not the two stores' snapshots.
    #[error("the snapshot does not hold kvd's two stores: {0}")]
    Decode(#[source] prost::DecodeError),
    /// The snapshot looks like JSON but is not the two stores' snapshots.
    #[error("the JSON snapshot does not hold kvd's two stores: {0}")]
    DecodeJson(#[source] serde_json::Error),
    /// The v3 store's part is unusable.
    #[error("v3 store: {0}")]
    V3(#[from] v3::SnapshotError),
    /// The v2 store's part is unusable.
    #[error("v2 store: {0}")]
    V2(#[from] v2::SnapshotError),
}

/// A snapshot's state: each store's own snapshot, and the alarms.
#[derive(Clone, PartialEq, Message)]
struct Stores {
    #[prost(bytes = "vec", tag = "1")]
    v3: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    v2: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    alarms: Vec<AlarmMember>,
}

/// [`Stores`] as kvd wrote it before, in JSON; alarms are absent from snapshots written
/// before kvd kept alarms.
#[derive(Deserialize)]
struct JsonStores {
    #[serde(with = "crate::base64_bytes")]
    v3: Vec<u8>,
    #[serde(with = "crate::base64_bytes")]
    v2: Vec<u8>,
    #[serde(default)]
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

/// Both stores and the alarms as one snapshot's data; the v3 store, the large one, is taken
/// apart to write it.
pub fn encode(store: Store, v2: &v2::Store, alarms: &Alarms) -> Result<Vec<u8>, std::io::Error> {
    let stores = Stores {
        v3: store.into_snapshot(),
        v2: v2.snapshot().map_err(std::io::Error::other)?,
        alarms: alarms.list().into_iter().map(AlarmMember::from).collect(),
    };
    Ok(stores.encode_to_vec())
}

/// What a snapshot's data holds.
pub fn restore(bytes: &[u8]) -> Result<State, RestoreError> {
    let (v3, v2, alarms) = if bytes.first() == Some(&b'{') {
        let stores: JsonStores = serde_json::from_slice(bytes).map_err(RestoreError::DecodeJson)?;
        (stores.v3, stores.v2, stores.alarms)
    } else {
        let stores = Stores::decode(bytes).map_err(RestoreError::Decode)?;
        let alarms = stores.alarms.iter().map(Alarm::from).collect();
        (stores.v3, stores.v2, alarms)
    };
    Ok(State {
        store: Store::restore(&v3)?,
        v2: v2::Store::restore(&v2)?,
        alarms: Alarms::from_list(alarms),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use sinew_etcd_api::mvccpb::KeyValue;

    use super::*;
    use crate::alarm::AlarmKind;

    #[test]
    fn alarms_survive_a_snapshot() {
        let alarms = Alarms::from_list([Alarm {
            member: 9,
            kind: AlarmKind::Nospace,
        }]);
        let bytes = encode(Store::new(), &v2::Store::default(), &alarms).unwrap();
        assert_eq!(restore(&bytes).unwrap().alarms, alarms);
    }

    #[test]
    fn json_snapshots_that_kvd_wrote_before_are_read() {
        // Format 1: the v3 store in JSON, both stores in base64 in JSON, no alarms.
        let kv = KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"1".to_vec(),
            lease: 0,
        };
        let v3 = serde_json::json!({
            "format": 1, "revision": 2, "compacted": 0, "next_lease_id": 1,
            "keys": [{"key": "YQ==", "history": [{"main": 2, "sub": 0, "kv": kv}]}],
            "leases": [],
        });
        let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let stores = serde_json::json!({
            "v3": base64(&serde_json::to_vec(&v3).unwrap()),
            "v2": base64(&v2::Store::default().snapshot().unwrap()),
        });

        let state = restore(&serde_json::to_vec(&stores).unwrap()).unwrap();

        assert_eq!(state.store.revision(), 2);
        let mut again = Store::new();
        again
            .apply(&v3::Command::Put(v3::PutRequest {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                ..v3::PutRequest::default()
            }))
            .unwrap();
        assert_eq!(state.store, again);
        assert_eq!(state.alarms, Alarms::default());
    }
}
