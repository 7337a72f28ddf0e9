//! `sinew`: the operator's command-line tool. `sinew present` serves slide decks whose code
//! runs live.

mod lab_keeper;
mod present;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sinew, the operator's tool: slide decks whose code runs live (`present`).
#[derive(Debug, Parser)]
#[command(name = "sinew", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Present(present::Args),
    #[command(name = "present-lab", hide = true)]
    PresentLab(lab_keeper::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sinew_support::logging::Logging::new("SINEW_LOG", "info")
        .for_console()
        .init();
    let result = match cli.command {
        Command::Present(args) => present::main(args),
        Command::PresentLab(args) => lab_keeper::main(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sinew: {err:#}");
            ExitCode::FAILURE
        }
    }
}
