//! What Raft replicates ([`Command`]) and the requests commands and reads are made of, with
//! etcd's field names and meanings.

use serde::{Deserialize, Serialize};

use crate::v3::compare::Compare;
use crate::v3::error::KvError;
use crate::v3::txn;

/// The most comparisons, or operations in one branch, a transaction may hold (etcd's
/// default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// The longest lease TTL a grant may ask for, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A change to the store, replicated through the Raft log and applied by every node with
/// [`crate::v3::Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Set one key.
    Put(PutRequest),
    /// Delete a key or a range of keys.
    DeleteRange(DeleteRangeRequest),
    /// Compare, then run one of two lists of operations, atomically, in one revision.
    Txn(TxnRequest),
    /// Drop history below a revision.
    Compact(CompactRequest),
    /// Create a lease.
    LeaseGrant(LeaseGrantRequest),
    /// Delete a lease and every key attached to it. The leader proposes this when a lease's
    /// TTL runs out; the state machine never looks at a clock.
    LeaseRevoke(LeaseRevokeRequest),
}

impl Command {
    /// Checks what can be checked without the store (empty keys, contradictory flags, sizes,
    /// duplicate keys in a transaction), as etcd does before proposing. The API layer should
    /// call it to refuse bad requests early; [`crate::v3::Store::apply`] calls it again.
    pub fn validate(&self) -> Result<(), KvError> {
        match self {
            Self::Put(put) => put.validate(),
            Self::DeleteRange(delete) => delete.validate(),
            Self::Txn(txn) => txn.validate(),
            Self::Compact(_) | Self::LeaseRevoke(_) => Ok(()),
            Self::LeaseGrant(grant) => grant.validate(),
        }
    }
}

/// How a range orders its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortOrder {
    /// Key order, unless `sort_target` is not `KEY`, which makes it ascending (as etcd).
    #[default]
    None,
    /// Ascending by the sort target.
    Ascend,
    /// Descending by the sort target.
    Descend,
}

/// Which field a range sorts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// A read of one key or a range of keys (etcd's `RangeRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RangeRequest {
    /// The first key.
    #[serde(with = "crate::base64_bytes")]
    pub key: Vec<u8>,
    /// Empty for `key` alone, `"\0"` for every key from `key` on, else the exclusive end.
    #[serde(with = "crate::base64_bytes")]
    pub range_end: Vec<u8>,
    /// At most this many keys; 0 for no limit.
    pub limit: i64,
    /// Read at this revision; 0 or less for the current one.
    pub revision: i64,
    /// Result order.
    pub sort_order: SortOrder,
    /// Sort field.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Drop keys modified before this revision (0: no bound).
    pub min_mod_revision: i64,
    /// Drop keys modified after this revision (0: no bound).
    pub max_mod_revision: i64,
    /// Drop keys created before this revision (0: no bound).
    pub min_create_revision: i64,
    /// Drop keys created after this revision (0: no bound).
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// Checks the request without the store.
    pub fn validate(&self) -> Result<(), KvError> {
        require_key(&self.key)
    }
}

/// Sets a key (etcd's `PutRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PutRequest {
    /// The key.
    #[serde(with = "crate::base64_bytes")]
    pub key: Vec<u8>,
    /// The new value.
    #[serde(with = "crate::base64_bytes")]
    pub value: Vec<u8>,
    /// The lease to attach the key to, or 0 for none.
    pub lease: i64,
    /// Return the previous key-value pair.
    pub prev_kv: bool,
    /// Keep the current value; the key must exist and `value` must be empty.
    pub ignore_value: bool,
    /// Keep the current lease; the key must exist and `lease` must be 0.
    pub ignore_lease: bool,
}

impl PutRequest {
    /// Checks the request without the store.
    pub fn validate(&self) -> Result<(), KvError> {
        require_key(&self.key)?;
        if self.ignore_value && !self.value.is_empty() {
            return Err(KvError::ValueProvided);
        }
        if self.ignore_lease && self.lease != 0 {
            return Err(KvError::LeaseProvided);
        }
        Ok(())
    }
}

/// Deletes a key or a range of keys (etcd's `DeleteRangeRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteRangeRequest {
    /// The first key.
    #[serde(with = "crate::base64_bytes")]
    pub key: Vec<u8>,
    /// As in [`RangeRequest::range_end`].
    #[serde(with = "crate::base64_bytes")]
    pub range_end: Vec<u8>,
    /// Return the deleted key-value pairs.
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    /// Checks the request without the store.
    pub fn validate(&self) -> Result<(), KvError> {
        require_key(&self.key)
    }
}

/// One operation of a transaction branch (etcd's `RequestOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A read; it sees the writes of earlier operations of the same transaction.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// Compare, then run `success` if every comparison holds, else `failure` (etcd's
/// `TxnRequest`). Comparisons, nested ones included, see the store as it was before the
/// transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TxnRequest {
    /// Conditions, all of which must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Operations run when every comparison holds.
    pub success: Vec<Op>,
    /// Operations run otherwise.
    pub failure: Vec<Op>,
}

impl TxnRequest {
    /// Checks the request without the store: sizes, empty keys, and that no path writes a
    /// key twice.
    pub fn validate(&self) -> Result<(), KvError> {
        txn::validate(self)
    }
}

/// Drops history below `revision` (etcd's `CompactionRequest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompactRequest {
    /// Versions superseded at or before this revision are dropped; reads below it fail.
    pub revision: i64,
}

/// Creates a lease (etcd's `LeaseGrantRequest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseGrantRequest {
    /// The lease id, or 0 to let the store choose one.
    pub id: i64,
    /// The granted time to live in seconds, kept as given; the leader enforces a minimum
    /// and measures expiry.
    pub ttl: i64,
}

impl LeaseGrantRequest {
    /// Checks the request without the store.
    pub fn validate(&self) -> Result<(), KvError> {
        if self.ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge);
        }
        Ok(())
    }
}

/// Deletes a lease and its keys (etcd's `LeaseRevokeRequest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseRevokeRequest {
    /// The lease id.
    pub id: i64,
}

fn require_key(key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}
