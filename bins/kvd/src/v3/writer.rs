//! One write transaction: the changes of one command, all under the next main revision.

use sinew_etcd_api::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader,
};
use sinew_etcd_api::mvccpb::event::EventType;
use sinew_etcd_api::mvccpb::{Event, KeyValue};

use crate::v3::error::KvError;
use crate::v3::history::Record;
use crate::v3::key_range::KeyRange;
use crate::v3::response::revision_header;
use crate::v3::store::Store;

/// Applies changes to a store under revision `store.revision + 1`; reads through it see
/// those changes. The store's revision advances in [`Writer::finish`], and only if something
/// changed. Callers check every request first: nothing here can fail.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    store: &'a mut Store,
    main: i64,
    changes: i64,
    events: Vec<Event>,
}

impl<'a> Writer<'a> {
    /// Starts a write transaction.
    pub(crate) fn new(store: &'a mut Store) -> Self {
        let main = store.revision + 1;
        Self {
            store,
            main,
            changes: 0,
            events: Vec::new(),
        }
    }

    /// The revision a read sees now: the new one once something changed.
    pub(crate) fn revision(&self) -> i64 {
        if self.changes > 0 {
            self.main
        } else {
            self.main - 1
        }
    }

    /// Reads, seeing this transaction's changes unless the request names an earlier revision
    /// (which the caller has checked).
    pub(crate) fn range(&self, request: &RangeRequest) -> RangeResponse {
        let at = if request.revision > 0 {
            request.revision
        } else {
            self.revision()
        };
        let mut response = self.store.read_range(request, at);
        response.header = self.header();
        response
    }

    /// Sets a key; the caller has run [`check_put`].
    pub(crate) fn put(&mut self, request: &PutRequest) -> PutResponse {
        let prev = self.store.current(&request.key).cloned();
        let (create_revision, version, value, lease) = match &prev {
            Some(prev) => (
                prev.create_revision,
                prev.version + 1,
                if request.ignore_value {
                    prev.value.clone()
                } else {
                    request.value.clone()
                },
                if request.ignore_lease {
                    prev.lease
                } else {
                    request.lease
                },
            ),
            None => (self.main, 1, request.value.clone(), request.lease),
        };
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision,
            mod_revision: self.main,
            version,
            value,
            lease,
        };
        let prev_kv = prev.clone().filter(|_| request.prev_kv);
        self.record(EventType::Put, kv, prev);
        PutResponse {
            header: self.header(),
            prev_kv,
        }
    }

    /// Deletes every live key in the request's range.
    pub(crate) fn delete_range(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> = KeyRange::new(&request.key, &request.range_end)
            .select(&self.store.keys)
            .filter_map(|(_, history)| history.latest().cloned())
            .collect();
        for kv in &doomed {
            let tombstone = KeyValue {
                key: kv.key.clone(),
                mod_revision: self.main,
                ..KeyValue::default()
            };
            self.record(EventType::Delete, tombstone, Some(kv.clone()));
        }
        DeleteRangeResponse {
            header: self.header(),
            deleted: count(doomed.len()),
            prev_kvs: if request.prev_kv { doomed } else { Vec::new() },
        }
    }

    /// Ends the transaction and returns the store's revision and the changes, in order.
    pub(crate) fn finish(self) -> (i64, Vec<Event>) {
        if self.changes > 0 {
            self.store.revision = self.main;
        }
        (self.store.revision, self.events)
    }

    fn header(&self) -> Option<ResponseHeader> {
        revision_header(self.revision())
    }

    /// Adds a change to the key's history (a deletion as a tombstone) and to the events.
    fn record(&mut self, kind: EventType, kv: KeyValue, prev_kv: Option<KeyValue>) {
        let record = Record {
            main: self.main,
            sub: self.changes,
            kv: (kind == EventType::Put).then(|| kv.clone()),
        };
        self.changes += 1;
        self.store.size += record.size(&kv.key);
        self.store
            .keys
            .entry(kv.key.clone())
            .or_default()
            .push(record);
        self.events.push(Event {
            r#type: kind.into(),
            kv: Some(kv),
            prev_kv,
        });
    }
}

/// What a put needs from the store: its lease must exist, and with `ignore_value` or
/// `ignore_lease` its key too.
pub(crate) fn check_put(store: &Store, request: &PutRequest) -> Result<(), KvError> {
    if request.lease != 0 && !store.leases.contains_key(&request.lease) {
        return Err(KvError::LeaseNotFound);
    }
    if (request.ignore_value || request.ignore_lease) && store.current(&request.key).is_none() {
        return Err(KvError::KeyNotFound);
    }
    Ok(())
}

/// A length as etcd's `int64` counts.
pub(crate) fn count(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}
