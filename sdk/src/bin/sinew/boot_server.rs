//! `sinew boot-server`: serve network boots from matchbox's directory layout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use sinew::boot::{BootServer, Config, ConfigSource};
use sinew_support::stop::StopSignals;
use tokio::signal::unix::{signal, SignalKind};

/// Serve network boots: iPXE scripts, metadata, templates and assets, as matchbox does.
///
/// DATA holds `profiles/*.json`, `groups/*.json`, `generic/*` (tera templates) and
/// `assets/`, in matchbox's layout. Machines chain to `/boot.ipxe`; the group whose
/// selectors all match a machine's labels (the most selectors first, then by id) picks its
/// profile. A bad file keeps the server from starting, naming the file, the field and the
/// reason. SIGHUP reloads DATA; a bad reload is refused and the running configuration kept.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory.
    #[arg(long = "data-path", env = "SINEW_BOOT_DATA", value_name = "DATA")]
    data: PathBuf,
    /// Where to listen.
    #[arg(long, env = "SINEW_BOOT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A label machines send besides uuid, mac, domain, hostname, serial and arch (as
    /// `os=installed`), which selectors may then name. Repeat for more.
    #[arg(long = "label", value_name = "NAME")]
    labels: Vec<String>,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let config = load(&args.data, &args.labels)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args, config))?;
    Ok(ExitCode::SUCCESS)
}

fn load(data: &Path, labels: &[String]) -> Result<Config> {
    let mut source = ConfigSource::read_dir(data)?;
    source.extra_labels.extend(labels.iter().cloned());
    Ok(source.check()?)
}

/// Serves until SIGINT or SIGTERM, reloading on SIGHUP.
async fn serve(args: Args, config: Config) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let server = BootServer::start(listener, config).context("starting the boot server")?;
    let mut stop = StopSignals::install().context("watching SIGTERM and SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    // Announced only now: a SIGHUP before its handler would end the server.
    println!("{}/boot.ipxe", server.url());
    loop {
        tokio::select! {
            signal = stop.recv() => {
                tracing::info!(signal = signal.name(), "quitting");
                break;
            }
            _ = hangup.recv() => match load(&args.data, &args.labels) {
                Ok(config) => server.reload(config),
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "reload refused; serving the configuration loaded before"
                ),
            },
        }
    }
    server.shutdown().await;
    Ok(())
}
