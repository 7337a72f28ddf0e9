//! What the fast path should look like, worked out from the host's links and the bridge's
//! FDB: which bridge holds the containers, which of its ports are container veths, and
//! which MAC sits behind which port. Pure, so the rules are tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use sinew_proto::mac::MacAddr;

use crate::ipv4net::Ipv4Net;

/// Where the fast path works: this host's VXLAN device and subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The VXLAN device's index.
    pub vxlan: u32,
    /// The subnet leased to this host.
    pub subnet: Ipv4Net,
}

/// The kinds of link that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A bridge, where the container runtime plugs containers in.
    Bridge,
    /// One end of a veth pair.
    Veth,
    /// Anything else.
    Other,
}

/// A link, as far as the fast path cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its kind.
    pub kind: LinkKind,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    /// Whether its peer lives in another network namespace (a container's).
    pub peer_elsewhere: bool,
    /// Its IPv4 addresses.
    pub addresses: Vec<Ipv4Addr>,
}

/// A bridge FDB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    /// The port the MAC is behind.
    pub port: u32,
    /// The MAC.
    pub mac: MacAddr,
    /// The port's own address (`permanent`), rather than a learned or static neighbour.
    pub local: bool,
}

/// The fast path wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The bridge holding an address of the subnet; none means no fast path yet.
    pub bridge: Option<u32>,
    /// Its container ports: veths whose peer is in another namespace, the only links
    /// `bpf_redirect_peer` can cross.
    pub ports: BTreeSet<u32>,
    /// Container MAC → the port it sits behind.
    pub macs: BTreeMap<MacAddr, u32>,
}

/// Works out the plan for `target` from the host's links and the bridge FDB. `known` is
/// what the ports map holds now: a MAC stays behind its port while that port is on the
/// bridge, also after the bridge ages its FDB entry out, because with the fast path on a
/// container's frames no longer cross the bridge to refresh it. The FDB still wins when
/// it places a MAC elsewhere.
pub fn plan(
    target: &Target,
    links: &[Link],
    fdb: &[FdbEntry],
    known: &BTreeMap<MacAddr, u32>,
) -> Plan {
    let bridge = links.iter().find(|link| {
        link.kind == LinkKind::Bridge
            && link.index != target.vxlan
            && link
                .addresses
                .iter()
                .any(|&address| target.subnet.contains(address))
    });
    let Some(bridge) = bridge else {
        return Plan::default();
    };
    let ports: BTreeSet<u32> = links
        .iter()
        .filter(|link| {
            link.kind == LinkKind::Veth && link.master == Some(bridge.index) && link.peer_elsewhere
        })
        .map(|link| link.index)
        .collect();
    let mut macs = BTreeMap::new();
    for entry in fdb {
        if !entry.local && ports.contains(&entry.port) {
            macs.entry(entry.mac).or_insert(entry.port);
        }
    }
    for (&mac, &port) in known {
        if ports.contains(&port) {
            macs.entry(mac).or_insert(port);
        }
    }
    Plan {
        bridge: Some(bridge.index),
        ports,
        macs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VXLAN: u32 = 3;

    fn target() -> Target {
        Target {
            vxlan: VXLAN,
            subnet: "10.5.7.0/24".parse().expect("a subnet"),
        }
    }

    fn link(index: u32, kind: LinkKind, master: Option<u32>, addresses: &[&str]) -> Link {
        Link {
            index,
            kind,
            master,
            peer_elsewhere: kind == LinkKind::Veth,
            addresses: addresses
                .iter()
                .map(|address| address.parse().expect("an address"))
                .collect(),
        }
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x0a, 0x58, 0, 0, 0, last])
    }

    #[test]
    fn the_bridge_holding_the_subnets_gateway_and_its_container_veths_are_chosen() {
        let mut same_netns = link(9, LinkKind::Veth, Some(5), &[]);
        same_netns.peer_elsewhere = false;
        let links = [
            link(1, LinkKind::Other, None, &["127.0.0.1"]),
            // The VXLAN device holds the subnet's network address; it is not the bridge.
            link(VXLAN, LinkKind::Other, None, &["10.5.7.0"]),
            link(4, LinkKind::Bridge, None, &["172.17.0.1"]),
            link(5, LinkKind::Bridge, None, &["10.5.7.1"]),
            link(6, LinkKind::Veth, Some(5), &[]),
            link(7, LinkKind::Veth, Some(4), &[]),
            link(8, LinkKind::Other, Some(5), &[]),
            same_netns,
            link(10, LinkKind::Veth, Some(5), &[]),
        ];
        let fdb = [
            FdbEntry {
                port: 6,
                mac: mac(6),
                local: true,
            },
            FdbEntry {
                port: 6,
                mac: mac(0x16),
                local: false,
            },
            FdbEntry {
                port: 7,
                mac: mac(0x17),
                local: false,
            },
            FdbEntry {
                port: 8,
                mac: mac(0x18),
                local: false,
            },
            FdbEntry {
                port: 10,
                mac: mac(0x1a),
                local: false,
            },
        ];
        let plan = plan(&target(), &links, &fdb, &BTreeMap::new());
        assert_eq!(plan.bridge, Some(5));
        assert_eq!(plan.ports, BTreeSet::from([6, 10]));
        assert_eq!(plan.macs, BTreeMap::from([(mac(0x16), 6), (mac(0x1a), 10)]));
    }

    #[test]
    fn without_a_bridge_in_the_subnet_there_is_no_fast_path() {
        let links = [
            link(VXLAN, LinkKind::Bridge, None, &["10.5.7.0"]),
            link(4, LinkKind::Bridge, None, &["10.5.8.1"]),
            link(6, LinkKind::Veth, Some(4), &[]),
        ];
        let fdb = [FdbEntry {
            port: 6,
            mac: mac(0x16),
            local: false,
        }];
        assert_eq!(
            plan(&target(), &links, &fdb, &BTreeMap::new()),
            Plan::default()
        );
    }

    #[test]
    fn a_mac_stays_behind_its_port_until_the_port_goes_or_the_fdb_moves_it() {
        let links = [
            link(5, LinkKind::Bridge, None, &["10.5.7.1"]),
            link(6, LinkKind::Veth, Some(5), &[]),
            link(10, LinkKind::Veth, Some(5), &[]),
        ];
        let known = BTreeMap::from([
            // aged out of the FDB, port still there
            (mac(0x16), 6),
            // port 8 is gone
            (mac(0x18), 8),
            // the FDB now has it behind port 10
            (mac(0x1a), 6),
        ]);
        let fdb = [FdbEntry {
            port: 10,
            mac: mac(0x1a),
            local: false,
        }];
        let plan = plan(&target(), &links, &fdb, &known);
        assert_eq!(plan.macs, BTreeMap::from([(mac(0x16), 6), (mac(0x1a), 10)]));
    }
}
