//! A client for kvd and etcd through etcd's v3 JSON gateway: key-value reads and writes,
//! transactions, leases with background keep-alive, watches that resume after a reconnect,
//! membership and status, with failover across endpoints.
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

mod client;
mod error;
mod keepalive;
pub mod types;
mod watch;

pub use client::{prefix_end, KvClient};
pub use error::KvClientError;
pub use keepalive::KeepAlive;
pub use sinew_etcd_api::txn;
pub use types::*;
pub use watch::{Watch, WatchBatch};
