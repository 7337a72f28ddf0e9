//! kvctl: etcdctl's everyday commands for kvd and etcd clusters, over the v3 JSON API.
//!
//! Exit codes: 0 on success, 1 when the cluster refused the request or could not be reached
//! (or an endpoint is unhealthy), 2 for a bad command line.

mod cli;
mod commands;
mod print;
mod txn_script;

use std::process::ExitCode;

use clap::Parser;
use sinew_support::logging::Logging;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    Logging::new("KVCTL_LOG", "warn").init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
