//! The daemon: wait for a valid network config, set up the VXLAN device, acquire a
//! subnet, publish `subnet.env`, then keep the device in step with the other hosts'
//! leases and keep our own lease alive, until the process is stopped.
//!
//! Failures of the KV store or the kernel are logged and retried; only settings that can
//! never work end the daemon. Stopping it (dropping [`run`]'s future) leaves the device,
//! its entries and the lease in place, so that a restart finds its subnet again.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sinew_proto::kv::{
    prefix_end, AtRevision as _, EventType, KvClient, KvClientError, RangeRequest, Watch,
    WatchBatch, WatchCreateRequest,
};
use sinew_proto::overlay::{Ipv4Cidr, SubnetEnv};
use sinew_support::error_chain;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::alloc::{AllocError, Allocator, Held};
use crate::config::NetworkConfig;
use crate::dataplane::{Dataplane, DataplaneError, Device, DeviceSpec, IfaceSelector, Underlay};
use crate::fastpath::Target;
use crate::ipv4net::Ipv4Net;
use crate::lease::{self, Lease, LeaseAttrs};
use crate::sync::{Direct, RemoteChange, Syncer};

/// The VXLAN overhead: outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8 bytes.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The longest pause between retries.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// What the daemon needs to know (flannel's flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// KV endpoints, `http://host:port`.
    pub endpoints: Vec<String>,
    /// The key prefix (`/coreos.com/network`).
    pub prefix: String,
    /// The underlay interface.
    pub iface: IfaceSelector,
    /// The address published to other hosts; the interface's address if `None`.
    pub public_ip: Option<Ipv4Addr>,
    /// Where `subnet.env` goes.
    pub subnet_file: PathBuf,
    /// How long a subnet lease lives without renewal.
    pub lease_ttl: Duration,
    /// Renew the lease when it has less than this left.
    pub renew_margin: Duration,
}

/// Why the daemon cannot run at all.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The renewal margin leaves no time before expiry.
    #[error("--subnet-lease-renew-margin ({margin:?}) must be shorter than --subnet-lease-ttl ({ttl:?})")]
    Margin {
        /// The margin.
        margin: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// The KV endpoints are unusable.
    #[error("--etcd-endpoints")]
    Endpoints(#[source] KvClientError),
    /// The underlay interface cannot be found.
    #[error("--iface")]
    Underlay(#[source] DataplaneError),
}

/// Runs `attempt` until it succeeds, logging each failure, with growing pauses.
async fn retrying<T, E: StdError>(what: &str, mut attempt: impl AsyncFnMut() -> Result<T, E>) -> T {
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::warn!(
                    "{what} failed, retrying in {pause:?}: {}",
                    error_chain(&error)
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// Runs the daemon with `kernel` until the future is dropped; `fast_path` learns each
/// VXLAN device and subnet as they are set up.
pub async fn run<D: Dataplane>(
    settings: &Settings,
    kernel: &mut D,
    fast_path: &watch::Sender<Option<Target>>,
) -> Result<Infallible, DaemonError> {
    if settings.renew_margin >= settings.lease_ttl {
        return Err(DaemonError::Margin {
            margin: settings.renew_margin,
            ttl: settings.lease_ttl,
        });
    }
    let kv = KvClient::new(settings.endpoints.clone()).map_err(DaemonError::Endpoints)?;
    let underlay = kernel
        .underlay(&settings.iface)
        .await
        .map_err(DaemonError::Underlay)?;
    let public_ip = settings.public_ip.unwrap_or(underlay.address);
    tracing::info!(
        "underlay interface {} ({}, MTU {}), public IP {public_ip}",
        underlay.name,
        underlay.address,
        underlay.mtu
    );
    let mut config = wait_for_config(&kv, &settings.prefix).await;
    loop {
        let old_device = device_name(&config.0);
        let overlay = Overlay::start(
            settings, &kv, kernel, fast_path, &underlay, public_ip, config,
        )
        .await;
        config = overlay.serve().await;
        if device_name(&config.0) != old_device {
            // A new VNI means a new device; the old one would keep its address and its
            // neighbour and FDB entries for nothing.
            retrying("deleting the old VXLAN device", async || {
                kernel.delete_device(&old_device).await
            })
            .await;
            tracing::info!("deleted {old_device}, the device of the previous VNI");
        }
    }
}

/// The VXLAN device's name under `config`: `flannel.<VNI>`.
fn device_name(config: &NetworkConfig) -> String {
    format!("flannel.{}", config.backend.vni)
}

/// The subnet an earlier run wrote to `subnet.env`, if the file is there and valid: the
/// one to ask for again.
fn written_subnet(path: &Path) -> Option<Ipv4Net> {
    let subnet = SubnetEnv::read(path).ok()?.subnet();
    Ipv4Net::new(subnet.address, subnet.prefix_len)
}

fn config_key(prefix: &str) -> String {
    format!("{}/config", prefix.trim_end_matches('/'))
}

/// Reads the network config until it is valid, waiting for changes of the key in between.
async fn wait_for_config(kv: &KvClient, prefix: &str) -> (NetworkConfig, i64) {
    let key = config_key(prefix);
    loop {
        let request = RangeRequest {
            key: key.clone().into_bytes(),
            ..RangeRequest::default()
        };
        let range = retrying("reading the network config", async || {
            kv.range(&request).await
        })
        .await;
        let revision = range.revision();
        match range.kvs.first() {
            None => tracing::warn!("no network config at {key} yet; waiting for it to be written"),
            Some(pair) => match NetworkConfig::parse(&pair.value) {
                Ok(config) => return (config, revision),
                Err(error) => tracing::error!(
                    "the network config at {key} is invalid, waiting for it to change: {}",
                    error_chain(&error)
                ),
            },
        }
        let mut watch = kv.watch(WatchCreateRequest {
            key: key.clone().into_bytes(),
            start_revision: revision + 1,
            ..WatchCreateRequest::default()
        });
        if !matches!(watch.next().await, Some(Ok(_))) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What a batch of lease events meant for us.
enum Outcome {
    /// Applied; the kernel needs the difference.
    Changed,
    /// Our own lease is gone or was taken over.
    Lost,
}

/// The overlay running under one network config.
struct Overlay<'a, D> {
    settings: &'a Settings,
    kv: &'a KvClient,
    kernel: &'a mut D,
    fast_path: &'a watch::Sender<Option<Target>>,
    allocator: Allocator,
    config: NetworkConfig,
    config_revision: i64,
    device: Device,
    direct: Direct,
    attrs: LeaseAttrs,
    mtu: u32,
    held: Held,
    syncer: Syncer,
    renew_at: Instant,
}

impl<'a, D: Dataplane> Overlay<'a, D> {
    /// Sets up the device and acquires a subnet, retrying until both are done.
    async fn start(
        settings: &'a Settings,
        kv: &'a KvClient,
        kernel: &'a mut D,
        fast_path: &'a watch::Sender<Option<Target>>,
        underlay: &Underlay,
        public_ip: Ipv4Addr,
        (config, config_revision): (NetworkConfig, i64),
    ) -> Self {
        let direct = Direct {
            underlay: underlay.index,
            network: config.network,
            segment: config.backend.direct_routing.then(|| underlay.segment()),
        };
        if let Some(segment) = direct.segment {
            tracing::info!(
                "DirectRouting: hosts on {segment} are routed through {} without VXLAN",
                underlay.name
            );
        }
        let mtu = underlay.mtu.saturating_sub(VXLAN_OVERHEAD);
        let spec = DeviceSpec {
            name: device_name(&config),
            vni: config.backend.vni,
            local: underlay.address,
            underlay: underlay.index,
            port: config.backend.port,
            mtu,
        };
        let device = retrying("setting up the VXLAN device", async || {
            kernel.ensure_device(&spec).await
        })
        .await;
        tracing::info!(
            "VXLAN device {} (VNI {}, port {}, MTU {mtu}, MAC {})",
            spec.name,
            spec.vni,
            spec.port,
            device.mac
        );
        let attrs = LeaseAttrs {
            public_ip,
            vtep_mac: device.mac,
            vni: config.backend.vni,
        };
        let allocator = Allocator::new(kv.clone(), &settings.prefix, settings.lease_ttl);
        let preferred = written_subnet(&settings.subnet_file);
        let held = retrying("acquiring a subnet", async || {
            allocator.acquire(&config, &attrs, preferred).await
        })
        .await;
        let mut overlay = Self {
            settings,
            kv,
            kernel,
            fast_path,
            allocator,
            config,
            config_revision,
            device,
            attrs,
            mtu,
            syncer: Syncer::new(device.index, direct, held.subnet, public_ip),
            direct,
            renew_at: Instant::now(),
            held,
        };
        overlay.adopt().await;
        overlay
    }

    /// Puts the held subnet to use: device address, `subnet.env`, renewal schedule.
    async fn adopt(&mut self) {
        let held = &self.held;
        tracing::info!(
            "acquired subnet {} for public IP {} (lease {:x}, renewed {:?} before expiry)",
            held.subnet,
            self.attrs.public_ip,
            held.lease_id,
            self.settings.renew_margin
        );
        let (device, address) = (self.device.index, held.subnet.network());
        let kernel = &mut *self.kernel;
        retrying("addressing the VXLAN device", async || {
            kernel.set_address(device, address).await
        })
        .await;
        let env = SubnetEnv {
            network: Ipv4Cidr {
                address: self.config.network.network(),
                prefix_len: self.config.network.prefix_len(),
            },
            // The bridge's address: the subnet's first host.
            gateway: held.subnet.host(1).unwrap_or(held.subnet.network()),
            prefix_len: held.subnet.prefix_len(),
            mtu: self.mtu,
            ip_masq: false,
        };
        let path = &self.settings.subnet_file;
        retrying("writing subnet.env", async || env.write(path)).await;
        self.fast_path.send_replace(Some(Target {
            vxlan: device,
            subnet: held.subnet,
        }));
        self.syncer = Syncer::new(
            self.device.index,
            self.direct,
            held.subnet,
            self.attrs.public_ip,
        );
        self.renew_at = held.expires - self.settings.renew_margin;
    }

    /// Syncs and watches until the network config changes; returns the new one.
    async fn serve(mut self) -> (NetworkConfig, i64) {
        let config_key = config_key(&self.settings.prefix);
        let mut config_watch = self.kv.watch(WatchCreateRequest {
            key: config_key.clone().into_bytes(),
            start_revision: self.config_revision + 1,
            ..WatchCreateRequest::default()
        });
        loop {
            let revision = self.resync().await;
            let prefix = lease::subnets_prefix(&self.settings.prefix).into_bytes();
            let mut leases_watch = self.kv.watch(WatchCreateRequest {
                range_end: prefix_end(&prefix),
                key: prefix,
                start_revision: revision + 1,
                ..WatchCreateRequest::default()
            });
            loop {
                tokio::select! {
                    batch = leases_watch.next() => match batch {
                        Some(Ok(batch)) => match self.apply(batch) {
                            Outcome::Changed => {
                                if let Err(error) = self.syncer.reconcile(self.kernel).await {
                                    tracing::warn!("{}; resyncing", error_chain(&error));
                                    break;
                                }
                            }
                            Outcome::Lost => {
                                self.reacquire().await;
                                break;
                            }
                        },
                        Some(Err(error)) => {
                            tracing::warn!("the lease watch failed, resyncing: {}", error_chain(&error));
                            break;
                        }
                        None => {
                            tracing::warn!("the lease watch ended, resyncing");
                            break;
                        }
                    },
                    batch = config_watch.next() => {
                        if let Some(config) = self.config_changed(batch, &config_key, &mut config_watch) {
                            return config;
                        }
                    }
                    () = tokio::time::sleep_until(self.renew_at) => {
                        if !self.renew().await {
                            self.reacquire().await;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Lists every lease, replaces what is known, and brings the kernel in step.
    /// Returns the revision of the listing.
    async fn resync(&mut self) -> i64 {
        loop {
            let prefix = lease::subnets_prefix(&self.settings.prefix);
            let kv = self.kv;
            let range = retrying("listing the subnet leases", async || {
                kv.get_prefix(prefix.clone()).await
            })
            .await;
            let mut own_intact = false;
            let leases: Vec<Lease> = range
                .kvs
                .iter()
                .filter_map(|pair| {
                    let key = String::from_utf8_lossy(&pair.key);
                    let lease = Lease::parse(&key, &pair.value)
                        .map_err(|error| {
                            tracing::warn!("ignoring a lease: {}", error_chain(&error))
                        })
                        .ok()?;
                    if key == self.held.key {
                        own_intact = lease.attrs == self.attrs;
                    }
                    Some(lease)
                })
                .collect();
            if !own_intact {
                self.reacquire().await;
                continue;
            }
            for change in self.syncer.replace_all(leases) {
                log_change(&change);
            }
            match self.syncer.reconcile(self.kernel).await {
                Ok(applied) => {
                    tracing::debug!(added = applied.added, deleted = applied.deleted, "resynced");
                    return range.revision();
                }
                Err(error) => {
                    tracing::warn!("{}; retrying", error_chain(&error));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Records a batch of lease changes.
    fn apply(&mut self, batch: WatchBatch) -> Outcome {
        let mut outcome = Outcome::Changed;
        for event in batch.events {
            let kind = event.r#type();
            let kv = event.kv.unwrap_or_default();
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if key == self.held.key {
                let still_ours = kind == EventType::Put
                    && LeaseAttrs::parse(&key, &kv.value).is_ok_and(|attrs| attrs == self.attrs);
                if !still_ours {
                    outcome = Outcome::Lost;
                }
                continue;
            }
            let subnet = match lease::parse_key(&key) {
                Ok(subnet) => subnet,
                Err(error) => {
                    tracing::debug!("ignoring a key: {error}");
                    continue;
                }
            };
            let change = match kind {
                EventType::Put => match Lease::parse(&key, &kv.value) {
                    Ok(lease) => self.syncer.put(lease),
                    Err(error) => {
                        tracing::warn!("ignoring a lease: {}", error_chain(&error));
                        self.syncer.remove(&subnet)
                    }
                },
                EventType::Delete => self.syncer.remove(&subnet),
            };
            if let Some(change) = change {
                log_change(&change);
            }
        }
        outcome
    }

    /// Handles a change of the config key; `Some` with a new valid config that differs.
    fn config_changed(
        &mut self,
        batch: Option<Result<WatchBatch, KvClientError>>,
        key: &str,
        watch: &mut Watch,
    ) -> Option<(NetworkConfig, i64)> {
        let batch = match batch {
            Some(Ok(batch)) => batch,
            Some(Err(error)) => {
                tracing::warn!(
                    "the config watch failed, watching again: {}",
                    error_chain(&error)
                );
                *watch = self.kv.watch(WatchCreateRequest {
                    key: key.as_bytes().to_vec(),
                    ..WatchCreateRequest::default()
                });
                return None;
            }
            None => {
                *watch = self.kv.watch(WatchCreateRequest {
                    key: key.as_bytes().to_vec(),
                    ..WatchCreateRequest::default()
                });
                return None;
            }
        };
        let event = batch.events.last()?;
        if event.r#type() == EventType::Delete {
            tracing::warn!("the network config at {key} was deleted; keeping the current one");
            return None;
        }
        let value = event.kv.as_ref().map_or(&[][..], |kv| kv.value.as_slice());
        match NetworkConfig::parse(value) {
            Ok(config) if config == self.config => None,
            Ok(config) => {
                tracing::info!("the network config at {key} changed; setting the overlay up again");
                Some((config, batch.revision))
            }
            Err(error) => {
                tracing::error!(
                    "the network config at {key} is invalid, keeping the current one until it changes: {}",
                    error_chain(&error)
                );
                None
            }
        }
    }

    /// Renews the lease if due; `false` if it was lost.
    async fn renew(&mut self) -> bool {
        match self
            .allocator
            .renew_if_due(&mut self.held, self.settings.renew_margin)
            .await
        {
            Ok(_) => {
                tracing::debug!(subnet = %self.held.subnet, "renewed the subnet lease");
                self.renew_at = self.held.expires - self.settings.renew_margin;
                true
            }
            Err(AllocError::Lost(lease)) => {
                tracing::warn!("the subnet lease {lease:x} expired");
                false
            }
            Err(error) => {
                tracing::warn!(
                    "renewing the subnet lease failed, retrying in 1s: {}",
                    error_chain(&error)
                );
                self.renew_at = Instant::now() + Duration::from_secs(1);
                true
            }
        }
    }

    /// Acquires a subnet again after the lease was lost, preferring the same one.
    async fn reacquire(&mut self) {
        tracing::warn!(
            "lost the lease of subnet {}; acquiring one again",
            self.held.subnet
        );
        let preferred = Some(self.held.subnet);
        let (allocator, config, attrs) = (&self.allocator, &self.config, &self.attrs);
        self.held = retrying("acquiring a subnet", async || {
            allocator.acquire(config, attrs, preferred).await
        })
        .await;
        self.adopt().await;
    }
}

fn log_change(change: &RemoteChange) {
    match change {
        RemoteChange::Added(lease) => tracing::info!(
            "remote added: subnet {} at {} (VTEP MAC {})",
            lease.subnet,
            lease.attrs.public_ip,
            lease.attrs.vtep_mac
        ),
        RemoteChange::Changed(lease) => tracing::info!(
            "remote changed: subnet {} now at {} (VTEP MAC {})",
            lease.subnet,
            lease.attrs.public_ip,
            lease.attrs.vtep_mac
        ),
        RemoteChange::Removed(subnet) => tracing::info!("remote removed: subnet {subnet}"),
    }
}
