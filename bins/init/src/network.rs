//! Bringing up `lo` and the interfaces named on the kernel command line, over rtnetlink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use sinew_proto::mac::MacAddr;
use thiserror::Error;
use tokio::time::Instant;

use crate::cmdline::InterfaceConfig;

/// How long to wait for a link to appear: virtio-net probes asynchronously after its module
/// is loaded.
const LINK_WAIT: Duration = Duration::from_secs(5);
/// How often to look for it meanwhile.
const LINK_POLL: Duration = Duration::from_millis(5);

/// Why part of the network could not be configured.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// No link with this MAC address appeared in time.
    #[error("no network link with MAC address {mac} appeared within {LINK_WAIT:?}")]
    LinkNotFound {
        /// The MAC address looked for.
        mac: MacAddr,
    },
    /// The loopback link does not exist.
    #[error("no loopback link")]
    NoLoopback,
    /// A netlink request failed.
    #[error("cannot {action} on {link}: {source}")]
    Netlink {
        /// What was being done.
        action: &'static str,
        /// The link's name or MAC address.
        link: String,
        /// What the kernel said.
        source: rtnetlink::Error,
    },
}

/// Brings `lo` up and configures each interface. Returns what failed; each failure affects
/// only its own interface.
pub async fn bring_up(interfaces: &[InterfaceConfig]) -> Vec<NetworkError> {
    let (connection, handle, _) = match rtnetlink::new_connection() {
        Ok(parts) => parts,
        Err(error) => return vec![NetworkError::Socket(error)],
    };
    let connection = tokio::spawn(connection);
    let mut failures = Vec::new();
    if let Err(error) = loopback_up(&handle).await {
        failures.push(error);
    }
    for interface in interfaces {
        match configure(&handle, interface).await {
            Ok(index) => tracing::info!(
                mac = %interface.mac,
                index,
                address = %interface.address,
                prefix_len = interface.prefix_len,
                gateway = ?interface.gateway,
                "interface configured"
            ),
            Err(error) => failures.push(error),
        }
    }
    connection.abort();
    failures
}

async fn loopback_up(handle: &Handle) -> Result<(), NetworkError> {
    let netlink = |action| {
        move |source| NetworkError::Netlink {
            action,
            link: "lo".into(),
            source,
        }
    };
    let link = handle
        .link()
        .get()
        .match_name("lo")
        .execute()
        .try_next()
        .await
        .map_err(netlink("look up"))?
        .ok_or(NetworkError::NoLoopback)?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(link.header.index).up().build())
        .execute()
        .await
        .map_err(netlink("set up"))
}

/// Configures one interface; returns its link index.
async fn configure(handle: &Handle, interface: &InterfaceConfig) -> Result<u32, NetworkError> {
    let netlink = |action| {
        move |source| NetworkError::Netlink {
            action,
            link: interface.mac.to_string(),
            source,
        }
    };
    let index = wait_for_link(handle, interface.mac).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink("set up"))?;
    handle
        .address()
        .add(index, interface.address, interface.prefix_len)
        .replace()
        .execute()
        .await
        .map_err(netlink("add address"))?;
    if let Some(gateway) = interface.gateway {
        let route = match gateway {
            IpAddr::V4(gateway) => RouteMessageBuilder::<Ipv4Addr>::new()
                .output_interface(index)
                .gateway(gateway)
                .build(),
            IpAddr::V6(gateway) => RouteMessageBuilder::<Ipv6Addr>::new()
                .output_interface(index)
                .gateway(gateway)
                .build(),
        };
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(netlink("add default route"))?;
    }
    Ok(index)
}

/// The index of the link with `mac`, polling until it appears or [`LINK_WAIT`] passes.
async fn wait_for_link(handle: &Handle, mac: MacAddr) -> Result<u32, NetworkError> {
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        // Read the whole dump before looking: dropping a half-read dump would leave replies
        // in flight on the socket.
        let links: Vec<_> =
            handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|source| NetworkError::Netlink {
                    action: "list links",
                    link: mac.to_string(),
                    source,
                })?;
        let found = links.iter().find(|link| {
            link.attributes
                .iter()
                .any(|attribute| matches!(attribute, LinkAttribute::Address(address) if address.as_slice() == mac.0))
        });
        if let Some(link) = found {
            tracing::debug!(%mac, waited = ?(Instant::now() + LINK_WAIT - deadline), "link found");
            return Ok(link.header.index);
        }
        if Instant::now() >= deadline {
            return Err(NetworkError::LinkNotFound { mac });
        }
        tokio::time::sleep(LINK_POLL).await;
    }
}
