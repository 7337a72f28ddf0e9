//! Command-line parsing and dispatch; one module per command group.

pub mod containers;
mod fetch;
mod image;
mod key;
mod trust;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// sinew-run: signed OCI containers, verified with sequoia-openpgp.
#[derive(Debug, Parser)]
#[command(name = "sinew-run", version, about)]
pub struct Cli {
    /// State directory (keystore, image store, containers).
    #[arg(
        long,
        global = true,
        env = "SINEW_RUN_DIR",
        default_value = "/var/lib/sinew-run"
    )]
    pub dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trust, list or remove OpenPGP keys for image-name prefixes.
    Trust(trust::TrustArgs),
    /// Fetch an image (layout directory, OCI archive, or http(s):// URL), verify and render it.
    Fetch(fetch::FetchArgs),
    /// Build, list and remove images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Free blobs and rendered root filesystems no image references.
    Gc(image::GcArgs),
    /// Generate and export signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
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

impl Command {
    /// Exit code when sinew-run itself fails: 125 for `run` (as docker does), so it is
    /// told apart from the program's own exit codes; 1 otherwise.
    pub fn failure_code(&self) -> u8 {
        match self {
            Command::Run(_) => 125,
            _ => 1,
        }
    }
}

/// Runs one parsed command line; returns the exit code (a container's, for `run`).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let done = |result: anyhow::Result<()>| result.map(|()| 0);
    match cli.command {
        Command::Trust(args) => done(trust::run(&cli.dir, args)),
        Command::Fetch(args) => done(fetch::run(&cli.dir, args)),
        Command::Image(command) => done(image::run(&cli.dir, command)),
        Command::Gc(args) => done(image::gc(&cli.dir, args)),
        Command::Key(command) => done(key::run(command)),
        Command::Run(args) => containers::run(&cli.dir, *args),
        Command::List(args) => done(containers::list(&cli.dir, args)),
        Command::Status(args) => done(containers::status(&cli.dir, args)),
        Command::Stop(args) => done(containers::stop(&cli.dir, args)),
        Command::Rm(args) => done(containers::rm(&cli.dir, args)),
        Command::Logs(args) => done(containers::logs(&cli.dir, args)),
    }
}
