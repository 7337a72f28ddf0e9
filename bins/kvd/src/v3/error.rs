//! The errors a command or a read can end with, with etcd's own messages so the API layer can
//! pass them on unchanged.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a command or a read was refused. A refused command changes nothing. Serialisable, so
/// Raft can hand a refusal back to the node that proposed the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvError {
    /// The request names a revision that compaction has already dropped.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The request names a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put, range or delete without a key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A put with `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put with `ignore_value` that also carries a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A put with `ignore_lease` that also carries a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// The lease named by a put or a revocation does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant for a lease id that is already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant whose TTL exceeds [`crate::v3::MAX_LEASE_TTL`].
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A transaction that writes the same key twice on one path.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A transaction with more than [`crate::v3::MAX_TXN_OPS`] comparisons or operations in a
    /// branch.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A write that may add data while a member's out-of-space alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A write while a member's corruption alarm is raised.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
}
