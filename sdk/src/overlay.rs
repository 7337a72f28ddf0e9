//! The overlay network from a playbook: flannel's VXLAN design run by `overlayd`. Deploying
//! writes the network config into the KV store (flannel's key and JSON), ships overlayd to
//! every host, runs it as a service over the data-plane addresses, and waits until every
//! host has leased its subnet and written `subnet.env` for the container runner.
//!
//! Guests need the kernel modules in [`GUEST_MODULES`] (VXLAN for the overlay, bridge and
//! veth for containers on it, tc's clsact and bpf classifier for overlayd's eBPF fast
//! path): add them to each [`crate::MachineSpec::modules`].

use std::time::{Duration, Instant};

use sinew_proto::overlay::{
    SubnetEnv, LOG_FAST_PATH_ON, LOG_FAST_PATH_UNAVAILABLE, LOG_FAST_PATH_WAITING,
};
use thiserror::Error;

use crate::build::{Artifacts, BuildError};
use crate::host::{Host, HostError};
use crate::kv::deploy::KVCTL_PATH;
use crate::kv::KvDeployment;
use crate::outcome::{Outcome, Status};
use crate::{Run, ServiceSpec, TaskFailed};

/// Where overlayd is installed on a host.
pub const OVERLAYD_PATH: &str = "/usr/local/bin/overlayd";
/// Where overlayd writes the host's subnet (flannel's default).
pub use sinew_proto::overlay::SUBNET_FILE;
/// flannel's default key prefix.
pub const PREFIX: &str = "/coreos.com/network";
/// The service name overlayd runs under.
pub const SERVICE: &str = "overlayd";
/// Kernel modules a guest on the overlay needs: the VXLAN device, a bridge and veth pairs
/// for its containers, and the clsact qdisc and bpf classifier that overlayd's fast path
/// attaches with (without them overlayd stays on the kernel's path).
pub const GUEST_MODULES: [&str; 5] = ["vxlan", "bridge", "veth", "sch_ingress", "cls_bpf"];

/// How long every host may take to lease a subnet (guests may be emulated).
const LEASE_PATIENCE: Duration = Duration::from_secs(120);

/// Why the overlay could not be deployed.
#[derive(Debug, Error)]
pub enum OverlayError {
    /// overlayd was not built for a host's architecture.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A host refused a step.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The KV store refused the network config.
    #[error("writing the network config to {key}: {stderr}")]
    Config {
        /// The key written.
        key: String,
        /// What kvctl said.
        stderr: String,
    },
    /// A host did not write its subnet file in time.
    #[error("{host} has no subnet after {patience:?}; overlayd's last log lines: {logs}")]
    NoSubnet {
        /// The host.
        host: String,
        /// How long it was given.
        patience: Duration,
        /// The service's last log lines.
        logs: String,
    },
}

/// The overlay's network config, as flannel's `<prefix>/config` JSON holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The whole overlay network, e.g. `10.5.0.0/16`.
    pub network: String,
    /// Prefix length of each host's subnet.
    pub subnet_len: u8,
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The VXLAN UDP port.
    pub port: u16,
}

impl NetworkConfig {
    /// `network` split into /24 subnets, VNI 1 on port 8472 (flannel's defaults).
    pub fn new(network: &str) -> Self {
        Self {
            network: network.to_owned(),
            subnet_len: 24,
            vni: 1,
            port: 8472,
        }
    }

    /// The JSON value flannel and overlayd read.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "Network": self.network,
            "SubnetLen": self.subnet_len,
            "Backend": { "Type": "vxlan", "VNI": self.vni, "Port": self.port },
        })
        .to_string()
    }
}

/// Each host's leased subnet, from its `subnet.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDeployment {
    /// `(host name, FLANNEL_SUBNET)` in host order, e.g. `("n1", "10.5.3.1/24")`.
    pub subnets: Vec<(String, String)>,
}

impl OverlayDeployment {
    /// The subnet leased by `host`.
    pub fn subnet_of(&self, host: &str) -> Option<&str> {
        self.subnets
            .iter()
            .find(|(name, _)| name == host)
            .map(|(_, subnet)| subnet.as_str())
    }
}

impl Outcome for OverlayDeployment {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        let subnets: Vec<String> = self
            .subnets
            .iter()
            .map(|(host, subnet)| format!("{host} {subnet}"))
            .collect();
        Some(subnets.join(", "))
    }
}

/// Whether the config in the store had to be written.
#[derive(Debug)]
struct ConfigWrite(bool);

impl Outcome for ConfigWrite {
    fn status(&self) -> Status {
        Status::changed_if(self.0)
    }
}

/// The overlayd service for `host`, using the KV cluster at `endpoints`.
pub fn service(host: &Host, endpoints: &str) -> ServiceSpec {
    ServiceSpec::new(
        SERVICE,
        [
            OVERLAYD_PATH.to_owned(),
            format!("--etcd-endpoints={endpoints}"),
            format!("--etcd-prefix={PREFIX}"),
            format!("--iface={}", host.data_ip()),
            format!("--public-ip={}", host.data_ip()),
            format!("--subnet-file={SUBNET_FILE}"),
        ],
    )
}

// Extends `Run` (run.rs) with the overlay; indexed in `Run`'s doc comment.
impl Run {
    /// Writes `config` to the KV store (unless it is already there), installs overlayd on
    /// every host (from `bins`), starts it as a service, and waits until every host has
    /// leased a subnet. Idempotent: a running overlayd is left running and keeps its lease.
    pub fn deploy_overlay(
        &self,
        hosts: &[Host],
        bins: &Artifacts,
        kv: &KvDeployment,
        config: &NetworkConfig,
    ) -> Result<OverlayDeployment, TaskFailed> {
        let endpoints = kv.endpoints();
        if let Some(writer) = hosts.first() {
            self.task(
                &format!("network config {} [{writer}]", config.network),
                || write_config(writer, &endpoints, config),
            )?;
        }
        self.each(hosts, "install overlayd", |host| {
            Ok::<_, OverlayError>(host.install(bins.get("overlayd", host.arch())?, OVERLAYD_PATH)?)
        })?;
        self.each(hosts, "start overlayd", |host| {
            host.start_service(&service(host, &endpoints))
        })?;
        if self.is_dry_run() {
            return Ok(OverlayDeployment {
                subnets: Vec::new(),
            });
        }
        let subnets = self.each(hosts, "subnet leased", |host| {
            wait_subnet(host).map(|subnet| Leased(host.name().to_owned(), subnet))
        })?;
        Ok(OverlayDeployment {
            subnets: subnets
                .into_iter()
                .map(|leased| (leased.0, leased.1))
                .collect(),
        })
    }
}

/// A host and the subnet it leased.
#[derive(Debug)]
struct Leased(String, String);

impl Outcome for Leased {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(self.1.clone())
    }
}

fn write_config(
    host: &Host,
    endpoints: &str,
    config: &NetworkConfig,
) -> Result<ConfigWrite, OverlayError> {
    let key = format!("{PREFIX}/config");
    let endpoints = format!("--endpoints={endpoints}");
    let wanted = config.to_json();
    let current = host.try_exec(&[KVCTL_PATH, &endpoints, "get", &key, "--print-value-only"])?;
    if current.success() && current.stdout_text() == wanted {
        return Ok(ConfigWrite(false));
    }
    let put = host.try_exec(&[KVCTL_PATH, &endpoints, "put", &key, &wanted])?;
    if !put.success() {
        return Err(OverlayError::Config {
            key,
            stderr: String::from_utf8_lossy(&put.stderr).trim().to_owned(),
        });
    }
    Ok(ConfigWrite(true))
}

/// How overlay traffic passes between a host's VXLAN device and its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// overlayd's eBPF fast path.
    FastPath,
    /// The fast path waits for the container bridge to appear; the kernel's path until then.
    Waiting,
    /// The kernel's path: the fast path is off, unavailable, or not started yet.
    Kernel,
}

impl std::fmt::Display for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FastPath => "eBPF fast path",
            Self::Waiting => "kernel path (fast path waiting for a container bridge)",
            Self::Kernel => "kernel path",
        })
    }
}

/// The data path overlayd on `host` last reported in its log.
pub fn data_path(host: &Host) -> Result<DataPath, HostError> {
    Ok(reported_data_path(&host.service_logs(SERVICE, 10_000)?))
}

/// The data path the last of overlayd's fast-path log lines in `logs` reports.
fn reported_data_path(logs: &[String]) -> DataPath {
    logs.iter()
        .rev()
        .find_map(|line| {
            if line.contains(LOG_FAST_PATH_ON) {
                Some(DataPath::FastPath)
            } else if line.contains(LOG_FAST_PATH_WAITING) {
                Some(DataPath::Waiting)
            } else if line.contains(LOG_FAST_PATH_UNAVAILABLE) {
                Some(DataPath::Kernel)
            } else {
                None
            }
        })
        .unwrap_or(DataPath::Kernel)
}

/// Waits for `host`'s subnet file and returns its `FLANNEL_SUBNET`.
fn wait_subnet(host: &Host) -> Result<String, OverlayError> {
    let started = Instant::now();
    loop {
        if let Ok(text) = host.get(SUBNET_FILE) {
            if let Ok(env) = SubnetEnv::parse(&String::from_utf8_lossy(&text)) {
                return Ok(format!("{}/{}", env.gateway, env.prefix_len));
            }
        }
        if started.elapsed() > LEASE_PATIENCE {
            let logs = host.service_logs(SERVICE, 5)?.join(" | ");
            return Err(OverlayError::NoSubnet {
                host: host.name().to_owned(),
                patience: LEASE_PATIENCE,
                logs,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_fast_path_line_of_overlayds_log_tells_the_data_path() {
        let lines = |text: &[&String]| text.iter().map(|line| (*line).clone()).collect::<Vec<_>>();
        let on = &format!("INFO {LOG_FAST_PATH_ON}: VXLAN device 4 ⇄ container veths on bridge 7");
        let waiting =
            &format!("INFO {LOG_FAST_PATH_WAITING} for a bridge with an address in 10.5.3.0/24");
        let unavailable =
            &format!("WARN {LOG_FAST_PATH_UNAVAILABLE} on this kernel: loading BPF program");
        let other = &"INFO remote added: subnet 10.5.9.0/24 at 10.0.0.9".to_owned();
        assert_eq!(
            reported_data_path(&lines(&[waiting, on, other])),
            DataPath::FastPath
        );
        assert_eq!(
            reported_data_path(&lines(&[on, waiting])),
            DataPath::Waiting
        );
        assert_eq!(
            reported_data_path(&lines(&[on, unavailable])),
            DataPath::Kernel
        );
        assert_eq!(reported_data_path(&lines(&[other])), DataPath::Kernel);
    }

    #[test]
    fn config_json_is_flannels() {
        let json: serde_json::Value =
            serde_json::from_str(&NetworkConfig::new("10.5.0.0/16").to_json()).expect("valid JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "Network": "10.5.0.0/16",
                "SubnetLen": 24,
                "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472},
            })
        );
    }
}
