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
#[cfg(test)]
mod fake;
mod kernel;
mod plan;
mod program;
mod tc;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::MulticastGroup;
use sinew_proto::mac::MacAddr;
use sinew_proto::overlay::{LOG_FAST_PATH_ON, LOG_FAST_PATH_UNAVAILABLE, LOG_FAST_PATH_WAITING};
use sinew_support::error_chain;
use sinew_support::netlink::NetlinkError;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use bpf::BpfError;
pub use kernel::{FastPathKernel, NetlinkBpf, Role};
pub use plan::{plan, FdbEntry, Link, LinkKind, Plan, Target};
pub use tc::TcError;

/// A full resync this often even without events, in case one was missed.
const RESYNC: Duration = Duration::from_secs(30);
/// Events this close together are handled with one resync.
const SETTLE: Duration = Duration::from_millis(20);

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
    #[error(transparent)]
    Dump(#[from] NetlinkError),
}

impl FastPathError {
    /// Whether this kernel cannot run the fast path at all (as opposed to a link that
    /// vanished between a listing and a request, which the next resync gets over).
    pub fn is_unsupported(&self) -> bool {
        match self {
            Self::Bpf(_) => true,
            // ENOENT here is a qdisc or classifier kind the kernel does not know.
            Self::Tc(error) => !matches!(error.errno, libc::ENODEV | libc::EPIPE),
            Self::Socket(_) | Self::Dump(_) => false,
        }
    }
}

/// What the fast path has put in place through a kernel, and how to change it.
#[derive(Debug)]
pub struct Reconciler<K> {
    kernel: K,
    /// The bridge and VXLAN device the loaded programs are for.
    loaded: Option<(u32, u32)>,
    /// Bumped at every load, so that each link gets the new programs.
    generation: u64,
    /// Links carrying our filter, with the generation of the program attached.
    attached: BTreeMap<u32, u64>,
    /// What the ports map holds.
    macs: BTreeMap<MacAddr, u32>,
    /// Whether "no bridge yet" was said since the last change.
    said_waiting: bool,
}

impl<K: FastPathKernel> Reconciler<K> {
    /// Nothing in place yet.
    pub fn new(kernel: K) -> Self {
        Self {
            kernel,
            loaded: None,
            generation: 0,
            attached: BTreeMap::new(),
            macs: BTreeMap::new(),
            said_waiting: false,
        }
    }

    /// Brings filters and the ports map in line with the plan for `target`.
    pub async fn reconcile(&mut self, target: Target) -> Result<(), FastPathError> {
        let (links, fdb) = self.kernel.tables().await?;
        let plan = plan(&target, &links, &fdb, &self.macs);
        let Some(bridge) = plan.bridge else {
            if !self.said_waiting {
                tracing::info!(
                    "{LOG_FAST_PATH_WAITING} for a bridge with an address in {}",
                    target.subnet
                );
                self.said_waiting = true;
            }
            self.stop().await;
            return Ok(());
        };
        self.said_waiting = false;
        if self.loaded != Some((bridge, target.vxlan)) {
            self.kernel.load(bridge, target.vxlan)?;
            self.loaded = Some((bridge, target.vxlan));
            self.generation += 1;
            tracing::info!(
                "{LOG_FAST_PATH_ON}: VXLAN device {} ⇄ container veths on bridge {bridge}, past the host's IP stack",
                target.vxlan
            );
        }
        let wanted: BTreeSet<u32> = plan.ports.iter().copied().chain([target.vxlan]).collect();
        let stale: Vec<u32> = self
            .attached
            .keys()
            .filter(|index| !wanted.contains(index))
            .copied()
            .collect();
        for index in stale {
            self.attached.remove(&index);
            self.kernel.detach(index).await?;
        }
        for &index in &wanted {
            if self.attached.get(&index) == Some(&self.generation) {
                continue;
            }
            let role = if index == target.vxlan {
                Role::Rx
            } else {
                Role::Tx
            };
            self.kernel.attach(index, role).await?;
            self.attached.insert(index, self.generation);
            tracing::debug!(link = index, program = role.name(), "fast path attached");
        }
        self.mirror(&plan.macs)
    }

    /// Detaches every filter and empties the map; traffic takes the kernel's path.
    pub async fn stop(&mut self) {
        for index in std::mem::take(&mut self.attached).into_keys() {
            if let Err(error) = self.kernel.detach(index).await {
                tracing::warn!("{}", error_chain(&error));
            }
        }
        for mac in std::mem::take(&mut self.macs).into_keys() {
            if let Err(error) = self.kernel.clear_port(mac) {
                tracing::warn!("{}", error_chain(&error));
            }
        }
        self.loaded = None;
    }

    /// Makes the ports map hold exactly `wanted`.
    fn mirror(&mut self, wanted: &BTreeMap<MacAddr, u32>) -> Result<(), FastPathError> {
        let gone: Vec<MacAddr> = self
            .macs
            .keys()
            .filter(|mac| !wanted.contains_key(mac))
            .copied()
            .collect();
        for mac in gone {
            self.kernel.clear_port(mac)?;
            self.macs.remove(&mac);
        }
        for (&mac, &port) in wanted {
            if self.macs.get(&mac) != Some(&port) {
                self.kernel.set_port(mac, port)?;
                self.macs.insert(mac, port);
                tracing::debug!(%mac, port, "fast path: container MAC behind port");
            }
        }
        Ok(())
    }
}

/// The fast path on this host: a [`Reconciler`] on the real kernel, driven by rtnetlink
/// events.
#[derive(Debug)]
pub struct FastPath {
    mode: Mode,
    events: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    driver: JoinHandle<()>,
    state: Reconciler<NetlinkBpf>,
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
            events,
            driver: tokio::spawn(connection),
            state: Reconciler::new(NetlinkBpf::new(handle)),
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
                if let Err(error) = self.state.reconcile(target).await {
                    if error.is_unsupported() {
                        self.state.stop().await;
                        if self.mode == Mode::On {
                            return Err(error);
                        }
                        tracing::warn!(
                            "{LOG_FAST_PATH_UNAVAILABLE} on this kernel, overlay traffic takes the kernel's path: {}",
                            error_chain(&error)
                        );
                        return std::future::pending().await;
                    }
                    tracing::warn!(
                        "updating the fast path failed, retrying at the next change: {}",
                        error_chain(&error)
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
        self.state.stop().await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::block_on;
    use fake::FakeKernel;

    const VXLAN: u32 = 3;
    const BRIDGE: u32 = 5;

    fn target() -> Target {
        Target {
            vxlan: VXLAN,
            subnet: "10.5.7.0/24".parse().expect("a subnet"),
        }
    }

    fn bridge(index: u32) -> Link {
        Link {
            index,
            kind: LinkKind::Bridge,
            master: None,
            peer_elsewhere: false,
            addresses: vec!["10.5.7.1".parse().expect("an address")],
        }
    }

    fn container_veth(index: u32, bridge: u32) -> Link {
        Link {
            index,
            kind: LinkKind::Veth,
            master: Some(bridge),
            peer_elsewhere: true,
            addresses: Vec::new(),
        }
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x0a, 0x58, 0, 0, 0, last])
    }

    fn learned(port: u32, last: u8) -> FdbEntry {
        FdbEntry {
            port,
            mac: mac(last),
            local: false,
        }
    }

    /// A host with the VXLAN device, the bridge and two containers on it.
    fn host() -> FakeKernel {
        FakeKernel {
            links: vec![
                Link {
                    index: VXLAN,
                    kind: LinkKind::Other,
                    master: None,
                    peer_elsewhere: false,
                    addresses: vec!["10.5.7.0".parse().expect("an address")],
                },
                bridge(BRIDGE),
                container_veth(6, BRIDGE),
                container_veth(10, BRIDGE),
            ],
            fdb: vec![learned(6, 0x16), learned(10, 0x1a)],
            ..FakeKernel::default()
        }
    }

    #[test]
    fn rx_goes_on_the_vxlan_device_tx_on_container_veths_and_the_fdb_into_the_map() {
        let mut fast = Reconciler::new(host());
        block_on(fast.reconcile(target())).expect("reconciled");
        let kernel = &fast.kernel;
        assert_eq!(kernel.loads, [(BRIDGE, VXLAN)]);
        assert_eq!(
            kernel.filters,
            BTreeMap::from([
                (VXLAN, (Role::Rx, 1)),
                (6, (Role::Tx, 1)),
                (10, (Role::Tx, 1))
            ])
        );
        assert_eq!(
            kernel.ports,
            BTreeMap::from([(mac(0x16), 6), (mac(0x1a), 10)])
        );
        // Nothing changed, nothing done.
        let before = fast.kernel.changes.len();
        block_on(fast.reconcile(target())).expect("reconciled");
        assert_eq!(fast.kernel.changes[before..], [] as [String; 0]);
    }

    #[test]
    fn a_leaving_veth_is_detached_and_a_new_bridge_reloads_everything() {
        let mut fast = Reconciler::new(host());
        block_on(fast.reconcile(target())).expect("reconciled");
        fast.kernel.links.retain(|link| link.index != 6);
        fast.kernel.fdb.retain(|entry| entry.port != 6);
        block_on(fast.reconcile(target())).expect("reconciled");
        assert_eq!(
            fast.kernel.filters.keys().copied().collect::<Vec<_>>(),
            [VXLAN, 10]
        );
        assert_eq!(fast.kernel.ports, BTreeMap::from([(mac(0x1a), 10)]));

        // The runtime made its bridge again: new index, the container back on it.
        fast.kernel.links = vec![bridge(11), container_veth(12, 11)];
        fast.kernel.fdb = vec![learned(12, 0x1a)];
        block_on(fast.reconcile(target())).expect("reconciled");
        assert_eq!(fast.kernel.loads, [(BRIDGE, VXLAN), (11, VXLAN)]);
        assert_eq!(
            fast.kernel.filters,
            BTreeMap::from([(VXLAN, (Role::Rx, 2)), (12, (Role::Tx, 2))])
        );
        assert_eq!(fast.kernel.ports, BTreeMap::from([(mac(0x1a), 12)]));
    }

    #[test]
    fn without_its_bridge_the_fast_path_steps_aside_until_one_is_back() {
        let mut fast = Reconciler::new(host());
        block_on(fast.reconcile(target())).expect("reconciled");
        fast.kernel.links.retain(|link| link.index != BRIDGE);
        block_on(fast.reconcile(target())).expect("reconciled");
        assert!(fast.kernel.filters.is_empty(), "{:?}", fast.kernel.filters);
        assert!(fast.kernel.ports.is_empty(), "{:?}", fast.kernel.ports);
        fast.kernel.links.push(bridge(BRIDGE));
        block_on(fast.reconcile(target())).expect("reconciled");
        assert_eq!(fast.kernel.loads.len(), 2);
        assert_eq!(fast.kernel.filters.len(), 3);
    }

    #[test]
    fn stopping_detaches_everything_and_empties_the_map() {
        let mut fast = Reconciler::new(host());
        block_on(fast.reconcile(target())).expect("reconciled");
        block_on(fast.stop());
        assert!(fast.kernel.filters.is_empty(), "{:?}", fast.kernel.filters);
        assert!(fast.kernel.ports.is_empty(), "{:?}", fast.kernel.ports);
    }

    #[test]
    fn a_vanished_link_is_retried_but_refused_programs_mean_no_fast_path() {
        let mut kernel = host();
        kernel.vanishing.insert(10);
        let mut fast = Reconciler::new(kernel);
        let error = block_on(fast.reconcile(target())).expect_err("link 10 vanished");
        assert!(!error.is_unsupported(), "{error}");
        fast.kernel.vanishing.clear();
        block_on(fast.reconcile(target())).expect("reconciled");
        assert!(fast.kernel.filters.contains_key(&10));

        let mut kernel = host();
        kernel.refuse_programs = true;
        let mut fast = Reconciler::new(kernel);
        let error = block_on(fast.reconcile(target())).expect_err("the verifier refused");
        assert!(error.is_unsupported(), "{error}");
        assert!(error_chain(&error).contains("invalid func unknown#155"));
        assert!(fast.kernel.filters.is_empty());
    }

    #[test]
    fn the_kernels_verifier_accepts_both_programs() {
        let map = bpf::HashMap::<6, 4>::create("sinew_test", 16).expect("creating a map (as root)");
        map.insert(&[0x0a, 0x58, 0, 0, 0, 1], &7u32.to_ne_bytes())
            .expect("writing an element");
        map.remove(&[0x0a, 0x58, 0, 0, 0, 1]).expect("removing it");
        map.remove(&[0x0a, 0x58, 0, 0, 0, 1])
            .expect("removing it again is fine");
        bpf::Program::load_classifier("sinew_rx", &program::rx(5, map.fd()))
            .unwrap_or_else(|error| panic!("{}", error_chain(&error)));
        bpf::Program::load_classifier("sinew_tx", &program::tx(3))
            .unwrap_or_else(|error| panic!("{}", error_chain(&error)));
    }

    #[test]
    fn a_program_the_verifier_rejects_is_explained() {
        // Reads r0 before anything set it.
        let Err(error) = bpf::Program::load_classifier("sinew_bad", &program::unset_r0()) else {
            panic!("the verifier accepted a program returning an unset register");
        };
        let text = error_chain(&error);
        assert!(text.contains("loading BPF program sinew_bad"), "{text}");
        assert!(text.contains("R0 !read_ok"), "{text}");
    }
}
