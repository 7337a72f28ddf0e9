//! flannel's network configuration, the JSON document at `<prefix>/config`:
//!
//! ```json
//! {"Network": "10.5.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
//! ```
//!
//! Defaults are flannel's: `SubnetLen` 24 (or the network's length + 2 for networks
//! smaller than /22), `SubnetMin` the second subnet (the first is skipped so that no
//! host bridge holds the network's own address), `SubnetMax` the last subnet, VNI 1,
//! port 8472. A missing `Backend` means vxlan with those defaults.

use std::net::Ipv4Addr;

use serde::Deserialize;
use thiserror::Error;

use crate::ipv4net::{Ipv4Net, Ipv4NetError};

/// The kernel's (and flannel's) VXLAN UDP port.
pub const DEFAULT_PORT: u16 = 8472;
/// flannel's default VNI.
pub const DEFAULT_VNI: u32 = 1;
/// VNIs are 24 bits.
const MAX_VNI: u32 = (1 << 24) - 1;

/// Why the network config cannot be used; each names the field and what was expected.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not JSON, or a field of the wrong JSON type.
    #[error("the network config is not the JSON expected ({0}); expected e.g. {{\"Network\": \"10.5.0.0/16\", \"Backend\": {{\"Type\": \"vxlan\"}}}}")]
    Json(#[source] serde_json::Error),
    /// `Network` is missing.
    #[error("Network: missing; expected an IPv4 network such as \"10.5.0.0/16\"")]
    MissingNetwork,
    /// `Network` is not a network.
    #[error("Network: {0}")]
    Network(#[source] Ipv4NetError),
    /// `SubnetLen` does not fit the network.
    #[error("SubnetLen: {subnet_len} is impossible for Network {network}: expected {min}..=30 (at least four subnets, each at least a /30)")]
    SubnetLen {
        /// The length given.
        subnet_len: u8,
        /// The network.
        network: Ipv4Net,
        /// The shortest length allowed.
        min: u8,
    },
    /// `SubnetMin` or `SubnetMax` is not an address.
    #[error("{field}: {value:?} is not an IPv4 address")]
    BoundSyntax {
        /// `SubnetMin` or `SubnetMax`.
        field: &'static str,
        /// The text given.
        value: String,
    },
    /// `SubnetMin` or `SubnetMax` is not the start of a subnet of the network.
    #[error("{field}: {value} is not the first address of a /{subnet_len} subnet inside Network {network}")]
    Bound {
        /// `SubnetMin` or `SubnetMax`.
        field: &'static str,
        /// The address given.
        value: Ipv4Addr,
        /// The subnet length.
        subnet_len: u8,
        /// The network.
        network: Ipv4Net,
    },
    /// `SubnetMin` lies above `SubnetMax`.
    #[error("SubnetMin {min} lies above SubnetMax {max}")]
    EmptyRange {
        /// `SubnetMin`.
        min: Ipv4Addr,
        /// `SubnetMax`.
        max: Ipv4Addr,
    },
    /// A backend other than vxlan.
    #[error("Backend.Type: {0:?} is not supported; expected \"vxlan\"")]
    Backend(String),
    /// A VNI that does not fit 24 bits.
    #[error("Backend.VNI: {0} is out of range; expected 0..=16777215")]
    Vni(u64),
    /// A port that does not fit 16 bits.
    #[error("Backend.Port: {0} is out of range; expected 1..=65535 (0 means 8472)")]
    Port(u64),
}

/// The document as written, with flannel's field names.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    network: Option<String>,
    #[serde(default)]
    subnet_len: u8,
    subnet_min: Option<String>,
    subnet_max: Option<String>,
    backend: Option<RawBackend>,
}

#[derive(Debug, Deserialize)]
struct RawBackend {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "VNI")]
    vni: Option<u64>,
    #[serde(rename = "Port")]
    port: Option<u64>,
    #[serde(rename = "DirectRouting", default)]
    direct_routing: bool,
}

/// A validated network config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The cluster network.
    pub network: Ipv4Net,
    /// The length of each host's subnet.
    pub subnet_len: u8,
    /// The first subnet handed out.
    pub subnet_min: Ipv4Addr,
    /// The last subnet handed out.
    pub subnet_max: Ipv4Addr,
    /// The VXLAN settings.
    pub backend: VxlanBackend,
}

/// The vxlan backend's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanBackend {
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The UDP port.
    pub port: u16,
    /// flannel's DirectRouting: hosts on the underlay's own segment are routed to
    /// directly, without VXLAN.
    pub direct_routing: bool,
}

impl NetworkConfig {
    /// Parses and validates the JSON document.
    pub fn parse(json: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(json).map_err(ConfigError::Json)?;
        let network: Ipv4Net = raw
            .network
            .ok_or(ConfigError::MissingNetwork)?
            .parse()
            .map_err(ConfigError::Network)?;
        let subnet_len = subnet_len(network, raw.subnet_len)?;
        let size = 1u32 << (32 - u32::from(subnet_len));
        let first = u32::from(network.network()) + size;
        let last = u32::from(network.broadcast()) - (size - 1);
        let subnet_min = bound("SubnetMin", raw.subnet_min, first, network, subnet_len)?;
        let subnet_max = bound("SubnetMax", raw.subnet_max, last, network, subnet_len)?;
        if subnet_min > subnet_max {
            return Err(ConfigError::EmptyRange {
                min: subnet_min,
                max: subnet_max,
            });
        }
        Ok(Self {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
            backend: backend(raw.backend)?,
        })
    }

    /// The subnets hosts may lease, in address order.
    pub fn candidates(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.network
            .subnets(self.subnet_len)
            .filter(|subnet| (self.subnet_min..=self.subnet_max).contains(&subnet.network()))
    }

    /// Whether hosts may lease `subnet` under this config.
    pub fn allows(&self, subnet: &Ipv4Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && self.network.contains_net(subnet)
            && (self.subnet_min..=self.subnet_max).contains(&subnet.network())
    }
}

fn subnet_len(network: Ipv4Net, given: u8) -> Result<u8, ConfigError> {
    let min = network.prefix_len().saturating_add(2);
    let subnet_len = match given {
        0 if network.prefix_len() <= 22 => 24,
        0 => min,
        given => given,
    };
    if subnet_len < min || subnet_len > 30 {
        return Err(ConfigError::SubnetLen {
            subnet_len,
            network,
            min,
        });
    }
    Ok(subnet_len)
}

fn bound(
    field: &'static str,
    given: Option<String>,
    default: u32,
    network: Ipv4Net,
    subnet_len: u8,
) -> Result<Ipv4Addr, ConfigError> {
    let Some(text) = given else {
        return Ok(Ipv4Addr::from(default));
    };
    let value: Ipv4Addr = text.parse().map_err(|_| ConfigError::BoundSyntax {
        field,
        value: text.clone(),
    })?;
    let aligned = Ipv4Net::new(value, subnet_len).is_some_and(|net| net.network() == value);
    if !aligned || !network.contains(value) {
        return Err(ConfigError::Bound {
            field,
            value,
            subnet_len,
            network,
        });
    }
    Ok(value)
}

fn backend(raw: Option<RawBackend>) -> Result<VxlanBackend, ConfigError> {
    let Some(raw) = raw else {
        return Ok(VxlanBackend {
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
            direct_routing: false,
        });
    };
    if !raw.kind.eq_ignore_ascii_case("vxlan") {
        return Err(ConfigError::Backend(raw.kind));
    }
    let vni = raw.vni.unwrap_or(u64::from(DEFAULT_VNI));
    let vni = u32::try_from(vni)
        .ok()
        .filter(|vni| *vni <= MAX_VNI)
        .ok_or(ConfigError::Vni(vni))?;
    let port = match raw.port.unwrap_or(0) {
        0 => DEFAULT_PORT,
        port => u16::try_from(port).map_err(|_| ConfigError::Port(port))?,
    };
    Ok(VxlanBackend {
        vni,
        port,
        direct_routing: raw.direct_routing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NetworkConfig, ConfigError> {
        NetworkConfig::parse(json.as_bytes())
    }

    #[test]
    fn flannel_defaults() {
        let config = parse(r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}"#)
            .expect("a valid config");
        assert_eq!(config.network.to_string(), "10.5.0.0/16");
        assert_eq!(config.subnet_len, 24);
        assert_eq!(config.subnet_min, Ipv4Addr::new(10, 5, 1, 0));
        assert_eq!(config.subnet_max, Ipv4Addr::new(10, 5, 255, 0));
        assert_eq!(
            config.backend,
            VxlanBackend {
                vni: 1,
                port: 8472,
                direct_routing: false
            }
        );
        assert_eq!(config.candidates().count(), 255);
        let small = parse(r#"{"Network": "10.6.0.0/24"}"#).expect("a valid config");
        assert_eq!(small.subnet_len, 26);
        assert_eq!(small.candidates().count(), 3);
    }

    #[test]
    fn explicit_fields() {
        let config = parse(
            r#"{"Network": "10.6.0.0/16", "SubnetLen": 26, "SubnetMin": "10.6.1.0",
                "SubnetMax": "10.6.1.128", "Backend": {"Type": "VXLAN", "VNI": 42,
                "Port": 4789, "DirectRouting": true}, "EnableIPv4": true}"#,
        )
        .expect("a valid config");
        let candidates: Vec<String> = config.candidates().map(|s| s.to_string()).collect();
        assert_eq!(candidates, ["10.6.1.0/26", "10.6.1.64/26", "10.6.1.128/26"]);
        assert!(config.allows(&"10.6.1.64/26".parse().expect("a network")));
        assert!(!config.allows(&"10.6.1.192/26".parse().expect("a network")));
        assert!(!config.allows(&"10.6.1.0/24".parse().expect("a network")));
        assert_eq!(config.backend.vni, 42);
        assert_eq!(config.backend.port, 4789);
        assert!(config.backend.direct_routing);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("{not json", "not the JSON expected"),
            (r#"{"SubnetLen": 24}"#, "Network: missing"),
            (
                r#"{"Network": "10.5.0.0"}"#,
                "Network: \"10.5.0.0\": expected",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "SubnetLen": 31}"#,
                "SubnetLen: 31 is impossible for Network 10.5.0.0/16",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "SubnetLen": 17}"#,
                "SubnetLen: 17 is impossible",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1"}"#,
                "SubnetMin: \"10.5.1\" is not an IPv4 address",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "SubnetMax": "10.6.1.0"}"#,
                "SubnetMax: 10.6.1.0 is not the first address of a /24",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.7"}"#,
                "SubnetMin: 10.5.1.7 is not the first",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "SubnetMin": "10.5.9.0", "SubnetMax": "10.5.2.0"}"#,
                "SubnetMin 10.5.9.0 lies above SubnetMax 10.5.2.0",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}"#,
                "Backend.Type: \"host-gw\" is not supported",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 16777216}}"#,
                "Backend.VNI: 16777216 is out of range",
            ),
            (
                r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "Port": 70000}}"#,
                "Backend.Port: 70000 is out of range",
            ),
            (r#"{"Network": 5}"#, "not the JSON expected"),
        ];
        for (json, expected) in cases {
            let error = parse(json).expect_err(json).to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
