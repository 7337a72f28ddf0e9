//! sinew's scheduler, fleet's job: units (a [`unit::UnitSpec`]) placed on machines through
//! the KV store (etcd's v3 API, served by kvd or etcd). The values it shares with
//! `schedctl`, the SDK and the tests (specs, records, the key layout, the operator's
//! client) live in `sinew_proto::sched` and are re-exported here.
//!
//! * Every machine runs `schedd`, whose agent registers the machine under a lease it keeps
//!   alive, runs the instances assigned to it, and reports their state.
//! * One `schedd` at a time is the engine, elected through a lease. It keeps a view of the
//!   cluster in memory from one read and a watch ([`engine`]), plans with [`placement::plan`]
//!   and writes assignments under each machine's lease ([`keys`] has the layout).
//! * [`daemon`] runs the agent, the engine or both until SIGTERM, as `schedd` does.
//! * `schedctl` is fleetctl: it submits, starts, stops and destroys units and lists machines,
//!   units and their states.

#![warn(missing_docs)]

pub mod agent;
pub mod cluster;
pub mod daemon;
pub mod engine;
pub mod placement;

pub use sinew_proto::sched::{client, instance, keys, records, unit, InstanceId, Slot};
