//! `sinew`: the operator's command-line tool. `sinew present` serves slide decks whose code
//! runs live; `sinew boot-server` serves network boots.

mod boot_server;
mod lab_keeper;
mod present;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sinew, the operator's tool: slide decks whose code runs live (`present`), network boots
/// (`boot-server`).
#[derive(Debug, Parser)]
#[command(name = "sinew", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Present(present::Args),
    BootServer(boot_server::Args),
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
        Command::BootServer(args) => boot_server::main(args),
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
