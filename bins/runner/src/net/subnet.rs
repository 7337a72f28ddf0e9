//! The host's overlay subnet, from flannel's `subnet.env`.

use std::net::Ipv4Addr;
use std::path::Path;

/// `subnet.env` is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No usable `FLANNEL_SUBNET=a.b.c.d/n` line.
    #[error("{path}: expected FLANNEL_SUBNET=<bridge address>/<prefix length 8..=30>, e.g. FLANNEL_SUBNET=10.5.3.1/24")]
    Invalid {
        /// The file.
        path: String,
    },
}

/// This host's container subnet: the bridge holds `gateway`, containers the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The bridge's address, containers' default route.
    pub gateway: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// MTU for container interfaces, from `FLANNEL_MTU`.
    pub mtu: Option<u32>,
}

impl Subnet {
    /// Reads and parses a `subnet.env` file.
    pub fn read(path: &Path) -> Result<Subnet, SubnetError> {
        let text = std::fs::read_to_string(path).map_err(|source| SubnetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Subnet::parse(&text).ok_or_else(|| SubnetError::Invalid {
            path: path.display().to_string(),
        })
    }

    /// Parses `subnet.env` text.
    pub fn parse(text: &str) -> Option<Subnet> {
        let value = |key: &str| {
            text.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(key)?
                    .strip_prefix('=')
                    .map(|v| v.trim().trim_matches('"'))
            })
        };
        let (addr, prefix) = value("FLANNEL_SUBNET")?.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p))?;
        let gateway: Ipv4Addr = addr.parse().ok()?;
        let mtu = value("FLANNEL_MTU").and_then(|m| m.parse().ok());
        Some(Subnet {
            gateway,
            prefix,
            mtu,
        })
    }

    /// Host addresses containers may get, in order: the subnet minus network, broadcast
    /// and the gateway.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let mask = u32::MAX << (32 - self.prefix);
        let network = u32::from(self.gateway) & mask;
        let broadcast = network | !mask;
        (network + 1..broadcast)
            .map(Ipv4Addr::from)
            .filter(move |a| *a != self.gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flannel_subnet_env() {
        let s = Subnet::parse("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n").unwrap();
        assert_eq!(
            s,
            Subnet {
                gateway: Ipv4Addr::new(10, 5, 3, 1),
                prefix: 24,
                mtu: Some(1450)
            }
        );
        let hosts: Vec<_> = s.hosts().collect();
        assert_eq!(hosts.first(), Some(&Ipv4Addr::new(10, 5, 3, 2)));
        assert_eq!(hosts.last(), Some(&Ipv4Addr::new(10, 5, 3, 254)));
        assert_eq!(hosts.len(), 253);
    }

    #[test]
    fn the_gateway_need_not_be_the_first_address() {
        let s = Subnet::parse("FLANNEL_SUBNET=10.9.0.5/30").unwrap();
        assert_eq!(
            s.hosts().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 9, 0, 6)]
        );
    }

    #[test]
    fn rejects_missing_or_malformed_subnets() {
        for bad in [
            "",
            "FLANNEL_SUBNET=10.5.3.1",
            "FLANNEL_SUBNET=10.5.3.1/31",
            "FLANNEL_SUBNET=10.5.3/24",
            "FLANNEL_NETWORK=10.5.0.0/16",
        ] {
            assert_eq!(Subnet::parse(bad), None, "{bad}");
        }
    }
}
