//! sinew-run: signed OCI containers, verified with sequoia-openpgp, run in namespaces.

mod cli;

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SINEW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let code = cli::Cli::parse().execute();
    std::process::exit(code);
}
