//! kvd: an etcd-compatible key-value store on Raft. Takes etcd's flags (also with one dash,
//! also as `ETCD_*` variables), serves etcd's client API on the client URLs and Raft on the
//! peer URLs, and shuts down gracefully on SIGTERM or SIGINT.

mod flags;

use std::process::ExitCode;

use clap::Parser;
use sinew_support::logging::Logging;

fn main() -> ExitCode {
    let flags = flags::Flags::parse_from(flags::normalise_args(std::env::args()));
    // openraft is chatty at info; its warnings are what an operator needs.
    Logging::new("KVD_LOG", &format!("{},openraft=warn", flags.log_level)).init();
    match flags.node_config().and_then(sinew_kvd::daemon::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
