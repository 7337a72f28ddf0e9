//! Keeping the kernel in step with the remote leases: the state wanted (for each remote
//! host a route, a permanent neighbour and an FDB entry; with DirectRouting, for a host on
//! the underlay's own segment only a route via its public IP through the underlay) is
//! computed from the leases, compared with what the kernel has, and only the difference
//! is applied, deletions first so that a changed MAC or address never leaves the old
//! entry behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use thiserror::Error;

use crate::dataplane::{Dataplane, DataplaneError, FdbEntry, Neighbour, Route};
use crate::ipv4net::Ipv4Net;
use crate::lease::{Lease, LeaseAttrs};

/// Applying the difference failed.
#[derive(Debug, Error)]
#[error("bringing the VXLAN device in step with the leases")]
pub struct SyncError(#[from] pub DataplaneError);

/// The underlay's part in the overlay: its routes into the overlay network are
/// overlayd's (DirectRouting's), and with DirectRouting on, hosts on its segment are
/// reached through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direct {
    /// The underlay's index.
    pub underlay: u32,
    /// The overlay network.
    pub network: Ipv4Net,
    /// The underlay's segment if DirectRouting is on.
    pub segment: Option<Ipv4Net>,
}

impl Direct {
    fn reaches(&self, public_ip: Ipv4Addr) -> bool {
        self.segment
            .is_some_and(|segment| segment.contains(public_ip))
    }
}

/// The entries the kernel should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Routes to remote subnets through the VXLAN device.
    pub routes: BTreeSet<Route>,
    /// Routes to remote subnets through the underlay (DirectRouting).
    pub direct: BTreeSet<Route>,
    /// Remote VTEP addresses and MACs.
    pub neighbours: BTreeSet<Neighbour>,
    /// Remote MACs and public IPs.
    pub fdb: BTreeSet<FdbEntry>,
}

/// The entries of one remote host.
fn entries(subnet: &Ipv4Net, attrs: &LeaseAttrs) -> (Route, Neighbour, FdbEntry) {
    let vtep = subnet.network();
    (
        Route {
            subnet: *subnet,
            gateway: vtep,
        },
        Neighbour {
            ip: vtep,
            mac: attrs.vtep_mac,
        },
        FdbEntry {
            mac: attrs.vtep_mac,
            remote: attrs.public_ip,
        },
    )
}

/// How many entries a reconciliation added and deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries added.
    pub added: usize,
    /// Entries deleted.
    pub deleted: usize,
}

/// A remote host came, went or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteChange {
    /// A new remote subnet.
    Added(Lease),
    /// A remote subnet whose host published new attributes.
    Changed(Lease),
    /// A remote subnet gone.
    Removed(Ipv4Net),
}

/// The remote leases known, and the device they are synced to.
#[derive(Debug, Clone)]
pub struct Syncer {
    device: u32,
    direct: Direct,
    own_subnet: Ipv4Net,
    own_ip: Ipv4Addr,
    remotes: BTreeMap<Ipv4Net, LeaseAttrs>,
}

impl Syncer {
    /// A syncer for `device` and the underlay, on the host holding `own_subnet` at
    /// `own_ip`.
    pub fn new(device: u32, direct: Direct, own_subnet: Ipv4Net, own_ip: Ipv4Addr) -> Self {
        Self {
            device,
            direct,
            own_subnet,
            own_ip,
            remotes: BTreeMap::new(),
        }
    }

    fn is_remote(&self, lease: &Lease) -> bool {
        lease.subnet != self.own_subnet && lease.attrs.public_ip != self.own_ip
    }

    /// Replaces the known leases with a full listing; returns what changed.
    pub fn replace_all(&mut self, leases: impl IntoIterator<Item = Lease>) -> Vec<RemoteChange> {
        let fresh: BTreeMap<Ipv4Net, LeaseAttrs> = leases
            .into_iter()
            .filter(|lease| self.is_remote(lease))
            .map(|lease| (lease.subnet, lease.attrs))
            .collect();
        let mut changes: Vec<RemoteChange> = self
            .remotes
            .keys()
            .filter(|subnet| !fresh.contains_key(subnet))
            .map(|subnet| RemoteChange::Removed(*subnet))
            .collect();
        for (subnet, attrs) in &fresh {
            let lease = Lease {
                subnet: *subnet,
                attrs: *attrs,
            };
            match self.remotes.get(subnet) {
                None => changes.push(RemoteChange::Added(lease)),
                Some(old) if old != attrs => changes.push(RemoteChange::Changed(lease)),
                Some(_) => {}
            }
        }
        self.remotes = fresh;
        changes
    }

    /// Records a lease written; `None` if nothing changed (or it is ours).
    pub fn put(&mut self, lease: Lease) -> Option<RemoteChange> {
        if !self.is_remote(&lease) {
            return None;
        }
        match self.remotes.insert(lease.subnet, lease.attrs) {
            None => Some(RemoteChange::Added(lease)),
            Some(old) if old != lease.attrs => Some(RemoteChange::Changed(lease)),
            Some(_) => None,
        }
    }

    /// Records a lease deleted or expired; `None` if it was not known.
    pub fn remove(&mut self, subnet: &Ipv4Net) -> Option<RemoteChange> {
        self.remotes
            .remove(subnet)
            .map(|_| RemoteChange::Removed(*subnet))
    }

    /// The entries the known leases call for.
    pub fn desired(&self) -> Desired {
        let mut desired = Desired::default();
        for (subnet, attrs) in &self.remotes {
            if self.direct.reaches(attrs.public_ip) {
                desired.direct.insert(Route {
                    subnet: *subnet,
                    gateway: attrs.public_ip,
                });
                continue;
            }
            let (route, neighbour, fdb) = entries(subnet, attrs);
            desired.routes.insert(route);
            desired.neighbours.insert(neighbour);
            desired.fdb.insert(fdb);
        }
        desired
    }

    /// Reads what the kernel holds and applies the difference to what it should hold.
    pub async fn reconcile<D: Dataplane>(&self, kernel: &mut D) -> Result<Applied, SyncError> {
        let desired = self.desired();
        let (device, underlay) = (self.device, self.direct.underlay);
        let mut applied = Applied::default();

        let routes = kernel.routes(device).await?;
        let mut direct = kernel.routes(underlay).await?;
        // Only routes into the overlay network are ours; the underlay carries others.
        direct.retain(|route| self.direct.network.contains_net(&route.subnet));
        let neighbours = kernel.neighbours(device).await?;
        let fdb = kernel.fdb(device).await?;
        let (add_routes, del_routes) = difference(&routes, &desired.routes);
        let (add_direct, del_direct) = difference(&direct, &desired.direct);
        let (add_neighbours, del_neighbours) = difference(&neighbours, &desired.neighbours);
        let (add_fdb, del_fdb) = difference(&fdb, &desired.fdb);

        for route in &del_routes {
            kernel.del_route(device, route).await?;
        }
        for route in &del_direct {
            kernel.del_route(underlay, route).await?;
        }
        for neighbour in &del_neighbours {
            kernel.del_neighbour(device, neighbour).await?;
        }
        for entry in &del_fdb {
            kernel.del_fdb(device, entry).await?;
        }
        applied.deleted =
            del_routes.len() + del_direct.len() + del_neighbours.len() + del_fdb.len();
        // Neighbour and FDB first, so that the route is usable the moment it appears.
        for neighbour in &add_neighbours {
            kernel.add_neighbour(device, neighbour).await?;
        }
        for entry in &add_fdb {
            kernel.add_fdb(device, entry).await?;
        }
        for route in &add_routes {
            kernel.add_route(device, route).await?;
        }
        for route in &add_direct {
            kernel.add_route(underlay, route).await?;
        }
        applied.added = add_routes.len() + add_direct.len() + add_neighbours.len() + add_fdb.len();
        Ok(applied)
    }
}

/// What to add (wanted, missing) and what to delete (present, unwanted).
fn difference<T: Ord + Copy>(present: &[T], wanted: &BTreeSet<T>) -> (Vec<T>, Vec<T>) {
    let present: BTreeSet<T> = present.iter().copied().collect();
    let add = wanted.difference(&present).copied().collect();
    let delete = present.difference(wanted).copied().collect();
    (add, delete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{FakeKernel, DEVICE, UNDERLAY};
    use crate::dataplane::DeviceSpec;
    use crate::test_support::block_on;
    use sinew_proto::mac::MacAddr;

    const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 9);

    fn lease(subnet: &str, host: u8, mac_tail: u8) -> Lease {
        Lease {
            subnet: subnet.parse().expect("a network"),
            attrs: LeaseAttrs {
                public_ip: Ipv4Addr::new(192, 168, 0, host),
                vtep_mac: MacAddr([0x0a, 0x58, 0, 0, 0, mac_tail]),
                vni: 1,
            },
        }
    }

    fn kernel() -> FakeKernel {
        FakeKernel {
            device: Some(DeviceSpec {
                name: "flannel.1".into(),
                vni: 1,
                local: ME,
                underlay: 2,
                port: 8472,
                mtu: 1450,
            }),
            ..FakeKernel::default()
        }
    }

    fn direct(on: bool) -> Direct {
        Direct {
            underlay: UNDERLAY,
            network: "10.5.0.0/16".parse().expect("a network"),
            segment: on.then(|| "192.168.0.0/24".parse().expect("a network")),
        }
    }

    fn syncer_with(direct: Direct) -> Syncer {
        Syncer::new(
            DEVICE,
            direct,
            "10.5.9.0/24".parse().expect("a network"),
            ME,
        )
    }

    fn syncer() -> Syncer {
        syncer_with(direct(false))
    }

    #[test]
    fn adds_route_neighbour_and_fdb_per_remote_but_not_for_us() {
        let mut kernel = kernel();
        let mut syncer = syncer();
        let changes = syncer.replace_all([
            lease("10.5.1.0/24", 1, 1),
            lease("10.5.2.0/24", 2, 2),
            lease("10.5.9.0/24", 9, 9),
        ]);
        assert_eq!(changes.len(), 2);
        let applied = block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(
            applied,
            Applied {
                added: 6,
                deleted: 0
            }
        );
        assert_eq!(
            kernel.changes,
            [
                "add neigh 10.5.1.0 lladdr 0a:58:00:00:00:01",
                "add neigh 10.5.2.0 lladdr 0a:58:00:00:00:02",
                "add fdb 0a:58:00:00:00:01 dst 192.168.0.1",
                "add fdb 0a:58:00:00:00:02 dst 192.168.0.2",
                "add route 10.5.1.0/24 via 10.5.1.0",
                "add route 10.5.2.0/24 via 10.5.2.0",
            ]
        );
        // In step: a second pass changes nothing.
        kernel.changes.clear();
        let applied = block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(applied, Applied::default());
        assert!(kernel.changes.is_empty());
    }

    #[test]
    fn removal_deletes_only_that_hosts_entries() {
        let mut kernel = kernel();
        let mut syncer = syncer();
        syncer.replace_all([lease("10.5.1.0/24", 1, 1), lease("10.5.2.0/24", 2, 2)]);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        kernel.changes.clear();
        let change = syncer.remove(&"10.5.1.0/24".parse().expect("a network"));
        assert!(matches!(change, Some(RemoteChange::Removed(_))));
        assert_eq!(
            syncer.remove(&"10.5.7.0/24".parse().expect("a network")),
            None
        );
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(
            kernel.changes,
            [
                "del route 10.5.1.0/24 via 10.5.1.0",
                "del neigh 10.5.1.0 lladdr 0a:58:00:00:00:01",
                "del fdb 0a:58:00:00:00:01 dst 192.168.0.1",
            ]
        );
        assert_eq!(kernel.routes.len(), 1);
        assert_eq!(kernel.neighbours.len(), 1);
        assert_eq!(kernel.fdb.len(), 1);
    }

    #[test]
    fn changed_mac_or_address_replaces_old_entries() {
        let mut kernel = kernel();
        let mut syncer = syncer();
        syncer.replace_all([lease("10.5.1.0/24", 1, 1)]);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        kernel.changes.clear();
        // The remote host re-created its device (new MAC) and moved (new public IP).
        let change = syncer.put(lease("10.5.1.0/24", 3, 4));
        assert!(matches!(change, Some(RemoteChange::Changed(_))));
        assert_eq!(syncer.put(lease("10.5.1.0/24", 3, 4)), None);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(
            kernel.changes,
            [
                "del neigh 10.5.1.0 lladdr 0a:58:00:00:00:01",
                "del fdb 0a:58:00:00:00:01 dst 192.168.0.1",
                "add neigh 10.5.1.0 lladdr 0a:58:00:00:00:04",
                "add fdb 0a:58:00:00:00:04 dst 192.168.0.3",
            ]
        );
        assert_eq!(
            kernel
                .neighbours
                .iter()
                .map(|n| n.mac.0[5])
                .collect::<Vec<_>>(),
            [4]
        );
    }

    #[test]
    fn resync_after_missed_events_converges_and_keeps_the_rest() {
        let mut kernel = kernel();
        let mut syncer = syncer();
        syncer.replace_all([lease("10.5.1.0/24", 1, 1), lease("10.5.2.0/24", 2, 2)]);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        // Something stale the daemon never learnt about is on the device too.
        kernel.routes.insert(Route {
            subnet: "10.5.8.0/24".parse().expect("a network"),
            gateway: Ipv4Addr::new(10, 5, 8, 0),
        });
        kernel.changes.clear();
        // While the watch was down, host 1 left and host 3 joined.
        let changes = syncer.replace_all([lease("10.5.2.0/24", 2, 2), lease("10.5.3.0/24", 3, 3)]);
        assert_eq!(changes.len(), 2);
        let applied = block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(
            applied,
            Applied {
                added: 3,
                deleted: 4
            }
        );
        let subnets: Vec<String> = kernel.routes.iter().map(|r| r.subnet.to_string()).collect();
        assert_eq!(subnets, ["10.5.2.0/24", "10.5.3.0/24"]);
        assert!(
            !kernel
                .changes
                .iter()
                .any(|change| change.contains("10.5.2.0")),
            "{:?}",
            kernel.changes
        );
    }

    fn route(subnet: &str, gateway: [u8; 4]) -> Route {
        Route {
            subnet: subnet.parse().expect("a network"),
            gateway: Ipv4Addr::from(gateway),
        }
    }

    #[test]
    fn direct_routing_routes_hosts_on_the_segment_through_the_underlay() {
        let mut kernel = kernel();
        // A route the underlay carries that is not the overlay's.
        let foreign = route("172.16.0.0/12", [192, 168, 0, 1]);
        kernel.direct_routes.insert(foreign);
        let mut syncer = syncer_with(direct(true));
        let mut far = lease("10.5.2.0/24", 2, 2);
        far.attrs.public_ip = Ipv4Addr::new(192, 168, 7, 2);
        syncer.replace_all([lease("10.5.1.0/24", 1, 1), far]);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(
            kernel.changes,
            [
                "add neigh 10.5.2.0 lladdr 0a:58:00:00:00:02",
                "add fdb 0a:58:00:00:00:02 dst 192.168.7.2",
                "add route 10.5.2.0/24 via 10.5.2.0",
                "add route 10.5.1.0/24 via 192.168.0.1 dev eth0",
            ]
        );
        assert!(kernel.direct_routes.contains(&foreign));
        kernel.changes.clear();
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert!(kernel.changes.is_empty(), "{:?}", kernel.changes);
    }

    #[test]
    fn turning_direct_routing_off_moves_hosts_back_to_vxlan() {
        let mut kernel = kernel();
        let foreign = route("172.16.0.0/12", [192, 168, 0, 1]);
        kernel.direct_routes.insert(foreign);
        let mut syncer = syncer_with(direct(true));
        syncer.replace_all([lease("10.5.1.0/24", 1, 1)]);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        kernel.changes.clear();
        let mut syncer = syncer_with(direct(false));
        syncer.replace_all([lease("10.5.1.0/24", 1, 1)]);
        block_on(syncer.reconcile(&mut kernel)).expect("synced");
        assert_eq!(
            kernel.changes,
            [
                "del route 10.5.1.0/24 via 192.168.0.1 dev eth0",
                "add neigh 10.5.1.0 lladdr 0a:58:00:00:00:01",
                "add fdb 0a:58:00:00:00:01 dst 192.168.0.1",
                "add route 10.5.1.0/24 via 10.5.1.0",
            ]
        );
        assert_eq!(kernel.direct_routes.iter().collect::<Vec<_>>(), [&foreign]);
    }
}
