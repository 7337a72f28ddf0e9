//! Flags (flannel's names, also read from `FLANNELD_*` variables), logging, signals.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sinew_overlayd::daemon::{self, Settings};
use sinew_overlayd::dataplane::{IfaceSelector, Netlink};
use sinew_overlayd::duration;
use tokio::signal::unix::{signal, SignalKind};

/// flannel's VXLAN overlay: a subnet lease per host in the KV store, a VXLAN device kept
/// in step with the other hosts' leases, and subnet.env for the container runtime.
#[derive(Debug, Parser)]
#[command(name = "overlayd", version)]
pub struct Cli {
    /// KV endpoints (etcd v3 or kvd), comma-separated.
    #[arg(
        long,
        env = "FLANNELD_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,

    /// Key prefix of the network config and the leases.
    #[arg(
        long,
        env = "FLANNELD_ETCD_PREFIX",
        default_value = "/coreos.com/network"
    )]
    etcd_prefix: String,

    /// Interface for VXLAN traffic, by name or address (default: the default route's).
    #[arg(long, env = "FLANNELD_IFACE")]
    iface: Option<String>,

    /// Address other hosts send VXLAN traffic to (default: the interface's address).
    #[arg(long, env = "FLANNELD_PUBLIC_IP")]
    public_ip: Option<Ipv4Addr>,

    /// Where to write the subnet file for the container runtime.
    #[arg(
        long,
        env = "FLANNELD_SUBNET_FILE",
        default_value = "/run/flannel/subnet.env"
    )]
    subnet_file: PathBuf,

    /// How long before expiry the lease is renewed: 60m, 30s, or plain minutes.
    #[arg(long, env = "FLANNELD_SUBNET_LEASE_RENEW_MARGIN", default_value = "60")]
    subnet_lease_renew_margin: String,

    /// How long a subnet lease lives without renewal: 24h, 30s, or plain seconds.
    #[arg(long, env = "FLANNELD_SUBNET_LEASE_TTL", default_value = "24h")]
    subnet_lease_ttl: String,
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn settings(cli: Cli) -> Result<Settings> {
    let renew_margin = duration::parse(&cli.subnet_lease_renew_margin, Duration::from_secs(60))
        .context("--subnet-lease-renew-margin")?;
    let lease_ttl = duration::parse(&cli.subnet_lease_ttl, Duration::from_secs(1))
        .context("--subnet-lease-ttl")?;
    Ok(Settings {
        endpoints: cli.etcd_endpoints,
        prefix: cli.etcd_prefix,
        iface: IfaceSelector::from_flag(cli.iface.as_deref()),
        public_ip: cli.public_ip,
        subnet_file: cli.subnet_file,
        lease_ttl,
        renew_margin,
    })
}

/// Runs the daemon until SIGTERM or SIGINT; the data plane and the lease stay in place.
pub fn run(cli: Cli) -> Result<()> {
    let settings = settings(cli)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let mut kernel = Netlink::open().context("opening netlink")?;
        tokio::select! {
            outcome = daemon::run(&settings, &mut kernel) => {
                outcome.context("overlayd cannot run")?;
            }
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping, leaving the VXLAN device, its entries and the lease in place"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping, leaving the VXLAN device, its entries and the lease in place"),
        }
        Ok(())
    })
}
