//! Leases as the state machine keeps them: an id and a granted TTL. Expiry is the leader's
//! business; it proposes a [`crate::v3::Command::LeaseRevoke`] when a lease runs out.

use serde::{Deserialize, Serialize};

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease id, never 0.
    pub id: i64,
    /// The TTL it was granted with, in seconds.
    pub ttl: i64,
}

/// A lease and the keys attached to it (the state-machine part of etcd's
/// `LeaseTimeToLiveResponse`; the remaining TTL comes from the leader's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: i64,
    /// The TTL it was granted with, in seconds.
    pub granted_ttl: i64,
    /// The keys attached to it, in key order.
    pub keys: Vec<Vec<u8>>,
}
