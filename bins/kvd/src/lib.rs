//! kvd, an etcd-compatible key-value store replicated with Raft (openraft 0.9), and kvctl, its
//! command-line client.
//!
//! A node is log store + state machine + network + API, as in openraft's examples:
//!
//! * [`v3`]: etcd's v3 MVCC store (revisions, ranges, transactions, compaction, leases) and
//!   [`v2`]: etcd's v2 store (a tree with TTLs) with its HTTP API. Both are deterministic
//!   state machines: every replica applying the same commands reaches the same state.
//!   [`alarm`]: etcd's alarms (out of space, corrupt), kept beside the stores, which refuse
//!   writes while one is raised.
//! * [`raft`]: openraft's type configuration, the durable log (redb), the state machine that
//!   applies entries to both stores and keeps the last snapshot, and the peer network.
//! * [`node`]: a member assembled from these: founding or joining the cluster, forwarding to
//!   the leader, group commit, linearizable reads, lease expiry, membership, and the peer and
//!   client listeners.
//! * [`gateway`]: etcd's v3 JSON gateway over a [`gateway::Backend`], served beside the v2 API
//!   on a node's client listener, and [`grpc`]: etcd's gRPC services over the same backend.
//! * [`daemon`]: a member and its listeners run until SIGTERM, as the `kvd` binary does.
//!
//! The binaries are `kvd` (a member, configured with etcd's flags) and `kvctl` (etcdctl's
//! commands, through `sinew-proto`'s v3 client).

#![warn(missing_docs)]

/// The etcd release whose API kvd serves, reported wherever etcd reports its version
/// (`/version`, Maintenance.Status), since clients choose paths and features by it.
pub const ETCD_VERSION: &str = "3.4.0";

/// kvd's own version, reported beside [`ETCD_VERSION`] by `/version` (in a header).
pub const KVD_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod alarm;
mod base64_bytes;
pub mod daemon;
pub mod gateway;
pub mod grpc;
pub mod node;
pub mod raft;
pub mod v2;
pub mod v3;
