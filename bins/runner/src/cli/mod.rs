//! Command-line parsing and dispatch; one module per command group.

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
    /// Fetch an image (layout directory, OCI archive, or http:// URL), verify and render it.
    Fetch(fetch::FetchArgs),
    /// Build, list and remove images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Free blobs and rendered root filesystems no image references.
    Gc(image::GcArgs),
    /// Generate and export signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Trust(args) => trust::run(&cli.dir, args),
        Command::Fetch(args) => fetch::run(&cli.dir, args),
        Command::Image(command) => image::run(&cli.dir, command),
        Command::Gc(args) => image::gc(&cli.dir, args),
        Command::Key(command) => key::run(command),
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
