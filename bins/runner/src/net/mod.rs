//! Container networking: `host` (share the host's), `none` (a fresh namespace with only
//! `lo`), `overlay` (a veth pair into a bridge on this host's overlay subnet, with an
//! address leased from `subnet.env`'s range and a default route via the bridge).

pub mod ipam;
pub mod link;
pub mod ports;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use sinew_proto::overlay::{SubnetEnv, SubnetEnvError};

pub use ipam::{IpamError, Lease};
pub use link::LinkError;
pub use ports::{PortError, PortSpec};

/// `--net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    /// The host's network namespace.
    Host,
    /// A private namespace with only loopback.
    None,
    /// A private namespace joined to the overlay bridge.
    Overlay,
}

impl NetMode {
    /// Name shown in `status`.
    pub fn name(&self) -> &'static str {
        match self {
            NetMode::Host => "host",
            NetMode::None => "none",
            NetMode::Overlay => "overlay",
        }
    }
}

/// Overlay settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// flannel's `subnet.env`.
    pub subnet_file: PathBuf,
    /// Bridge name on the host.
    pub bridge: String,
}

/// Networking failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Bad or missing `subnet.env`.
    #[error(transparent)]
    Subnet(#[from] SubnetEnvError),
    /// No address.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A netlink step.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// IPv4 forwarding could not be switched on.
    #[error("cannot enable IPv4 forwarding ({IP_FORWARD}), which containers on the overlay need to reach other hosts: {0}")]
    Forwarding(std::io::Error),
}

/// The host's IPv4 forwarding switch.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Container traffic crosses the host from the bridge to the overlay device, so the host
/// must forward (as docker switches it on for its bridge).
fn enable_forwarding() -> Result<(), NetError> {
    match std::fs::read_to_string(IP_FORWARD) {
        Ok(current) if current.trim() == "1" => Ok(()),
        _ => std::fs::write(IP_FORWARD, "1").map_err(NetError::Forwarding),
    }
}

/// The host side of a container's overlay link, before the container exists.
#[derive(Debug)]
pub struct Prepared {
    subnet: SubnetEnv,
    lease: Lease,
    host_link: String,
    peer_link: String,
}

/// Leases an address and creates the bridge (if needed) and the veth pair.
pub fn prepare(state_dir: &Path, config: &OverlayConfig, id: &str) -> Result<Prepared, NetError> {
    let subnet = SubnetEnv::read(&config.subnet_file)?;
    enable_forwarding()?;
    let lease = ipam::allocate(state_dir, &config.bridge, &subnet, id)?;
    let short: String = id.chars().take(10).collect();
    let prepared = Prepared {
        subnet,
        lease,
        host_link: format!("sv{short}"),
        peer_link: format!("sp{short}"),
    };
    let (bridge, host, peer, mtu) = (
        &config.bridge,
        &prepared.host_link,
        &prepared.peer_link,
        subnet.mtu,
    );
    let created = link::with_netlink(async |handle| {
        let bridge_index = link::ensure_bridge(&handle, bridge, &subnet).await?;
        link::create_veth(&handle, host, peer, bridge_index, mtu).await
    });
    match created {
        Ok(()) => Ok(prepared),
        Err(e) => {
            prepared.release();
            Err(e.into())
        }
    }
}

impl Prepared {
    /// The container's address.
    pub fn address(&self) -> Ipv4Addr {
        self.lease.address
    }

    /// Moves the container end into the namespace of `pid` and configures it there.
    pub fn attach(&self, pid: i32) -> Result<(), NetError> {
        let peer = self.peer_link.clone();
        link::with_netlink(async |handle| link::move_to_netns(&handle, &peer, pid).await)?;
        let (address, subnet) = (self.lease.address, self.subnet);
        link::in_netns_of(pid, async move |handle| {
            link::configure_inside(&handle, &peer, address, &subnet).await
        })?;
        Ok(())
    }

    /// Deletes the host end (the container end goes with it, or with its namespace) and
    /// releases the address.
    pub fn release(self) {
        let host = self.host_link.clone();
        if let Err(e) = link::with_netlink(async |handle| link::delete(&handle, &host).await) {
            tracing::warn!(error = %e, link = %host, "removing the container's veth");
        }
        self.lease.release();
    }
}
