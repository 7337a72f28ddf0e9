//! sinew's scheduler, fleet's job: units (a [`unit::UnitSpec`]) placed on machines through
//! the KV store (etcd's v3 API, served by kvd or etcd).
//!
//! * Every machine runs `schedd`, whose agent registers the machine under a lease it keeps
//!   alive, runs the instances assigned to it, and reports their state.
//! * One `schedd` at a time is the engine, elected through a lease. It keeps a view of the
//!   cluster in memory from one read and a watch ([`engine`]), plans with [`placement::plan`]
//!   and writes assignments under each machine's lease ([`keys`] has the layout).
//! * `schedctl` is fleetctl: it submits, starts, stops and destroys units and lists machines,
//!   units and their states.

#![warn(missing_docs)]

pub mod agent;
pub mod client;
pub mod cluster;
pub mod engine;
pub mod instance;
pub mod keys;
pub mod placement;
pub mod records;
pub mod unit;

pub use instance::{InstanceId, Slot};
