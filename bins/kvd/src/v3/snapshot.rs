//! Whole-store snapshots for Raft: current and compacted revisions, every kept version of
//! every key, and the leases, in protobuf. A snapshot holds the whole history, so it is
//! large (about the size of every kept value) and written every `--snapshot-count`
//! entries, so it is protobuf, values as they are, rather than the JSON that kvd wrote
//! before (format 1, values in base64), which [`Store::restore`] still reads.

use prost::Message;
use serde::Deserialize;
use sinew_etcd_api::mvccpb::KeyValue;
use thiserror::Error;

use crate::v3::history::{History, Record};
use crate::v3::lease::Lease;
use crate::v3::store::Store;

/// The snapshot format this crate writes.
const FORMAT: u32 = 2;

/// The format of the JSON snapshots kvd wrote before, which it still reads.
const JSON_FORMAT: u32 = 1;

/// Why a snapshot could not be read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The bytes are neither a protobuf snapshot nor a JSON one.
    #[error("cannot decode the snapshot: {0}")]
    Decode(#[source] prost::DecodeError),
    /// The bytes look like a JSON snapshot but are not one.
    #[error("cannot decode the JSON snapshot: {0}")]
    DecodeJson(#[source] serde_json::Error),
    /// The snapshot was written in a format this version does not read.
    #[error("snapshot format {0} is not supported (expected {FORMAT} or {JSON_FORMAT})")]
    UnsupportedFormat(u32),
    /// The snapshot decodes but describes an impossible store.
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(&'static str),
}

/// The store in a snapshot.
#[derive(Clone, PartialEq, Message)]
struct StoreMessage {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(int64, tag = "2")]
    revision: i64,
    #[prost(int64, tag = "3")]
    compacted: i64,
    #[prost(int64, tag = "4")]
    next_lease_id: i64,
    #[prost(message, repeated, tag = "5")]
    keys: Vec<KeyMessage>,
    #[prost(message, repeated, tag = "6")]
    leases: Vec<LeaseMessage>,
}

/// One key's kept changes, oldest first.
#[derive(Clone, PartialEq, Message)]
struct KeyMessage {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    records: Vec<RecordMessage>,
}

/// One change; no `kv` for a deletion.
#[derive(Clone, PartialEq, Message)]
struct RecordMessage {
    #[prost(int64, tag = "1")]
    main: i64,
    #[prost(int64, tag = "2")]
    sub: i64,
    #[prost(message, optional, tag = "3")]
    kv: Option<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct LeaseMessage {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
}

impl From<Record> for RecordMessage {
    fn from(Record { main, sub, kv }: Record) -> Self {
        Self { main, sub, kv }
    }
}

impl From<RecordMessage> for Record {
    fn from(RecordMessage { main, sub, kv }: RecordMessage) -> Self {
        Self { main, sub, kv }
    }
}

/// A format 1 snapshot.
#[derive(Deserialize)]
struct JsonSnapshot {
    format: u32,
    revision: i64,
    compacted: i64,
    next_lease_id: i64,
    keys: Vec<JsonKey>,
    leases: Vec<Lease>,
}

#[derive(Deserialize)]
struct JsonKey {
    #[serde(with = "crate::base64_bytes")]
    key: Vec<u8>,
    history: History,
}

/// What every snapshot format describes.
struct Parts<K, L> {
    revision: i64,
    compacted: i64,
    next_lease_id: i64,
    keys: K,
    leases: L,
}

impl Store {
    /// The whole state as bytes, taking the store apart to write it without copying it;
    /// [`Store::restore`] turns them back into an equal store.
    pub fn into_snapshot(self) -> Vec<u8> {
        StoreMessage {
            format: FORMAT,
            revision: self.revision,
            compacted: self.compacted,
            next_lease_id: self.next_lease_id,
            leases: self
                .leases
                .values()
                .map(|lease| LeaseMessage {
                    id: lease.id,
                    ttl: lease.ttl,
                })
                .collect(),
            keys: self
                .keys
                .into_iter()
                .map(|(key, history)| KeyMessage {
                    key,
                    records: history
                        .into_records()
                        .into_iter()
                        .map(RecordMessage::from)
                        .collect(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Rebuilds a store from [`Store::into_snapshot`]'s bytes (or a format 1 JSON snapshot),
    /// checking that they describe a possible store.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.first() == Some(&b'{') {
            return Self::restore_json(bytes);
        }
        let snapshot = StoreMessage::decode(bytes).map_err(SnapshotError::Decode)?;
        if snapshot.format != FORMAT {
            return Err(SnapshotError::UnsupportedFormat(snapshot.format));
        }
        Self::assemble(Parts {
            revision: snapshot.revision,
            compacted: snapshot.compacted,
            next_lease_id: snapshot.next_lease_id,
            keys: snapshot.keys.into_iter().map(|key| {
                let records = key.records.into_iter().map(Record::from).collect();
                (key.key, History::from_records(records))
            }),
            leases: snapshot.leases.into_iter().map(|lease| Lease {
                id: lease.id,
                ttl: lease.ttl,
            }),
        })
    }

    fn restore_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snapshot: JsonSnapshot =
            serde_json::from_slice(bytes).map_err(SnapshotError::DecodeJson)?;
        if snapshot.format != JSON_FORMAT {
            return Err(SnapshotError::UnsupportedFormat(snapshot.format));
        }
        Self::assemble(Parts {
            revision: snapshot.revision,
            compacted: snapshot.compacted,
            next_lease_id: snapshot.next_lease_id,
            keys: snapshot.keys.into_iter().map(|key| (key.key, key.history)),
            leases: snapshot.leases.into_iter(),
        })
    }

    /// The store a snapshot describes, if it is possible.
    fn assemble<K, L>(parts: Parts<K, L>) -> Result<Self, SnapshotError>
    where
        K: Iterator<Item = (Vec<u8>, History)>,
        L: Iterator<Item = Lease>,
    {
        if parts.revision < 1 || !(0..=parts.revision).contains(&parts.compacted) {
            return Err(SnapshotError::Inconsistent("revisions out of range"));
        }
        if parts.next_lease_id < 1 {
            return Err(SnapshotError::Inconsistent("lease id counter out of range"));
        }
        let mut store = Self {
            revision: parts.revision,
            compacted: parts.compacted,
            next_lease_id: parts.next_lease_id,
            ..Self::new()
        };
        for (key, history) in parts.keys {
            check_history(&key, &history, parts.revision)?;
            store.size += history.size(&key);
            if store.keys.insert(key, history).is_some() {
                return Err(SnapshotError::Inconsistent("a key appears twice"));
            }
        }
        for lease in parts.leases {
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
