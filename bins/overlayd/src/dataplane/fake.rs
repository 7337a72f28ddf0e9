//! An in-memory kernel for unit tests: one underlay, one VXLAN device, and sets of
//! routes (on either), neighbours and FDB entries, with a log of every change made.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use sinew_proto::mac::MacAddr;

use super::{
    Dataplane, DataplaneError, Device, DeviceSpec, FdbEntry, IfaceSelector, Neighbour, Route,
    Underlay,
};

/// The fake's device index.
pub const DEVICE: u32 = 7;
/// The fake underlay's index.
pub const UNDERLAY: u32 = 2;

/// A kernel in memory.
#[derive(Debug, Default)]
pub struct FakeKernel {
    /// The device, once ensured.
    pub device: Option<DeviceSpec>,
    /// Its address.
    pub address: Option<Ipv4Addr>,
    /// Routes through it.
    pub routes: BTreeSet<Route>,
    /// Routes through the underlay (DirectRouting's).
    pub direct_routes: BTreeSet<Route>,
    /// Its neighbours.
    pub neighbours: BTreeSet<Neighbour>,
    /// Its FDB.
    pub fdb: BTreeSet<FdbEntry>,
    /// Every change, as `add route …`, `del fdb …` and so on.
    pub changes: Vec<String>,
}

impl FakeKernel {
    fn check(&self, device: u32) -> Result<(), DataplaneError> {
        if device == DEVICE && self.device.is_some() {
            Ok(())
        } else {
            Err(DataplaneError::Link(format!("no device {device}")))
        }
    }

    /// The routes of `device` (the VXLAN device or the underlay) and how the log names it.
    fn routes_of(&mut self, device: u32) -> Result<(&mut BTreeSet<Route>, &str), DataplaneError> {
        if device == UNDERLAY {
            return Ok((&mut self.direct_routes, " dev eth0"));
        }
        self.check(device)?;
        Ok((&mut self.routes, ""))
    }
}

impl Dataplane for FakeKernel {
    async fn underlay(&mut self, selector: &IfaceSelector) -> Result<Underlay, DataplaneError> {
        let underlay = Underlay {
            index: UNDERLAY,
            name: "eth0".to_owned(),
            address: Ipv4Addr::new(192, 168, 0, 9),
            prefix_len: 24,
            mtu: 1500,
        };
        match selector {
            IfaceSelector::DefaultRoute => Ok(underlay),
            IfaceSelector::Name(name) if *name == underlay.name => Ok(underlay),
            IfaceSelector::Address(address) if *address == underlay.address => Ok(underlay),
            other => Err(DataplaneError::NoUnderlay(format!("{other:?}"))),
        }
    }

    async fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<Device, DataplaneError> {
        self.device = Some(spec.clone());
        Ok(Device {
            index: DEVICE,
            mac: MacAddr([0x0a, 0x58, 0, 0, 0, 9]),
        })
    }

    async fn delete_device(&mut self, name: &str) -> Result<(), DataplaneError> {
        if self
            .device
            .as_ref()
            .is_some_and(|device| device.name == name)
        {
            self.device = None;
            self.address = None;
            self.routes.clear();
            self.neighbours.clear();
            self.fdb.clear();
        }
        self.changes.push(format!("del link {name}"));
        Ok(())
    }

    async fn set_address(&mut self, device: u32, address: Ipv4Addr) -> Result<(), DataplaneError> {
        self.check(device)?;
        self.address = Some(address);
        Ok(())
    }

    async fn routes(&mut self, device: u32) -> Result<Vec<Route>, DataplaneError> {
        let (routes, _) = self.routes_of(device)?;
        Ok(routes.iter().copied().collect())
    }

    async fn add_route(&mut self, device: u32, route: &Route) -> Result<(), DataplaneError> {
        let (routes, dev) = self.routes_of(device)?;
        routes.insert(*route);
        let change = format!("add route {} via {}{dev}", route.subnet, route.gateway);
        self.changes.push(change);
        Ok(())
    }

    async fn del_route(&mut self, device: u32, route: &Route) -> Result<(), DataplaneError> {
        let (routes, dev) = self.routes_of(device)?;
        routes.remove(route);
        let change = format!("del route {} via {}{dev}", route.subnet, route.gateway);
        self.changes.push(change);
        Ok(())
    }

    async fn neighbours(&mut self, device: u32) -> Result<Vec<Neighbour>, DataplaneError> {
        self.check(device)?;
        Ok(self.neighbours.iter().copied().collect())
    }

    async fn add_neighbour(
        &mut self,
        device: u32,
        neighbour: &Neighbour,
    ) -> Result<(), DataplaneError> {
        self.check(device)?;
        self.changes.push(format!(
            "add neigh {} lladdr {}",
            neighbour.ip, neighbour.mac
        ));
        self.neighbours
            .retain(|existing| existing.ip != neighbour.ip);
        self.neighbours.insert(*neighbour);
        Ok(())
    }

    async fn del_neighbour(
        &mut self,
        device: u32,
        neighbour: &Neighbour,
    ) -> Result<(), DataplaneError> {
        self.check(device)?;
        self.changes.push(format!(
            "del neigh {} lladdr {}",
            neighbour.ip, neighbour.mac
        ));
        self.neighbours.remove(neighbour);
        Ok(())
    }

    async fn fdb(&mut self, device: u32) -> Result<Vec<FdbEntry>, DataplaneError> {
        self.check(device)?;
        Ok(self.fdb.iter().copied().collect())
    }

    async fn add_fdb(&mut self, device: u32, entry: &FdbEntry) -> Result<(), DataplaneError> {
        self.check(device)?;
        self.changes
            .push(format!("add fdb {} dst {}", entry.mac, entry.remote));
        self.fdb.insert(*entry);
        Ok(())
    }

    async fn del_fdb(&mut self, device: u32, entry: &FdbEntry) -> Result<(), DataplaneError> {
        self.check(device)?;
        self.changes
            .push(format!("del fdb {} dst {}", entry.mac, entry.remote));
        self.fdb.remove(entry);
        Ok(())
    }
}
