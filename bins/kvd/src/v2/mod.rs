//! etcd's v2 keys API: a separate state machine ([`Store`]) replicated with [`Command`]s,
//! and its HTTP/JSON layer ([`handle`]) over a [`Backend`].
//!
//! etcd 3.4 keeps the v2 store apart from the v3 one, and so does kvd. The store is a tree
//! of directories and keys with one global index (`X-Etcd-Index`), TTLs and the last
//! [`HISTORY_CAPACITY`] events for watches. Applying is deterministic: a command carries the
//! proposing leader's clock as `now`, and the leader proposes [`Op::Expire`] periodically to
//! remove nodes whose TTL ran out, so no replica ever reads a clock while applying.
//!
//! ```
//! use sinew_kvd::v2::{Command, Op, Set, Store, Ttl};
//!
//! let mut store = Store::new();
//! let set = Command {
//!     now: 1_000,
//!     op: Op::Set(Set { key: "/a".into(), value: "1".into(), ttl: Ttl { seconds: Some(5), refresh: false }, ..Set::default() }),
//! };
//! let events = store.apply(&set).expect("set");
//! assert_eq!(events[0].node.modified_index, 1);
//! assert_eq!(events[0].node.ttl, 5);
//!
//! // Five seconds later the leader proposes an expiry; the key goes with an `expire` event.
//! let expired = store.apply(&Command { now: 6_000, op: Op::Expire }).expect("expire");
//! assert_eq!(expired.len(), 1);
//! assert!(store.get("/a", false, 6_000).is_err());
//! ```

mod backend;
mod cluster;
mod command;
mod error;
mod form;
mod history;
mod http;
mod keys;
mod node;
mod path;
mod request;
mod snapshot;
mod stats;
mod store;
pub(crate) mod time;
mod watch;

pub use backend::{
    Backend, Counts, FollowerStats, Latency, LeaderInfo, LeaderStats, Member, MemberError,
    RaftStatus, SelfStats,
};
pub use command::{
    Command, CompareAndDelete, CompareAndSwap, Create, Delete, Op, Set, Ttl, Update,
};
pub use error::{Code, Error};
pub use history::HISTORY_CAPACITY;
pub use http::{handle, now_ms, serves, Body, MAX_FORM_BYTES};
pub use node::{Action, Event, Node};
pub use path::MAX_DEPTH;
pub use snapshot::SnapshotError;
pub use stats::Stats;
pub use store::{Store, WatchStart};
pub use watch::watch_matches;

#[cfg(test)]
mod tests;
