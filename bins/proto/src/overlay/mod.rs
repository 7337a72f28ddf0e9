//! What overlayd shares with the programs around it: flannel's `subnet.env`, which it
//! writes for container runtimes, and the log lines the SDK reads its data path from.

pub mod subnet_env;

pub use subnet_env::{Ipv4Cidr, SubnetEnv, SubnetEnvError, SUBNET_FILE};

/// The start of overlayd's log line saying the fast path's programs are loaded and being
/// attached.
pub const LOG_FAST_PATH_ON: &str = "fast path on";
/// The start of overlayd's log line saying the fast path has no bridge to work with yet.
pub const LOG_FAST_PATH_WAITING: &str = "fast path waiting";
/// The start of overlayd's log line saying this kernel cannot run the fast path (under
/// `auto`).
pub const LOG_FAST_PATH_UNAVAILABLE: &str = "fast path unavailable";
