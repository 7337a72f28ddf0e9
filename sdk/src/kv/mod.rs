//! The KV cluster from a playbook: the client ([`KvClient`], with endpoint failover,
//! resuming watches and lease keep-alive), a [`Lock`] and an [`Election`] built on leases,
//! as etcd's `concurrency` package builds them.
//!
//! # What the lock and the election do and do not promise
//!
//! Both rest on a lease. While the lease lives, the holder's key exists and no other client
//! can hold the same lock or lead the same election. But a lease is kept alive by the
//! holder's renewals: a holder that stalls (a long pause, a partition, a suspended VM) for
//! longer than the TTL loses its lease, and the next waiter takes over **while the stalled
//! holder may still believe it holds the lock**. Jepsen's analysis of etcd 3.4 (2020) showed
//! exactly this: etcd locks are not mutual exclusion on their own.
//!
//! So anything a lock protects inside the KV store must be written with a transaction that
//! checks the lock is still held: [`Lock::is_held_compare`] gives that comparison (the
//! holder's key still exists with its creation revision), and the creation revision
//! ([`Lock::revision`]) is a fencing token that grows with every new holder, to hand to
//! systems outside the store. [`KeepAlive::lost`] tells the holder when it knows the lease is
//! gone.

pub mod deploy;
mod election;
mod lock;
mod queue;

pub use deploy::{DeployError, KvDeployment};
pub use election::{Election, Leadership};
pub use lock::{Lock, LockError};
pub use sinew_proto::kv::*;
