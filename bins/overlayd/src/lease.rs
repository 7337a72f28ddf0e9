//! Subnet leases as flannel stores them: key `<prefix>/subnets/10.5.3.0-24`, value
//!
//! ```json
//! {"PublicIP":"192.168.1.10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:05:03:00"}}
//! ```

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sinew_proto::mac::MacAddr;
use thiserror::Error;

use crate::ipv4net::Ipv4Net;

/// A lease key or value is not flannel's.
#[derive(Debug, Error)]
pub enum LeaseError {
    /// The key does not end in `subnets/a.b.c.d-n`.
    #[error("lease key {0:?}: expected <prefix>/subnets/a.b.c.d-n")]
    Key(String),
    /// The value is not the JSON expected.
    #[error("lease {key}: expected {{\"PublicIP\", \"BackendType\": \"vxlan\", \"BackendData\": {{\"VtepMAC\", \"VNI\"}}}}: {source}")]
    Value {
        /// The key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A backend other than vxlan.
    #[error("lease {key}: BackendType {kind:?} is not vxlan")]
    Backend {
        /// The key.
        key: String,
        /// The backend type.
        kind: String,
    },
}

/// What a host publishes about itself in its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAttrs {
    /// The address other hosts send VXLAN packets to.
    pub public_ip: Ipv4Addr,
    /// The MAC of the host's VXLAN device.
    pub vtep_mac: MacAddr,
    /// The VNI.
    pub vni: u32,
}

/// One host's lease: its subnet and what it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// What the host published.
    pub attrs: LeaseAttrs,
}

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "PublicIP")]
    public_ip: Ipv4Addr,
    #[serde(rename = "BackendType")]
    backend_type: String,
    #[serde(rename = "BackendData")]
    backend_data: WireBackend,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireBackend {
    #[serde(rename = "VNI", default)]
    vni: u32,
    #[serde(rename = "VtepMAC")]
    vtep_mac: MacAddr,
}

/// The key prefix of every lease: `<prefix>/subnets/`.
pub fn subnets_prefix(prefix: &str) -> String {
    format!("{}/subnets/", prefix.trim_end_matches('/'))
}

/// The key of `subnet`'s lease.
pub fn key(prefix: &str, subnet: &Ipv4Net) -> String {
    format!(
        "{}{}-{}",
        subnets_prefix(prefix),
        subnet.network(),
        subnet.prefix_len()
    )
}

/// The subnet a lease key names.
pub fn parse_key(key: &str) -> Result<Ipv4Net, LeaseError> {
    let bad = || LeaseError::Key(key.to_owned());
    let name = key.rsplit('/').next().ok_or_else(bad)?;
    let (address, prefix_len) = name.split_once('-').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix_len: u8 = prefix_len.parse().map_err(|_| bad())?;
    Ipv4Net::new(address, prefix_len)
        .filter(|net| net.network() == address)
        .ok_or_else(bad)
}

impl LeaseAttrs {
    /// The JSON value flannel writes.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            public_ip: self.public_ip,
            backend_type: "vxlan".to_owned(),
            backend_data: WireBackend {
                vni: self.vni,
                vtep_mac: self.vtep_mac,
            },
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses the value of lease `key`.
    pub fn parse(key: &str, json: &[u8]) -> Result<Self, LeaseError> {
        let wire: Wire = serde_json::from_slice(json).map_err(|source| LeaseError::Value {
            key: key.to_owned(),
            source,
        })?;
        if wire.backend_type != "vxlan" {
            return Err(LeaseError::Backend {
                key: key.to_owned(),
                kind: wire.backend_type,
            });
        }
        Ok(Self {
            public_ip: wire.public_ip,
            vtep_mac: wire.backend_data.vtep_mac,
            vni: wire.backend_data.vni,
        })
    }
}

impl Lease {
    /// Parses a lease from its key and value.
    pub fn parse(key: &str, json: &[u8]) -> Result<Self, LeaseError> {
        Ok(Self {
            subnet: parse_key(key)?,
            attrs: LeaseAttrs::parse(key, json)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_flannel_writes_them() {
        let subnet: Ipv4Net = "10.5.3.0/24".parse().expect("a network");
        let key = key("/coreos.com/network/", &subnet);
        assert_eq!(key, "/coreos.com/network/subnets/10.5.3.0-24");
        assert_eq!(parse_key(&key).expect("a lease key"), subnet);
        assert_eq!(
            subnets_prefix("/coreos.com/network"),
            "/coreos.com/network/subnets/"
        );
        for bad in [
            "/p/subnets/10.5.3.0",
            "/p/subnets/10.5.3.1-24",
            "/p/subnets/10.5.3.0-33",
            "/p/subnets/x-24",
        ] {
            assert!(matches!(parse_key(bad), Err(LeaseError::Key(_))), "{bad}");
        }
    }

    #[test]
    fn values_round_trip_and_read_flannels() {
        let attrs = LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 168, 1, 10),
            vtep_mac: "0a:58:0a:05:03:00".parse().expect("a MAC"),
            vni: 1,
        };
        let json = attrs.to_json();
        assert_eq!(
            String::from_utf8_lossy(&json),
            r#"{"PublicIP":"192.168.1.10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:05:03:00"}}"#
        );
        assert_eq!(LeaseAttrs::parse("k", &json).expect("a lease"), attrs);
        // flannel 0.2x also writes PublicIPv6 and backend fields overlayd does not use.
        let flannel = br#"{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:05:03:00"}}"#;
        let lease =
            Lease::parse("/coreos.com/network/subnets/10.5.3.0-24", flannel).expect("a lease");
        assert_eq!(lease.attrs, attrs);
        assert_eq!(lease.subnet.to_string(), "10.5.3.0/24");
    }

    #[test]
    fn rejects_other_values() {
        let udp = br#"{"PublicIP":"192.168.1.10","BackendType":"udp","BackendData":{"VtepMAC":"0a:58:0a:05:03:00"}}"#;
        assert!(matches!(
            LeaseAttrs::parse("k", udp),
            Err(LeaseError::Backend { .. })
        ));
        let bad_mac =
            br#"{"PublicIP":"192.168.1.10","BackendType":"vxlan","BackendData":{"VtepMAC":"zz"}}"#;
        assert!(matches!(
            LeaseAttrs::parse("k", bad_mac),
            Err(LeaseError::Value { .. })
        ));
        assert!(matches!(
            LeaseAttrs::parse("k", b"{"),
            Err(LeaseError::Value { .. })
        ));
    }
}
