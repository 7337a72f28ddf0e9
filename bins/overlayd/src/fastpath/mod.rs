//! The eBPF fast path between the overlay and the containers on this host.
//!
//! Without it, a packet between a container and the VXLAN device crosses the host's IP
//! stack, the bridge and the container's veth backlog, each a queue and a lookup. With it,
//! two tc programs (see [`program`]) forward such packets directly, still by the kernel's
//! FIB and neighbour tables, so routes, ARP and the VXLAN device's FDB that overlayd keeps
//! stay the single source of truth. Nothing changes on the wire.
//!
//! overlayd keeps it in step with the host: it finds the bridge holding an address of the
//! leased subnet (what flannel's CNI bridge plugin and sinew's runner both make), attaches
//! `tx` to each container veth on it, `rx` to the VXLAN device, and mirrors the bridge's
//! FDB into the ports map (see [`plan`] for why entries outlive the bridge's ageing);
//! rtnetlink events (links, addresses, FDB) trigger a resync. A
//! packet the programs cannot place (no FDB entry yet, no resolved neighbour, TTL spent,
//! anything not IPv4) takes the kernel's path as before.
//!
//! Traffic it forwards does not pass the host's netfilter hooks, as with any tc redirect.

mod bpf;
mod plan;
mod program;
mod tc;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, MulticastGroup};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use bpf::BpfError;
pub use plan::{plan, FdbEntry, Link, LinkKind, Plan, Target};
pub use tc::TcError;

use crate::mac::Mac;

/// The start of the log line saying the programs are loaded and being attached.
pub const LOG_ON: &str = "fast path on";
/// The start of the log line saying there is no bridge to work with yet.
pub const LOG_WAITING: &str = "fast path waiting";
/// The start of the log line saying this kernel cannot run it (under `auto`).
pub const LOG_UNAVAILABLE: &str = "fast path unavailable";

/// A full resync this often even without events, in case one was missed.
const RESYNC: Duration = Duration::from_secs(30);
/// Events this close together are handled with one resync.
const SETTLE: Duration = Duration::from_millis(20);
/// Room for this many container MACs on the bridge.
const MAX_CONTAINERS: u32 = 16 * 1024;

/// `--fast-path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Use it if the kernel can (BPF, cls_bpf, the redirect helpers); otherwise say so and
    /// stay on the kernel's path.
    Auto,
    /// Use it, and fail if the kernel cannot.
    On,
    /// Leave all traffic to the kernel's path.
    Off,
}

/// The fast path could not be set up.
#[derive(Debug, Error)]
pub enum FastPathError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket for the fast path")]
    Socket(#[source] std::io::Error),
    /// A program or the map could not be loaded.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// A qdisc or filter was refused.
    #[error(transparent)]
    Tc(#[from] TcError),
    /// Listing links, addresses or the FDB failed.
    #[error("{what}")]
    Dump {
        /// What was being listed.
        what: &'static str,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
}

impl FastPathError {
    /// Whether this kernel cannot run the fast path at all (as opposed to a link that
    /// vanished between a listing and a request, which the next resync gets over).
    fn is_unsupported(&self) -> bool {
        match self {
            Self::Bpf(_) => true,
            // ENOENT here is a qdisc or classifier kind the kernel does not know.
            Self::Tc(error) => !matches!(error.errno, libc::ENODEV | libc::EPIPE),
            Self::Socket(_) | Self::Dump { .. } => false,
        }
    }
}

/// The programs loaded for one bridge and VXLAN device.
#[derive(Debug)]
struct Loaded {
    bridge: u32,
    vxlan: u32,
    rx: bpf::Program,
    tx: bpf::Program,
    /// Bumped at every load, so that each link gets the new programs.
    generation: u64,
}

/// The fast path's state on this host.
#[derive(Debug)]
pub struct FastPath {
    mode: Mode,
    handle: Handle,
    events: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    driver: JoinHandle<()>,
    ports_map: Option<bpf::HashMap<6, 4>>,
    loaded: Option<Loaded>,
    /// Links carrying our filter, with the generation of the program attached.
    attached: BTreeMap<u32, u64>,
    /// What the ports map holds.
    macs: BTreeMap<Mac, u32>,
    /// Whether "no bridge yet" was said since the last change.
    said_waiting: bool,
}

impl Drop for FastPath {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl FastPath {
    /// Opens the netlink connection the fast path listens and works on, unless `mode` is
    /// `off`.
    pub fn open(mode: Mode) -> Result<Option<Self>, FastPathError> {
        if mode == Mode::Off {
            return Ok(None);
        }
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Neigh,
            MulticastGroup::Ipv4Ifaddr,
        ];
        let (connection, handle, events) =
            rtnetlink::new_multicast_connection(&groups).map_err(FastPathError::Socket)?;
        Ok(Some(Self {
            mode,
            handle,
            events,
            driver: tokio::spawn(connection),
            ports_map: None,
            loaded: None,
            attached: BTreeMap::new(),
            macs: BTreeMap::new(),
            said_waiting: false,
        }))
    }

    /// Keeps the fast path in step with `targets` (what the daemon holds) and the host's
    /// links until dropped. Returns only if the kernel cannot run it and the mode is `on`;
    /// under `auto` it then detaches itself and stays idle.
    pub async fn run(
        &mut self,
        mut targets: watch::Receiver<Option<Target>>,
    ) -> Result<Infallible, FastPathError> {
        loop {
            let target = *targets.borrow_and_update();
            if let Some(target) = target {
                if let Err(error) = self.reconcile(target).await {
                    if error.is_unsupported() {
                        self.stop().await;
                        if self.mode == Mode::On {
                            return Err(error);
                        }
                        tracing::warn!(
                            "{LOG_UNAVAILABLE} on this kernel, overlay traffic takes the kernel's path: {}",
                            crate::error_chain(&error)
                        );
                        return std::future::pending().await;
                    }
                    tracing::warn!(
                        "updating the fast path failed, retrying at the next change: {}",
                        crate::error_chain(&error)
                    );
                }
            }
            tokio::select! {
                changed = targets.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                }
                event = self.events.next() => {
                    if event.is_none() {
                        return Err(FastPathError::Socket(std::io::Error::other("the netlink connection closed")));
                    }
                    if !event.is_some_and(|(message, _)| relevant(&message)) {
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while self.events.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    /// Detaches every filter and empties the map; traffic takes the kernel's path.
    pub async fn stop(&mut self) {
        for index in std::mem::take(&mut self.attached).into_keys() {
            if let Err(error) = tc::detach(&self.handle, index).await {
                tracing::warn!("{error}");
            }
        }
        if let Some(map) = &self.ports_map {
            for mac in std::mem::take(&mut self.macs).into_keys() {
                if let Err(error) = map.remove(&mac.0) {
                    tracing::warn!("{}", crate::error_chain(&error));
                }
            }
        }
        self.loaded = None;
    }

    /// Brings filters and the ports map in line with the plan for `target`.
    async fn reconcile(&mut self, target: Target) -> Result<(), FastPathError> {
        let (links, fdb) = self.tables().await?;
        let plan = plan(&target, &links, &fdb, &self.macs);
        let Some(bridge) = plan.bridge else {
            if !self.said_waiting {
                tracing::info!(
                    "{LOG_WAITING} for a bridge with an address in {}",
                    target.subnet
                );
                self.said_waiting = true;
            }
            self.stop().await;
            return Ok(());
        };
        self.said_waiting = false;
        let generation = self.load(bridge, target.vxlan)?;
        let wanted: BTreeSet<u32> = plan.ports.iter().copied().chain([target.vxlan]).collect();
        let stale: Vec<u32> = self
            .attached
            .keys()
            .filter(|index| !wanted.contains(index))
            .copied()
            .collect();
        for index in stale {
            self.attached.remove(&index);
            tc::detach(&self.handle, index).await?;
        }
        for &index in &wanted {
            if self.attached.get(&index) == Some(&generation) {
                continue;
            }
            let loaded = self.loaded.as_ref().expect("loaded above");
            let (program, name) = if index == target.vxlan {
                (&loaded.rx, "sinew_rx")
            } else {
                (&loaded.tx, "sinew_tx")
            };
            tc::ensure_clsact(&self.handle, index).await?;
            tc::attach(&self.handle, index, program, name).await?;
            self.attached.insert(index, generation);
            tracing::debug!(link = index, program = name, "fast path attached");
        }
        self.mirror(&plan.macs)?;
        Ok(())
    }

    /// Loads the programs for `bridge` and `vxlan` unless they already are; returns their
    /// generation.
    fn load(&mut self, bridge: u32, vxlan: u32) -> Result<u64, FastPathError> {
        if let Some(loaded) = &self.loaded {
            if (loaded.bridge, loaded.vxlan) == (bridge, vxlan) {
                return Ok(loaded.generation);
            }
        }
        let map = match &self.ports_map {
            Some(map) => map,
            None => self
                .ports_map
                .insert(bpf::HashMap::create("sinew_ports", MAX_CONTAINERS)?),
        };
        let rx = bpf::Program::load_classifier("sinew_rx", &program::rx(bridge, map.fd()))?;
        let tx = bpf::Program::load_classifier("sinew_tx", &program::tx(vxlan))?;
        let generation = self
            .loaded
            .as_ref()
            .map_or(1, |loaded| loaded.generation + 1);
        tracing::info!(
            "{LOG_ON}: VXLAN device {vxlan} ⇄ container veths on bridge {bridge}, past the host's IP stack"
        );
        self.loaded = Some(Loaded {
            bridge,
            vxlan,
            rx,
            tx,
            generation,
        });
        Ok(generation)
    }

    /// Makes the ports map hold exactly `wanted`.
    fn mirror(&mut self, wanted: &BTreeMap<Mac, u32>) -> Result<(), FastPathError> {
        let map = self.ports_map.as_ref().expect("created with the programs");
        let gone: Vec<Mac> = self
            .macs
            .keys()
            .filter(|mac| !wanted.contains_key(mac))
            .copied()
            .collect();
        for mac in gone {
            map.remove(&mac.0)?;
            self.macs.remove(&mac);
        }
        for (&mac, &port) in wanted {
            if self.macs.get(&mac) != Some(&port) {
                map.insert(&mac.0, &port.to_ne_bytes())?;
                self.macs.insert(mac, port);
                tracing::debug!(%mac, port, "fast path: container MAC behind port");
            }
        }
        Ok(())
    }

    /// The host's links (with their IPv4 addresses) and the bridge FDB.
    async fn tables(&self) -> Result<(Vec<Link>, Vec<FdbEntry>), FastPathError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| FastPathError::Dump {
                what: "listing links",
                source,
            })?;
        let addresses: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| FastPathError::Dump {
                what: "listing addresses",
                source,
            })?;
        let neighbours: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(|source| FastPathError::Dump {
                what: "listing the bridge FDB",
                source,
            })?;
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
        let fdb = neighbours.iter().filter_map(fdb_entry).collect();
        Ok((links, fdb))
    }
}

/// Whether a netlink event can change the plan: links, addresses and bridge FDB entries
/// do; IP neighbour (ARP) churn does not, as the programs read those tables live.
fn relevant(message: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    match &message.payload {
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewNeighbour(neighbour)
            | RouteNetlinkMessage::DelNeighbour(neighbour),
        ) => neighbour.header.family == AddressFamily::Bridge,
        NetlinkPayload::InnerMessage(_) => true,
        _ => false,
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
            NeighbourAttribute::LinkLayerAddress(bytes) => Mac::from_slice(bytes),
            _ => None,
        })?;
    Some(FdbEntry {
        port: message.header.ifindex,
        mac,
        local: message.header.state == NeighbourState::Permanent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_verifier_accepts_both_programs() {
        let map = bpf::HashMap::<6, 4>::create("sinew_test", 16).expect("creating a map (as root)");
        map.insert(&[0x0a, 0x58, 0, 0, 0, 1], &7u32.to_ne_bytes())
            .expect("writing an element");
        map.remove(&[0x0a, 0x58, 0, 0, 0, 1]).expect("removing it");
        map.remove(&[0x0a, 0x58, 0, 0, 0, 1])
            .expect("removing it again is fine");
        bpf::Program::load_classifier("sinew_rx", &program::rx(5, map.fd()))
            .unwrap_or_else(|error| panic!("{}", crate::error_chain(&error)));
        bpf::Program::load_classifier("sinew_tx", &program::tx(3))
            .unwrap_or_else(|error| panic!("{}", crate::error_chain(&error)));
    }

    #[test]
    fn a_program_the_verifier_rejects_is_explained() {
        // Reads r0 before anything set it.
        let Err(error) = bpf::Program::load_classifier("sinew_bad", &program::unset_r0()) else {
            panic!("the verifier accepted a program returning an unset register");
        };
        let text = crate::error_chain(&error);
        assert!(text.contains("loading BPF program sinew_bad"), "{text}");
        assert!(text.contains("R0 !read_ok"), "{text}");
    }
}
