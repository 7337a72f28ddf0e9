//! What every sinew process does the same way: an error and its causes on one line
//! ([`error_chain`]), logging to stderr ([`logging::Logging`]), and, with the `netlink`
//! feature, errors of rtnetlink requests that say what was being done ([`netlink`]).

#![warn(missing_docs)]

mod error_chain;
pub mod logging;
#[cfg(feature = "netlink")]
pub mod netlink;

pub use error_chain::error_chain;
