//! The kernel side of the fast path, behind a trait: the host's links and bridge FDB, the
//! programs and their ports map, the tc filters. [`NetlinkBpf`] is the real one (rtnetlink
//! and `bpf(2)`); unit tests use an in-memory fake.

use std::future::Future;
use std::net::IpAddr;

use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;
use sinew_proto::mac::MacAddr;
use sinew_support::netlink::{dump, neighbours};

use super::plan::{FdbEntry, Link, LinkKind};
use super::{bpf, program, tc, FastPathError};

/// Room for this many container MACs on the bridge.
const MAX_CONTAINERS: u32 = 16 * 1024;

/// Which of the two programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `sinew_rx`, for the VXLAN device.
    Rx,
    /// `sinew_tx`, for container veths.
    Tx,
}

impl Role {
    /// The program's name, as `tc filter show` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rx => "sinew_rx",
            Self::Tx => "sinew_tx",
        }
    }
}

/// The kernel operations the fast path needs.
pub trait FastPathKernel {
    /// The host's links (with their IPv4 addresses) and the bridge FDB.
    fn tables(&mut self)
        -> impl Future<Output = Result<(Vec<Link>, Vec<FdbEntry>), FastPathError>>;

    /// Loads both programs for `bridge` and `vxlan`; the ports map is made once and kept.
    fn load(&mut self, bridge: u32, vxlan: u32) -> Result<(), FastPathError>;

    /// Attaches the last loaded `role` program to link `index`'s ingress, replacing ours.
    fn attach(&mut self, index: u32, role: Role)
        -> impl Future<Output = Result<(), FastPathError>>;

    /// Removes our filter from link `index`; a link or filter already gone is fine.
    fn detach(&mut self, index: u32) -> impl Future<Output = Result<(), FastPathError>>;

    /// Puts `mac` behind `port` in the ports map.
    fn set_port(&mut self, mac: MacAddr, port: u32) -> Result<(), FastPathError>;

    /// Takes `mac` out of the ports map.
    fn clear_port(&mut self, mac: MacAddr) -> Result<(), FastPathError>;
}

/// The fast path on rtnetlink and `bpf(2)`.
#[derive(Debug)]
pub struct NetlinkBpf {
    handle: Handle,
    ports_map: Option<bpf::HashMap<6, 4>>,
    programs: Option<(bpf::Program, bpf::Program)>,
}

impl NetlinkBpf {
    /// Works through `handle`.
    pub fn new(handle: Handle) -> Self {
        Self {
            handle,
            ports_map: None,
            programs: None,
        }
    }
}

impl FastPathKernel for NetlinkBpf {
    async fn tables(&mut self) -> Result<(Vec<Link>, Vec<FdbEntry>), FastPathError> {
        let links: Vec<LinkMessage> =
            dump(self.handle.link().get().execute(), "listing links").await?;
        let addresses: Vec<_> =
            dump(self.handle.address().get().execute(), "listing addresses").await?;
        let fdb = neighbours(
            &self.handle,
            AddressFamily::Bridge,
            "listing the bridge FDB",
        )
        .await?;
        let links = links
            .iter()
            .map(|message| {
                let mut link = link_view(message);
                link.addresses = addresses
                    .iter()
                    .filter(|address| address.header.index == link.index)
                    .flat_map(|address| &address.attributes)
                    .filter_map(|attribute| match attribute {
                        AddressAttribute::Local(IpAddr::V4(local)) => Some(*local),
                        _ => None,
                    })
                    .collect();
                link
            })
            .collect();
        let fdb = fdb.iter().filter_map(fdb_entry).collect();
        Ok((links, fdb))
    }

    fn load(&mut self, bridge: u32, vxlan: u32) -> Result<(), FastPathError> {
        let map = match &self.ports_map {
            Some(map) => map,
            None => self
                .ports_map
                .insert(bpf::HashMap::create("sinew_ports", MAX_CONTAINERS)?),
        };
        let rx = bpf::Program::load_classifier(Role::Rx.name(), &program::rx(bridge, map.fd()))?;
        let tx = bpf::Program::load_classifier(Role::Tx.name(), &program::tx(vxlan))?;
        self.programs = Some((rx, tx));
        Ok(())
    }

    async fn attach(&mut self, index: u32, role: Role) -> Result<(), FastPathError> {
        let (rx, tx) = self
            .programs
            .as_ref()
            .expect("the fast path loads its programs before attaching them");
        let program = match role {
            Role::Rx => rx,
            Role::Tx => tx,
        };
        tc::ensure_clsact(&self.handle, index).await?;
        tc::attach(&self.handle, index, program, role.name()).await?;
        Ok(())
    }

    async fn detach(&mut self, index: u32) -> Result<(), FastPathError> {
        Ok(tc::detach(&self.handle, index).await?)
    }

    fn set_port(&mut self, mac: MacAddr, port: u32) -> Result<(), FastPathError> {
        let map = self.ports_map.as_ref().expect("made with the programs");
        Ok(map.insert(&mac.0, &port.to_ne_bytes())?)
    }

    fn clear_port(&mut self, mac: MacAddr) -> Result<(), FastPathError> {
        match &self.ports_map {
            Some(map) => Ok(map.remove(&mac.0)?),
            None => Ok(()),
        }
    }
}

fn link_view(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        kind: LinkKind::Other,
        master: None,
        peer_elsewhere: false,
        addresses: Vec::new(),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Controller(master) => link.master = Some(*master),
            LinkAttribute::LinkNetNsId(_) => link.peer_elsewhere = true,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Bridge) => link.kind = LinkKind::Bridge,
                        LinkInfo::Kind(InfoKind::Veth) => link.kind = LinkKind::Veth,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn fdb_entry(message: &NeighbourMessage) -> Option<FdbEntry> {
    let mac = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => MacAddr::from_slice(bytes),
            _ => None,
        })?;
    Some(FdbEntry {
        port: message.header.ifindex,
        mac,
        local: message.header.state == NeighbourState::Permanent,
    })
}
