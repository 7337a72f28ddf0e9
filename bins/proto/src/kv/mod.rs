//! A client for kvd and etcd through etcd's v3 JSON gateway: key-value reads and writes,
//! transactions, leases with background keep-alive, watches that resume after a reconnect,
//! membership and status, with failover across endpoints; a [`Lock`] and an [`Election`]
//! built on leases, as etcd's `concurrency` package builds them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sinew_proto::kv::KvClientError> {
//! use sinew_proto::kv::KvClient;
//!
//! let kv = KvClient::new(["http://127.0.0.1:2379", "http://127.0.0.1:22379"])?;
//! kv.put("greeting", "hello").await?;
//! let value = kv.get("greeting").await?.map(|kv| kv.value);
//! assert_eq!(value.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```
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

mod client;
mod election;
mod error;
mod keepalive;
mod lock;
mod queue;
pub mod types;
mod view;
mod watch;

pub use client::{prefix_end, KvClient};
pub use election::{Election, Leadership};
pub use error::KvClientError;
pub use keepalive::KeepAlive;
pub use lock::{Lock, LockError};
pub use sinew_etcd_api::txn;
pub use types::*;
pub use view::{PrefixView, ViewChange};
pub use watch::{Watch, WatchBatch};
