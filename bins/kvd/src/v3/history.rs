//! The versions of one key: every change still kept, oldest first.

use serde::{Deserialize, Serialize};

use sinew_etcd_api::mvccpb::event::EventType;
use sinew_etcd_api::mvccpb::{Event, KeyValue};

/// One change to a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The revision of the write that made the change.
    pub(crate) main: i64,
    /// The change's position among that revision's changes.
    pub(crate) sub: i64,
    /// The key-value pair it left, or `None` for a deletion (a tombstone).
    pub(crate) kv: Option<KeyValue>,
}

/// What each kept change counts toward [`crate::v3::Store::size`] besides its key and value:
/// about what a version costs etcd's backend beyond its bytes (revision key, metadata).
pub(crate) const VERSION_OVERHEAD: u64 = 64;

impl Record {
    /// What this change of `key` counts toward [`crate::v3::Store::size`].
    pub(crate) fn size(&self, key: &[u8]) -> u64 {
        let value = self.kv.as_ref().map_or(0, |kv| kv.value.len());
        u64::try_from(key.len() + value).unwrap_or(u64::MAX) + VERSION_OVERHEAD
    }
}

/// The kept changes of one key, ordered by `(main, sub)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct History {
    records: Vec<Record>,
}

impl History {
    /// The key as it was at `revision`, if it existed then.
    pub(crate) fn at(&self, revision: i64) -> Option<&KeyValue> {
        let newer = self
            .records
            .partition_point(|record| record.main <= revision);
        newer
            .checked_sub(1)
            .and_then(|index| self.records[index].kv.as_ref())
    }

    /// The key as it is now, if it exists.
    pub(crate) fn latest(&self) -> Option<&KeyValue> {
        self.records.last().and_then(|record| record.kv.as_ref())
    }

    /// Appends a change; `(main, sub)` must be greater than every kept one.
    pub(crate) fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Whether any change is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The kept changes.
    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// The kept changes, given up.
    pub(crate) fn into_records(self) -> Vec<Record> {
        self.records
    }

    /// A history of `records`, which must be ordered by `(main, sub)`.
    pub(crate) fn from_records(records: Vec<Record>) -> Self {
        Self { records }
    }

    /// What the kept changes of `key` count toward [`crate::v3::Store::size`].
    pub(crate) fn size(&self, key: &[u8]) -> u64 {
        self.records.iter().map(|record| record.size(key)).sum()
    }

    /// Drops what reads and watches at or after `revision` no longer need: of the changes up
    /// to `revision`, only the changes made in `revision` itself, or else the last one if it
    /// left the key alive, remain. A deletion made in `revision` is kept so a watch from
    /// `revision` still sees it. Returns what the dropped changes of `key` counted toward
    /// [`crate::v3::Store::size`].
    pub(crate) fn compact(&mut self, revision: i64, key: &[u8]) -> u64 {
        let newer = self
            .records
            .partition_point(|record| record.main <= revision);
        let Some(last) = newer.checked_sub(1) else {
            return 0;
        };
        let keep_from = if self.records[last].main == revision {
            self.records
                .partition_point(|record| record.main < revision)
        } else if self.records[last].kv.is_some() {
            last
        } else {
            newer
        };
        self.records
            .drain(..keep_from)
            .map(|record| record.size(key))
            .sum()
    }

    /// The events of changes made at or after `start`, each with its `(main, sub)` revision,
    /// oldest first.
    pub(crate) fn events_since<'a>(
        &'a self,
        key: &'a [u8],
        start: i64,
    ) -> impl Iterator<Item = ((i64, i64), Event)> + 'a {
        let first = self.records.partition_point(|record| record.main < start);
        (first..self.records.len()).map(move |index| {
            let record = &self.records[index];
            let prev_kv = index
                .checked_sub(1)
                .and_then(|before| self.records[before].kv.clone());
            let (kind, kv) = match &record.kv {
                Some(kv) => (EventType::Put, kv.clone()),
                None => (
                    EventType::Delete,
                    KeyValue {
                        key: key.to_vec(),
                        mod_revision: record.main,
                        ..KeyValue::default()
                    },
                ),
            };
            let event = Event {
                r#type: kind.into(),
                kv: Some(kv),
                prev_kv,
            };
            ((record.main, record.sub), event)
        })
    }
}
