//! The store: every key's history, the current and compacted revisions, and the leases.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use sinew_etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use sinew_etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, RangeRequest, RangeResponse,
    ResponseHeader,
};
use sinew_etcd_api::mvccpb::{Event, KeyValue};

use crate::v3::command::{validate_range, Command};
use crate::v3::error::KvError;
use crate::v3::history::History;
use crate::v3::key_range::KeyRange;
use crate::v3::lease::{Lease, LeaseInfo};
use crate::v3::response::{revision_header, Applied, KvHash, Response};
use crate::v3::txn;
use crate::v3::writer::{check_put, count, Writer};

/// etcd's multi-version key-value state machine, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The revision of the last change; 1 for a new store.
    pub(crate) revision: i64,
    /// Reads below this revision fail; 0 before the first compaction.
    pub(crate) compacted: i64,
    /// Every key with kept history, live or deleted.
    pub(crate) keys: BTreeMap<Vec<u8>, History>,
    /// Granted leases by id.
    pub(crate) leases: BTreeMap<i64, Lease>,
    /// Where the search for a free id starts when a grant asks for id 0.
    pub(crate) next_lease_id: i64,
    /// What the kept history counts toward [`Store::size`], kept up to date by every write
    /// and compaction.
    pub(crate) size: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store at revision 1, as a new etcd cluster starts.
    pub fn new() -> Self {
        Self {
            revision: 1,
            compacted: 0,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_lease_id: 1,
            size: 0,
        }
    }

    /// kvd's measure of its backend's size, which `--quota-backend-bytes` limits: every kept
    /// version's key and value, plus 64 bytes each. Compaction lowers it at once.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision of the last compaction, or 0.
    pub fn compacted_revision(&self) -> i64 {
        self.compacted
    }

    /// Applies one committed command. Deterministic: the same commands in the same order
    /// give every replica the same state and answers. A refused command changes nothing.
    pub fn apply(&mut self, command: &Command) -> Result<Response, KvError> {
        self.apply_with_events(command)
            .map(|applied| applied.response)
    }

    /// As [`Store::apply`], also returning the changes the command made, so a watch hub can
    /// hand them to watchers without reading history again.
    pub fn apply_with_events(&mut self, command: &Command) -> Result<Applied, KvError> {
        command.validate()?;
        let (response, events) = match command {
            Command::Put(put) => {
                check_put(self, put)?;
                let mut writer = Writer::new(self);
                let mut response = writer.put(put);
                let (revision, events) = writer.finish();
                response.header = revision_header(revision);
                (Response::Put(response), events)
            }
            Command::DeleteRange(delete) => {
                let mut writer = Writer::new(self);
                let mut response = writer.delete_range(delete);
                let (revision, events) = writer.finish();
                response.header = revision_header(revision);
                (Response::DeleteRange(response), events)
            }
            Command::Txn(request) => {
                let (response, events) = txn::apply(self, request)?;
                (Response::Txn(response), events)
            }
            Command::Compact(compact) => (Response::Compact(self.compact(compact)?), Vec::new()),
            Command::LeaseGrant(grant) => (Response::LeaseGrant(self.grant(grant)?), Vec::new()),
            Command::LeaseRevoke(revoke) => self.revoke(revoke)?,
        };
        Ok(Applied { response, events })
    }

    /// Reads keys, now or at an earlier revision still kept.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate_range(request)?;
        let at = self.read_revision(request.revision)?;
        let mut response = self.read_range(request, at);
        response.header = self.header();
        Ok(response)
    }

    /// Every change to the selected keys (`key` and `range_end` as in a range) made at or
    /// after revision `start`, in revision order, so a watcher can resume from the revision
    /// after the last event it saw. Fails if `start` is below the compacted revision.
    pub fn events_since(
        &self,
        start: i64,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Vec<Event>, KvError> {
        if start < self.compacted {
            return Err(KvError::Compacted);
        }
        let mut events: Vec<_> = KeyRange::new(key, range_end)
            .select(&self.keys)
            .flat_map(|(key, history)| history.events_since(key, start))
            .collect();
        events.sort_by_key(|(revision, _)| *revision);
        Ok(events.into_iter().map(|(_, event)| event).collect())
    }

    /// A hash of every change kept up to `revision` (0 or less: now), equal on members that
    /// applied the same commands (etcd's `HashKV`, which clients compare across members).
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, KvError> {
        let at = self.read_revision(revision)?;
        let mut hasher = crc32fast::Hasher::new();
        for (key, history) in &self.keys {
            for record in history.records().iter().filter(|record| record.main <= at) {
                hasher.update(&(key.len() as u64).to_be_bytes());
                hasher.update(key);
                hasher.update(&record.main.to_be_bytes());
                hasher.update(&record.sub.to_be_bytes());
                match &record.kv {
                    None => hasher.update(&[0]),
                    Some(kv) => {
                        hasher.update(&[1]);
                        hasher.update(&kv.lease.to_be_bytes());
                        hasher.update(&kv.value);
                    }
                }
            }
        }
        Ok(KvHash {
            hash: hasher.finalize(),
            revision: self.revision,
            // etcd's store starts with -1 for "never compacted".
            compact_revision: if self.compacted == 0 {
                -1
            } else {
                self.compacted
            },
        })
    }

    /// Every granted lease, by id.
    pub fn leases(&self) -> Vec<Lease> {
        self.leases.values().copied().collect()
    }

    /// A lease and its keys, or `None` if it does not exist (etcd's API answers that with
    /// a TTL of -1).
    pub fn lease_info(&self, id: i64) -> Option<LeaseInfo> {
        let lease = self.leases.get(&id)?;
        Some(LeaseInfo {
            id,
            granted_ttl: lease.ttl,
            keys: self.attached_keys(id),
        })
    }

    /// The key as it is now, if it exists.
    pub(crate) fn current(&self, key: &[u8]) -> Option<&KeyValue> {
        self.keys.get(key).and_then(History::latest)
    }

    /// The revision a read asking for `requested` (0 or less: now) happens at.
    pub(crate) fn read_revision(&self, requested: i64) -> Result<i64, KvError> {
        if requested > self.revision {
            return Err(KvError::FutureRevision);
        }
        let at = if requested <= 0 {
            self.revision
        } else {
            requested
        };
        if at < self.compacted {
            return Err(KvError::Compacted);
        }
        Ok(at)
    }

    /// A range at a revision already checked, as etcd's applier computes it: count before
    /// filters, then filters, sort, limit and `more`, then `keys_only`. The header is left
    /// to the caller.
    pub(crate) fn read_range(&self, request: &RangeRequest, at: i64) -> RangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let live = || {
            range
                .select(&self.keys)
                .filter_map(move |(_, history)| history.at(at))
        };
        let total = count(live().count());
        if request.count_only {
            return RangeResponse {
                count: total,
                ..RangeResponse::default()
            };
        }
        let mut kvs: Vec<KeyValue> = live()
            .filter(|kv| passes_filters(request, kv))
            .cloned()
            .collect();
        sort(&mut kvs, request.sort_order(), request.sort_target());
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let more = limit > 0 && kvs.len() > limit;
        if more {
            kvs.truncate(limit);
        }
        if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        RangeResponse {
            header: None,
            kvs,
            more,
            count: total,
        }
    }

    fn header(&self) -> Option<ResponseHeader> {
        revision_header(self.revision)
    }

    fn attached_keys(&self, lease: i64) -> Vec<Vec<u8>> {
        self.keys
            .iter()
            .filter(|(_, history)| history.latest().is_some_and(|kv| kv.lease == lease))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// etcd's compaction: refuses revisions at or below the last compaction or above the
    /// current revision; keeps what reads at or after `revision` need.
    fn compact(&mut self, request: &CompactionRequest) -> Result<CompactionResponse, KvError> {
        if request.revision <= self.compacted {
            return Err(KvError::Compacted);
        }
        if request.revision > self.revision {
            return Err(KvError::FutureRevision);
        }
        for (key, history) in &mut self.keys {
            self.size -= history.compact(request.revision, key);
        }
        self.keys.retain(|_, history| !history.is_empty());
        self.compacted = request.revision;
        Ok(CompactionResponse {
            header: self.header(),
        })
    }

    fn grant(&mut self, request: &LeaseGrantRequest) -> Result<LeaseGrantResponse, KvError> {
        let id = if request.id == 0 {
            self.free_lease_id()
        } else {
            request.id
        };
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        }
        self.leases.insert(
            id,
            Lease {
                id,
                ttl: request.ttl,
            },
        );
        Ok(LeaseGrantResponse {
            header: self.header(),
            id,
            ttl: request.ttl,
            error: String::new(),
        })
    }

    /// The lowest unused positive id from `next_lease_id` on.
    fn free_lease_id(&mut self) -> i64 {
        loop {
            let id = self.next_lease_id;
            self.next_lease_id = if id == i64::MAX { 1 } else { id + 1 };
            if id > 0 && !self.leases.contains_key(&id) {
                return id;
            }
        }
    }

    /// Deletes the lease's keys, in key order, under one revision, then the lease.
    fn revoke(&mut self, request: &LeaseRevokeRequest) -> Result<(Response, Vec<Event>), KvError> {
        if !self.leases.contains_key(&request.id) {
            return Err(KvError::LeaseNotFound);
        }
        let keys = self.attached_keys(request.id);
        let mut writer = Writer::new(self);
        for key in keys {
            writer.delete_range(&DeleteRangeRequest {
                key,
                ..Default::default()
            });
        }
        let (revision, events) = writer.finish();
        self.leases.remove(&request.id);
        let response = LeaseRevokeResponse {
            header: revision_header(revision),
        };
        Ok((Response::LeaseRevoke(response), events))
    }
}

/// The min/max mod/create revision filters (0: no bound).
fn passes_filters(request: &RangeRequest, kv: &KeyValue) -> bool {
    let above = |value: i64, min: i64| min == 0 || value >= min;
    let below = |value: i64, max: i64| max == 0 || value <= max;
    above(kv.mod_revision, request.min_mod_revision)
        && below(kv.mod_revision, request.max_mod_revision)
        && above(kv.create_revision, request.min_create_revision)
        && below(kv.create_revision, request.max_create_revision)
}

/// Sorts as etcd: no order on `KEY` keeps key order; no order on another target means
/// ascending. Ties keep key order.
fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let descending = match (order, target) {
        (SortOrder::None | SortOrder::Ascend, SortTarget::Key) => return,
        (SortOrder::Descend, _) => true,
        (SortOrder::None | SortOrder::Ascend, _) => false,
    };
    let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    if descending {
        kvs.sort_by(|a, b| by(b, a));
    } else {
        kvs.sort_by(by);
    }
}
