//! `sinew-run`: the command line; everything it does lives in the `sinew_runner` library.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use sinew_support::logging::Logging;

fn main() -> ExitCode {
    Logging::new("RUST_LOG", "info").init();
    let cli = cli::Cli::parse();
    let failure = cli.command.failure_code();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("sinew-run: {error:#}");
            ExitCode::from(failure)
        }
    }
}
