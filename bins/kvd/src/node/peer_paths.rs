//! Where a member serves forwarded requests, under its peer URL: the peer listener serves
//! them, and the members that forward call them.

/// Propose a command (the leader answers).
pub const PROPOSE: &str = "/kv/propose";
/// The leader's read index for a follower's linearizable read.
pub const READ_INDEX: &str = "/kv/read-index";
/// Renew a lease.
pub const LEASE_KEEPALIVE: &str = "/kv/lease/keepalive";
/// A lease's remaining TTL.
pub const LEASE_REMAINING: &str = "/kv/lease/remaining";
/// Change the membership.
pub const MEMBER: &str = "/kv/member";
/// Stand for election now (the leader moves the lead here).
pub const CAMPAIGN: &str = "/kv/campaign";
/// This member's and the cluster's ids.
pub const IDENTITY: &str = "/kv/identity";
