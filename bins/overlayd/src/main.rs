//! `overlayd`: the command line; everything it does lives in the `sinew_overlayd` library.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use sinew_support::logging::Logging;

fn main() -> ExitCode {
    Logging::new("RUST_LOG", "info").init();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("overlayd: {error:#}");
            ExitCode::FAILURE
        }
    }
}
