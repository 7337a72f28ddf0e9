//! Flags (flannel's names, also read from `FLANNELD_*` variables) and signals.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sinew_overlayd::daemon::Settings;
use sinew_overlayd::dataplane::IfaceSelector;
use sinew_overlayd::fastpath::Mode;
use sinew_proto::overlay::SUBNET_FILE;
use sinew_support::duration;

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
    #[arg(long, env = "FLANNELD_SUBNET_FILE", default_value = SUBNET_FILE)]
    subnet_file: PathBuf,

    /// How long before expiry the lease is renewed: 60m, 30s, or plain minutes.
    #[arg(long, env = "FLANNELD_SUBNET_LEASE_RENEW_MARGIN", default_value = "60")]
    subnet_lease_renew_margin: String,

    /// How long a subnet lease lives without renewal: 24h, 30s, or plain seconds.
    #[arg(long, env = "FLANNELD_SUBNET_LEASE_TTL", default_value = "24h")]
    subnet_lease_ttl: String,

    /// eBPF forwarding between the VXLAN device and container veths on the bridge that
    /// holds this host's subnet, past the host's IP stack and netfilter: auto (if the
    /// kernel can), on (fail if it cannot) or off (the kernel's path only).
    #[arg(long, env = "OVERLAYD_FAST_PATH", value_enum, default_value = "auto")]
    fast_path: Mode,
}

fn settings(cli: &Cli) -> Result<Settings> {
    let renew_margin = duration::parse(&cli.subnet_lease_renew_margin, Duration::from_secs(60))
        .context("--subnet-lease-renew-margin")?;
    let lease_ttl = duration::parse(&cli.subnet_lease_ttl, Duration::from_secs(1))
        .context("--subnet-lease-ttl")?;
    Ok(Settings {
        endpoints: cli.etcd_endpoints.clone(),
        prefix: cli.etcd_prefix.clone(),
        iface: IfaceSelector::from_flag(cli.iface.as_deref()),
        public_ip: cli.public_ip,
        subnet_file: cli.subnet_file.clone(),
        lease_ttl,
        renew_margin,
    })
}

/// Runs the daemon that `cli` describes until SIGTERM or SIGINT.
pub fn run(cli: Cli) -> Result<()> {
    sinew_overlayd::process::run(&settings(&cli)?, cli.fast_path)
}
