//! Links through rtnetlink: the host bridge, the veth pair, and the container end's
//! configuration from inside the container's network namespace.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sinew_proto::overlay::SubnetEnv;
use sinew_support::netlink::{request, NetlinkError};

/// A netlink step failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Opening the netlink socket or the runtime driving it.
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    /// A request the kernel refused.
    #[error(transparent)]
    Request(#[from] NetlinkError),
    /// A link that should exist does not.
    #[error("link {0} not found")]
    Missing(String),
    /// Entering the container's network namespace.
    #[error("entering the network namespace of pid {pid}")]
    Setns {
        /// The container's init.
        pid: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `f` with a netlink handle on a single-threaded runtime of its own: no threads
/// outlive the call, so the supervisor stays single-threaded for the clone.
pub fn with_netlink<T>(
    f: impl AsyncFnOnce(Handle) -> Result<T, LinkError>,
) -> Result<T, LinkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(LinkError::Socket)?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Socket)?;
        let driver = tokio::spawn(connection);
        let result = f(handle).await;
        driver.abort();
        result
    })
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(request(format!("looking up {name}"))(e).into()),
    }
}

/// Creates the bridge with the subnet's gateway address if needed, and brings it up.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    subnet: &SubnetEnv,
) -> Result<u32, LinkError> {
    if index_of(handle, name).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
        {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            other => other.map_err(request(format!("creating bridge {name}")))?,
        }
    }
    let index = index_of(handle, name)
        .await?
        .ok_or_else(|| LinkError::Missing(name.to_string()))?;
    match handle
        .address()
        .add(index, IpAddr::V4(subnet.gateway), subnet.prefix_len)
        .execute()
        .await
    {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
        other => other.map_err(request(format!(
            "adding {}/{} to {name}",
            subnet.gateway, subnet.prefix_len
        )))?,
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(request(format!("bringing {name} up")))?;
    Ok(index)
}

/// Creates the veth pair `host`/`peer`, plugs `host` into the bridge and brings it up.
pub async fn create_veth(
    handle: &Handle,
    host: &str,
    peer: &str,
    bridge: u32,
    mtu: u32,
) -> Result<(), LinkError> {
    handle
        .link()
        .add(LinkVeth::new(host, peer).mtu(mtu).build())
        .execute()
        .await
        .map_err(request(format!("creating veth {host}")))?;
    let index = index_of(handle, host)
        .await?
        .ok_or_else(|| LinkError::Missing(host.to_string()))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(request(format!("plugging {host} into the bridge")))?;
    Ok(())
}

/// Moves link `name` into the network namespace of `pid`.
pub async fn move_to_netns(handle: &Handle, name: &str, pid: i32) -> Result<(), LinkError> {
    let index = index_of(handle, name)
        .await?
        .ok_or_else(|| LinkError::Missing(name.to_string()))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .setns_by_pid(pid.cast_unsigned())
                .build(),
        )
        .execute()
        .await
        .map_err(request(format!("moving {name} into the container")))?;
    Ok(())
}

/// Deletes link `name` if it exists.
pub async fn delete(handle: &Handle, name: &str) -> Result<(), LinkError> {
    if let Some(index) = index_of(handle, name).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(request(format!("deleting {name}")))?;
    }
    Ok(())
}

/// Inside the container: renames `peer` to `eth0` with the overlay's MTU, gives it
/// `address`, brings it up and routes everything through the bridge.
pub async fn configure_inside(
    handle: &Handle,
    peer: &str,
    address: Ipv4Addr,
    subnet: &SubnetEnv,
) -> Result<(), LinkError> {
    let index = index_of(handle, peer)
        .await?
        .ok_or_else(|| LinkError::Missing(peer.to_string()))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .name("eth0".to_string())
                .build(),
        )
        .execute()
        .await
        .map_err(request("renaming the container interface to eth0"))?;
    let mtu = subnet.mtu;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(request(format!("setting the MTU of eth0 to {mtu}")))?;
    handle
        .address()
        .add(index, IpAddr::V4(address), subnet.prefix_len)
        .execute()
        .await
        .map_err(request(format!(
            "adding {address}/{} to eth0",
            subnet.prefix_len
        )))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(request("bringing eth0 up"))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(subnet.gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(request(format!(
            "adding the default route via {}",
            subnet.gateway
        )))?;
    Ok(())
}

/// Runs `f` with netlink opened inside the network namespace of `pid`, on a thread of
/// its own so the supervisor itself never changes namespace.
pub fn in_netns_of<T: Send + 'static>(
    pid: i32,
    f: impl AsyncFnOnce(Handle) -> Result<T, LinkError> + Send + 'static,
) -> Result<T, LinkError> {
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|source| LinkError::Setns { pid, source })?;
    std::thread::spawn(move || {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            LinkError::Setns {
                pid,
                source: e.into(),
            }
        })?;
        drop(netns);
        with_netlink(f)
    })
    .join()
    .unwrap_or_else(|_| Err(LinkError::Missing("netlink thread panicked".to_string())))
}
