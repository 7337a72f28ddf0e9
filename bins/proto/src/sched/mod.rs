//! The scheduler's shared values (feature `sched`): unit specs, instances, the KV layout,
//! the records each key holds, and the operator's client. `schedd` (crate `sinew-sched`)
//! places and runs units by them; `schedctl`, the SDK and the tests submit and read them,
//! without linking the daemon.

pub mod client;
pub mod instance;
pub mod keys;
pub mod records;
pub mod unit;

pub use instance::{InstanceId, Slot};
