//! Command line of `sinew-run`.

pub mod containers;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// sinew-run: signed OCI containers in namespaces and cgroups.
#[derive(Debug, Parser)]
#[command(name = "sinew-run", version)]
pub struct Cli {
    /// State directory (images, containers).
    #[arg(
        long,
        env = "SINEW_RUN_DIR",
        default_value = "/var/lib/sinew-run",
        global = true
    )]
    pub dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a container from an image.
    Run(Box<containers::RunArgs>),
    /// List containers.
    List(containers::ListArgs),
    /// Show a container's state.
    Status(containers::StatusArgs),
    /// Stop a running container.
    Stop(containers::StopArgs),
    /// Remove a container.
    Rm(containers::RmArgs),
    /// Print a container's output.
    Logs(containers::LogsArgs),
}

/// Exit code for errors of sinew-run itself when running a container (as docker does),
/// so they are told apart from the program's own exit codes.
const RUN_FAILED: i32 = 125;

impl Cli {
    /// Runs the command; returns the process exit code.
    pub fn execute(self) -> i32 {
        let is_run = matches!(self.command, Command::Run(_));
        let result = match self.command {
            Command::Run(args) => containers::run(&self.dir, *args),
            Command::List(args) => containers::list(&self.dir, args),
            Command::Status(args) => containers::status(&self.dir, args),
            Command::Stop(args) => containers::stop(&self.dir, args),
            Command::Rm(args) => containers::rm(&self.dir, args),
            Command::Logs(args) => containers::logs(&self.dir, args),
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("sinew-run: error: {e:#}");
                if is_run {
                    RUN_FAILED
                } else {
                    1
                }
            }
        }
    }
}
