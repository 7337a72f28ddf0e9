//! etcd v3 semantics of the state machine, one module per area; each test names the rule it
//! checks.

mod common;
mod compaction;
mod lease;
mod property;
mod range;
mod revisions;
mod snapshot;
mod txn;
mod watch;
