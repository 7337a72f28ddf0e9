//! What Raft replicates ([`Command`]): etcd's own request messages, checked as etcd checks
//! them before proposing.

use serde::{Deserialize, Serialize};
use sinew_etcd_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, TxnRequest,
};

use crate::v3::error::KvError;
use crate::v3::txn;

/// The most comparisons, or operations in one branch, a transaction may hold (etcd's
/// default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// The longest lease TTL a grant may ask for, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A change to the store, replicated through the Raft log and applied by every node with
/// [`crate::v3::Store::apply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Set one key.
    Put(PutRequest),
    /// Delete a key or a range of keys.
    DeleteRange(DeleteRangeRequest),
    /// Compare, then run one of two lists of operations, atomically, in one revision.
    Txn(TxnRequest),
    /// Drop history below a revision (`physical` changes nothing: compaction is applied in
    /// memory at once).
    Compact(CompactionRequest),
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
            Self::Put(put) => validate_put(put),
            Self::DeleteRange(delete) => validate_delete(delete),
            Self::Txn(txn) => txn::validate(txn),
            Self::Compact(_) | Self::LeaseRevoke(_) => Ok(()),
            Self::LeaseGrant(grant) => validate_grant(grant),
        }
    }
}

/// Checks a range request without the store.
pub fn validate_range(request: &RangeRequest) -> Result<(), KvError> {
    require_key(&request.key)
}

/// Checks a put without the store: a key, and no value or lease given with
/// `ignore_value` or `ignore_lease`.
pub(crate) fn validate_put(request: &PutRequest) -> Result<(), KvError> {
    require_key(&request.key)?;
    if request.ignore_value && !request.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// Checks a delete without the store.
pub(crate) fn validate_delete(request: &DeleteRangeRequest) -> Result<(), KvError> {
    require_key(&request.key)
}

fn validate_grant(request: &LeaseGrantRequest) -> Result<(), KvError> {
    if request.ttl > MAX_LEASE_TTL {
        return Err(KvError::LeaseTtlTooLarge);
    }
    Ok(())
}

fn require_key(key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}
