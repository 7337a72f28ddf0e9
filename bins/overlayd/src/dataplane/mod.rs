//! The kernel side of the overlay, behind a trait: the underlay interface, the VXLAN
//! device, and on that device the routes, permanent neighbours (ARP) and FDB entries
//! that reach each remote host. [`Netlink`] is the real implementation (rtnetlink only);
//! unit tests use an in-memory fake.

mod netlink;

#[cfg(test)]
pub mod fake;

use std::future::Future;
use std::net::Ipv4Addr;

use sinew_proto::mac::MacAddr;
use sinew_support::netlink::NetlinkError;
use thiserror::Error;

use crate::ipv4net::Ipv4Net;

pub use netlink::Netlink;

/// A kernel request failed.
#[derive(Debug, Error)]
pub enum DataplaneError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    /// The kernel refused a request.
    #[error(transparent)]
    Request(#[from] NetlinkError),
    /// No interface matches `--iface` (or none holds the default route).
    #[error("no underlay interface: {0}")]
    NoUnderlay(String),
    /// A link disappeared or lacks what it should have.
    #[error("{0}")]
    Link(String),
}

/// Which interface carries the VXLAN traffic (flannel's `--iface`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceSelector {
    /// The interface of the default route.
    DefaultRoute,
    /// An interface by name.
    Name(String),
    /// The interface holding this address.
    Address(Ipv4Addr),
}

impl IfaceSelector {
    /// `--iface`: an address if it parses as one, else a name; none means the default route.
    pub fn from_flag(flag: Option<&str>) -> Self {
        match flag {
            None | Some("") => Self::DefaultRoute,
            Some(text) => text
                .parse()
                .map_or_else(|_| Self::Name(text.to_owned()), Self::Address),
        }
    }
}

/// The interface VXLAN packets leave by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its IPv4 address (the VXLAN source address).
    pub address: Ipv4Addr,
    /// That address's prefix length.
    pub prefix_len: u8,
    /// Its MTU.
    pub mtu: u32,
}

impl Underlay {
    /// The L2 segment the underlay is on: hosts with a public IP in it are reachable
    /// without a gateway (where DirectRouting needs no VXLAN).
    pub fn segment(&self) -> Ipv4Net {
        Ipv4Net::new(self.address, self.prefix_len.min(32)).expect("a prefix of at most 32")
    }
}

/// The VXLAN device wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Its name (`flannel.<VNI>`).
    pub name: String,
    /// The VNI.
    pub vni: u32,
    /// The source address of encapsulated packets.
    pub local: Ipv4Addr,
    /// The underlay interface index.
    pub underlay: u32,
    /// The UDP port.
    pub port: u16,
    /// Its MTU: the underlay's minus the VXLAN overhead.
    pub mtu: u32,
}

/// The VXLAN device as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// Its index.
    pub index: u32,
    /// Its MAC, published as the lease's VtepMAC.
    pub mac: MacAddr,
}

/// A route to a remote subnet, on-link through a device: via the remote VTEP address
/// through the VXLAN device, or (DirectRouting) via the remote public IP through the
/// underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The remote subnet.
    pub subnet: Ipv4Net,
    /// The remote VTEP address (the subnet's network address), or the remote public IP.
    pub gateway: Ipv4Addr,
}

/// A permanent ARP entry: the remote VTEP address has the remote device's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    /// The remote VTEP address.
    pub ip: Ipv4Addr,
    /// The remote device's MAC.
    pub mac: MacAddr,
}

/// An FDB entry: frames for the remote device's MAC go to the remote host's public IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    /// The remote device's MAC.
    pub mac: MacAddr,
    /// The remote host's public IP.
    pub remote: Ipv4Addr,
}

/// The kernel operations the overlay needs.
pub trait Dataplane {
    /// Finds the underlay interface.
    fn underlay(
        &mut self,
        selector: &IfaceSelector,
    ) -> impl Future<Output = Result<Underlay, DataplaneError>>;

    /// Creates the VXLAN device, or adopts an existing one that matches `spec` (one that
    /// does not is replaced), and brings it up.
    fn ensure_device(
        &mut self,
        spec: &DeviceSpec,
    ) -> impl Future<Output = Result<Device, DataplaneError>>;

    /// Deletes the link named `name`, with everything on it; one already gone is fine.
    fn delete_device(&mut self, name: &str) -> impl Future<Output = Result<(), DataplaneError>>;

    /// Gives the device `address/32` as its only IPv4 address.
    fn set_address(
        &mut self,
        device: u32,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<(), DataplaneError>>;

    /// The routes via a gateway through the device.
    fn routes(&mut self, device: u32) -> impl Future<Output = Result<Vec<Route>, DataplaneError>>;

    /// Adds a route through the device.
    fn add_route(
        &mut self,
        device: u32,
        route: &Route,
    ) -> impl Future<Output = Result<(), DataplaneError>>;

    /// Deletes a route through the device.
    fn del_route(
        &mut self,
        device: u32,
        route: &Route,
    ) -> impl Future<Output = Result<(), DataplaneError>>;

    /// The permanent neighbours of the device.
    fn neighbours(
        &mut self,
        device: u32,
    ) -> impl Future<Output = Result<Vec<Neighbour>, DataplaneError>>;

    /// Adds (or replaces) a permanent neighbour.
    fn add_neighbour(
        &mut self,
        device: u32,
        neighbour: &Neighbour,
    ) -> impl Future<Output = Result<(), DataplaneError>>;

    /// Deletes a neighbour.
    fn del_neighbour(
        &mut self,
        device: u32,
        neighbour: &Neighbour,
    ) -> impl Future<Output = Result<(), DataplaneError>>;

    /// The FDB entries of the device that point at a remote address.
    fn fdb(&mut self, device: u32) -> impl Future<Output = Result<Vec<FdbEntry>, DataplaneError>>;

    /// Adds (or replaces) an FDB entry.
    fn add_fdb(
        &mut self,
        device: u32,
        entry: &FdbEntry,
    ) -> impl Future<Output = Result<(), DataplaneError>>;

    /// Deletes an FDB entry.
    fn del_fdb(
        &mut self,
        device: u32,
        entry: &FdbEntry,
    ) -> impl Future<Output = Result<(), DataplaneError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_flag_is_a_name_or_an_address() {
        assert_eq!(IfaceSelector::from_flag(None), IfaceSelector::DefaultRoute);
        assert_eq!(
            IfaceSelector::from_flag(Some("eth0")),
            IfaceSelector::Name("eth0".into())
        );
        assert_eq!(
            IfaceSelector::from_flag(Some("10.213.0.11")),
            IfaceSelector::Address(Ipv4Addr::new(10, 213, 0, 11))
        );
    }
}
