//! What every sinew process does the same way: an error and its causes on one line
//! ([`error_chain`]), back-off between restarts ([`backoff::Backoff`]), durations on the
//! command line ([`duration`]), logging to stderr
//! ([`logging::Logging`]), free loopback ports for a server started a moment later
//! ([`ports`]), the signals that ask a process to stop ([`stop::StopSignals`]), and, with
//! the `netlink` feature, errors of rtnetlink requests that say what was being done
//! ([`netlink`]).

#![warn(missing_docs)]

pub mod backoff;
pub mod duration;
mod error_chain;
pub mod logging;
#[cfg(feature = "netlink")]
pub mod netlink;
pub mod ports;
pub mod stop;

pub use error_chain::error_chain;
