//! `sinew-run`: the command line; everything it does lives in the `sinew_runner` library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::init_tracing();
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sinew-run: {error:#}");
            ExitCode::FAILURE
        }
    }
}
