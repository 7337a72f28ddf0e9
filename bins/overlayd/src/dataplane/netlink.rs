//! The real data plane: rtnetlink requests in the daemon's network namespace.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};
use sinew_proto::mac::MacAddr;
use sinew_support::netlink::{dump, neighbours, request};
use tokio::task::JoinHandle;

use super::{
    Dataplane, DataplaneError, Device, DeviceSpec, FdbEntry, IfaceSelector, Neighbour, Route,
    Underlay,
};
use crate::ipv4net::Ipv4Net;

/// The main routing table.
const MAIN_TABLE: u32 = 254;

/// rtnetlink on a connection of its own; the connection ends when this is dropped.
#[derive(Debug)]
pub struct Netlink {
    handle: Handle,
    driver: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The kernel's errno in a netlink error, if it is one.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(-message.raw_code()),
        _ => None,
    }
}

impl Netlink {
    /// Opens a netlink connection, driven by a task on the current tokio runtime.
    pub fn open() -> Result<Self, DataplaneError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(DataplaneError::Socket)?;
        Ok(Self {
            handle,
            driver: tokio::spawn(connection),
        })
    }

    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, DataplaneError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(error) if errno(&error) == Some(libc::ENODEV) => Ok(None),
            Err(error) => Err(request(format!("looking up link {name}"))(error).into()),
        }
    }

    async fn link_by_index(&self, index: u32) -> Result<LinkMessage, DataplaneError> {
        self.handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(request(format!("looking up link {index}")))?
            .ok_or_else(|| DataplaneError::Link(format!("link {index} does not exist")))
    }

    async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, DataplaneError> {
        let messages: Vec<_> = dump(
            self.handle
                .address()
                .get()
                .set_link_index_filter(index)
                .execute(),
            format!("listing the addresses of link {index}"),
        )
        .await?;
        Ok(messages
            .iter()
            .filter(|message| message.header.index == index)
            .filter_map(|message| {
                message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        AddressAttribute::Local(IpAddr::V4(address)) => {
                            Some((*address, message.header.prefix_len))
                        }
                        _ => None,
                    })
            })
            .collect())
    }

    async fn default_route_link(&self) -> Result<u32, DataplaneError> {
        let routes = self.ipv4_routes().await?;
        routes
            .iter()
            .filter(|route| {
                route.header.destination_prefix_length == 0 && table(route) == MAIN_TABLE
            })
            .find_map(|route| {
                route
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        RouteAttribute::Oif(index) => Some(*index),
                        _ => None,
                    })
            })
            .ok_or_else(|| DataplaneError::NoUnderlay("no default route; pass --iface".to_owned()))
    }

    /// The underlay on link `index`, with `wanted` as its address or else its first one.
    async fn underlay_of(
        &self,
        index: u32,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Underlay, DataplaneError> {
        let link = self.link_by_index(index).await?;
        let name = link_name(&link).unwrap_or_default();
        let (address, prefix_len) = self
            .ipv4_addresses(index)
            .await?
            .into_iter()
            .find(|(address, _)| wanted.is_none_or(|wanted| wanted == *address))
            .ok_or_else(|| DataplaneError::NoUnderlay(format!("{name} has no IPv4 address")))?;
        Ok(Underlay {
            index,
            mtu: link_mtu(&link).unwrap_or(1500),
            name,
            address,
            prefix_len,
        })
    }

    async fn ipv4_routes(&self) -> Result<Vec<RouteMessage>, DataplaneError> {
        Ok(dump(
            self.handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute(),
            "listing IPv4 routes",
        )
        .await?)
    }

    async fn create_device(&self, spec: &DeviceSpec) -> Result<(), DataplaneError> {
        let message = LinkVxlan::new(&spec.name, spec.vni)
            .dev(spec.underlay)
            .local(spec.local)
            .port(spec.port)
            .learning(false)
            .mtu(spec.mtu)
            .up()
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(request(format!("creating VXLAN device {}", spec.name)))?;
        Ok(())
    }
}

fn table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
}

fn link_mac(link: &LinkMessage) -> Option<MacAddr> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(bytes) => MacAddr::from_slice(bytes),
            _ => None,
        })
}

fn vxlan_info(link: &LinkMessage) -> Option<&[InfoVxlan]> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
                LinkInfo::Data(InfoData::Vxlan(vxlan)) => Some(vxlan.as_slice()),
                _ => None,
            }),
            _ => None,
        })
}

/// Whether an existing VXLAN device already is the one `spec` describes.
fn matches(link: &LinkMessage, spec: &DeviceSpec) -> bool {
    let Some(info) = vxlan_info(link) else {
        return false;
    };
    let has = |wanted: InfoVxlan| info.contains(&wanted);
    has(InfoVxlan::Id(spec.vni))
        && has(InfoVxlan::Local(spec.local))
        && has(InfoVxlan::Port(spec.port))
        && has(InfoVxlan::Link(spec.underlay))
        && has(InfoVxlan::Learning(false))
}

fn route_message(device: u32, route: &Route) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.subnet.network(), route.subnet.prefix_len())
        .gateway(route.gateway)
        .output_interface(device)
        .onlink()
        .build()
}

fn neighbour_message(family: AddressFamily, device: u32) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = device;
    message
}

fn lladdr(message: &NeighbourMessage) -> Option<MacAddr> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => MacAddr::from_slice(bytes),
            _ => None,
        })
}

/// The IPv4 destination of a neighbour or FDB entry; in a bridge-family (FDB) message
/// the parser does not know the address family, so it arrives as four raw bytes.
fn destination(message: &NeighbourMessage) -> Option<Ipv4Addr> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(address)) => Some(*address),
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(Ipv4Addr::from)
            }
            _ => None,
        })
}

/// Deleting what is already gone is success.
fn gone_is_fine(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(error)
            if matches!(
                errno(&error),
                Some(libc::ENOENT | libc::ESRCH | libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

impl Dataplane for Netlink {
    async fn underlay(&mut self, selector: &IfaceSelector) -> Result<Underlay, DataplaneError> {
        match selector {
            IfaceSelector::DefaultRoute => {
                let index = self.default_route_link().await?;
                self.underlay_of(index, None).await
            }
            IfaceSelector::Name(name) => {
                let link = self.link_by_name(name).await?.ok_or_else(|| {
                    DataplaneError::NoUnderlay(format!("no interface named {name}"))
                })?;
                self.underlay_of(link.header.index, None).await
            }
            IfaceSelector::Address(address) => {
                let messages: Vec<_> = dump(
                    self.handle
                        .address()
                        .get()
                        .set_address_filter(IpAddr::V4(*address))
                        .execute(),
                    format!("looking up address {address}"),
                )
                .await?;
                let index = messages
                    .iter()
                    .find(|message| {
                        message.attributes.iter().any(|attribute| {
                            matches!(attribute, AddressAttribute::Local(IpAddr::V4(local)) if local == address)
                        })
                    })
                    .map(|message| message.header.index)
                    .ok_or_else(|| DataplaneError::NoUnderlay(format!("no interface holds {address}")))?;
                self.underlay_of(index, Some(*address)).await
            }
        }
    }

    async fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<Device, DataplaneError> {
        match self.link_by_name(&spec.name).await? {
            Some(link) if matches(&link, spec) => {
                self.handle
                    .link()
                    .set(
                        LinkUnspec::new_with_index(link.header.index)
                            .mtu(spec.mtu)
                            .up()
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(request(format!("setting up {}", spec.name)))?;
                tracing::info!(device = %spec.name, "adopted the existing VXLAN device");
            }
            Some(link) => {
                tracing::warn!(device = %spec.name, "an existing link has other VXLAN settings; replacing it");
                self.handle
                    .link()
                    .del(link.header.index)
                    .execute()
                    .await
                    .map_err(request(format!("deleting the old {}", spec.name)))?;
                self.create_device(spec).await?;
            }
            None => self.create_device(spec).await?,
        }
        let link = self.link_by_name(&spec.name).await?.ok_or_else(|| {
            DataplaneError::Link(format!("{} vanished after creation", spec.name))
        })?;
        let mac = link_mac(&link)
            .ok_or_else(|| DataplaneError::Link(format!("{} has no MAC address", spec.name)))?;
        Ok(Device {
            index: link.header.index,
            mac,
        })
    }

    async fn delete_device(&mut self, name: &str) -> Result<(), DataplaneError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(());
        };
        Ok(
            gone_is_fine(self.handle.link().del(link.header.index).execute().await)
                .map_err(request(format!("deleting {name}")))?,
        )
    }

    async fn set_address(&mut self, device: u32, address: Ipv4Addr) -> Result<(), DataplaneError> {
        let mut present = false;
        for (existing, prefix_len) in self.ipv4_addresses(device).await? {
            if (existing, prefix_len) == (address, 32) {
                present = true;
                continue;
            }
            let messages: Vec<_> = dump(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(device)
                    .set_address_filter(IpAddr::V4(existing))
                    .execute(),
                format!("looking up {existing} on the VXLAN device"),
            )
            .await?;
            for message in messages {
                gone_is_fine(self.handle.address().del(message).execute().await)
                    .map_err(request(format!("removing the old address {existing}")))?;
            }
        }
        if !present {
            self.handle
                .address()
                .add(device, IpAddr::V4(address), 32)
                .execute()
                .await
                .map_err(request(format!("adding {address}/32 to the VXLAN device")))?;
        }
        Ok(())
    }

    async fn routes(&mut self, device: u32) -> Result<Vec<Route>, DataplaneError> {
        let routes = self.ipv4_routes().await?;
        Ok(routes
            .iter()
            .filter(|route| {
                table(route) == MAIN_TABLE
                    && route.header.protocol != RouteProtocol::Kernel
                    && route.header.kind == RouteType::Unicast
                    && route.attributes.contains(&RouteAttribute::Oif(device))
            })
            .filter_map(|route| {
                let mut destination = None;
                let mut gateway = None;
                for attribute in &route.attributes {
                    match attribute {
                        RouteAttribute::Destination(RouteAddress::Inet(address)) => {
                            destination = Some(*address)
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(address)) => {
                            gateway = Some(*address)
                        }
                        _ => {}
                    }
                }
                Some(Route {
                    subnet: Ipv4Net::new(destination?, route.header.destination_prefix_length)?,
                    gateway: gateway?,
                })
            })
            .collect())
    }

    async fn add_route(&mut self, device: u32, route: &Route) -> Result<(), DataplaneError> {
        self.handle
            .route()
            .add(route_message(device, route))
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "adding route {} via {}",
                route.subnet, route.gateway
            )))?;
        Ok(())
    }

    async fn del_route(&mut self, device: u32, route: &Route) -> Result<(), DataplaneError> {
        gone_is_fine(
            self.handle
                .route()
                .del(route_message(device, route))
                .execute()
                .await,
        )
        .map_err(request(format!(
            "deleting route {} via {}",
            route.subnet, route.gateway
        )))?;
        Ok(())
    }

    async fn neighbours(&mut self, device: u32) -> Result<Vec<Neighbour>, DataplaneError> {
        let messages = neighbours(&self.handle, AddressFamily::Inet, "listing neighbours").await?;
        Ok(messages
            .iter()
            .filter(|message| {
                message.header.ifindex == device
                    && message.header.state == NeighbourState::Permanent
            })
            .filter_map(|message| {
                Some(Neighbour {
                    ip: destination(message)?,
                    mac: lladdr(message)?,
                })
            })
            .collect())
    }

    async fn add_neighbour(
        &mut self,
        device: u32,
        neighbour: &Neighbour,
    ) -> Result<(), DataplaneError> {
        self.handle
            .neighbours()
            .add(device, IpAddr::V4(neighbour.ip))
            .link_layer_address(&neighbour.mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "adding neighbour {} lladdr {}",
                neighbour.ip, neighbour.mac
            )))?;
        Ok(())
    }

    async fn del_neighbour(
        &mut self,
        device: u32,
        neighbour: &Neighbour,
    ) -> Result<(), DataplaneError> {
        let mut message = neighbour_message(AddressFamily::Inet, device);
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                neighbour.ip,
            )));
        Ok(
            gone_is_fine(self.handle.neighbours().del(message).execute().await)
                .map_err(request(format!("deleting neighbour {}", neighbour.ip)))?,
        )
    }

    async fn fdb(&mut self, device: u32) -> Result<Vec<FdbEntry>, DataplaneError> {
        let messages = neighbours(&self.handle, AddressFamily::Bridge, "listing the FDB").await?;
        Ok(messages
            .iter()
            .filter(|message| message.header.ifindex == device)
            .filter_map(|message| {
                Some(FdbEntry {
                    mac: lladdr(message)?,
                    remote: destination(message)?,
                })
            })
            .collect())
    }

    async fn add_fdb(&mut self, device: u32, entry: &FdbEntry) -> Result<(), DataplaneError> {
        self.handle
            .neighbours()
            .add_bridge(device, &entry.mac.0)
            .flags(NeighbourFlags::Own)
            .destination(IpAddr::V4(entry.remote))
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "adding FDB entry {} dst {}",
                entry.mac, entry.remote
            )))?;
        Ok(())
    }

    async fn del_fdb(&mut self, device: u32, entry: &FdbEntry) -> Result<(), DataplaneError> {
        let mut message = neighbour_message(AddressFamily::Bridge, device);
        message.header.flags = NeighbourFlags::Own;
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(entry.mac.0.to_vec()));
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                entry.remote,
            )));
        Ok(
            gone_is_fine(self.handle.neighbours().del(message).execute().await).map_err(
                request(format!(
                    "deleting FDB entry {} dst {}",
                    entry.mac, entry.remote
                )),
            )?,
        )
    }
}
