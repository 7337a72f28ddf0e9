//! IPv4 networks in CIDR notation (`10.5.0.0/16`): parsing, containment, and the subnets
//! of a given length a network splits into.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use thiserror::Error;

/// A string is not `a.b.c.d/n` with `n` in 0..=32 and no host bits set.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ipv4NetError {
    /// No `/` between address and prefix length.
    #[error("{0:?}: expected an IPv4 network a.b.c.d/n")]
    Syntax(String),
    /// The address part is not an IPv4 address.
    #[error("{0:?}: the address part is not an IPv4 address")]
    Address(String),
    /// The prefix length is not a number in 0..=32.
    #[error("{0:?}: the prefix length must be a number from 0 to 32")]
    PrefixLength(String),
    /// Bits below the prefix length are set.
    #[error("{0:?}: host bits are set; the network address is {1}")]
    HostBits(String, Ipv4Net),
}

/// An IPv4 network: its first address and prefix length (host bits are always zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// The network of `address` with `prefix_len` bits (host bits cleared); `None` if
    /// `prefix_len` exceeds 32.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix_len)),
            prefix_len,
        })
    }

    /// The first address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The last address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix_len))
    }

    /// How many addresses the network holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    /// Whether `address` lies in the network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// Whether `other` lies wholly in this network.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network)
    }

    /// The `index`th subnet of length `prefix_len`, if the network holds that many.
    pub fn nth_subnet(&self, prefix_len: u8, index: u64) -> Option<Ipv4Net> {
        if prefix_len < self.prefix_len || prefix_len > 32 {
            return None;
        }
        let count = 1u64 << (prefix_len - self.prefix_len);
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix_len));
        let first = u64::from(u32::from(self.network)) + index * step;
        let first = u32::try_from(first).ok()?;
        Ipv4Net::new(Ipv4Addr::from(first), prefix_len)
    }

    /// Every subnet of length `prefix_len`, in address order (none if it is shorter
    /// than this network's).
    pub fn subnets(&self, prefix_len: u8) -> impl Iterator<Item = Ipv4Net> + '_ {
        let count = if (self.prefix_len..=32).contains(&prefix_len) {
            1u64 << (prefix_len - self.prefix_len)
        } else {
            0
        };
        (0..count).filter_map(move |index| self.nth_subnet(prefix_len, index))
    }

    /// The `offset`th address of the network (`network + offset`), if it lies inside.
    pub fn host(&self, offset: u32) -> Option<Ipv4Addr> {
        (u64::from(offset) < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + offset))
    }
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = Ipv4NetError;

    /// Parses `a.b.c.d/n`; host bits must be zero.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix_len) = text
            .split_once('/')
            .ok_or_else(|| Ipv4NetError::Syntax(text.to_owned()))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| Ipv4NetError::Address(text.to_owned()))?;
        let net = prefix_len
            .parse::<u8>()
            .ok()
            .and_then(|prefix_len| Ipv4Net::new(address, prefix_len))
            .ok_or_else(|| Ipv4NetError::PrefixLength(text.to_owned()))?;
        if net.network != address {
            return Err(Ipv4NetError::HostBits(text.to_owned(), net));
        }
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("a valid network")
    }

    #[test]
    fn parses_and_prints() {
        let parsed = net("10.5.0.0/16");
        assert_eq!(parsed.network(), Ipv4Addr::new(10, 5, 0, 0));
        assert_eq!(parsed.prefix_len(), 16);
        assert_eq!(parsed.to_string(), "10.5.0.0/16");
        assert_eq!(net("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(net("10.0.0.7/32").broadcast(), Ipv4Addr::new(10, 0, 0, 7));
    }

    #[test]
    fn rejects_malformed_networks() {
        assert_eq!(
            "10.5.0.0".parse::<Ipv4Net>(),
            Err(Ipv4NetError::Syntax("10.5.0.0".into()))
        );
        assert_eq!(
            "10.5.0/16".parse::<Ipv4Net>(),
            Err(Ipv4NetError::Address("10.5.0/16".into()))
        );
        assert_eq!(
            "10.5.0.0/33".parse::<Ipv4Net>(),
            Err(Ipv4NetError::PrefixLength("10.5.0.0/33".into()))
        );
        assert_eq!(
            "10.5.0.0/x".parse::<Ipv4Net>(),
            Err(Ipv4NetError::PrefixLength("10.5.0.0/x".into()))
        );
        assert_eq!(
            "10.5.3.1/16".parse::<Ipv4Net>(),
            Err(Ipv4NetError::HostBits(
                "10.5.3.1/16".into(),
                net("10.5.0.0/16")
            ))
        );
    }

    #[test]
    fn containment() {
        let network = net("10.5.0.0/16");
        assert!(network.contains(Ipv4Addr::new(10, 5, 255, 255)));
        assert!(!network.contains(Ipv4Addr::new(10, 6, 0, 0)));
        assert!(network.contains_net(&net("10.5.3.0/24")));
        assert!(!network.contains_net(&net("10.0.0.0/8")));
        assert!(!network.contains_net(&net("10.6.3.0/24")));
    }

    #[test]
    fn subnets_in_order() {
        let network = net("10.5.0.0/22");
        let subnets: Vec<String> = network.subnets(24).map(|s| s.to_string()).collect();
        assert_eq!(
            subnets,
            ["10.5.0.0/24", "10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24"]
        );
        assert_eq!(network.nth_subnet(24, 3), Some(net("10.5.3.0/24")));
        assert_eq!(network.nth_subnet(24, 4), None);
        assert_eq!(network.nth_subnet(20, 0), None);
        assert_eq!(network.subnets(20).count(), 0);
        assert_eq!(
            net("255.255.255.0/24").nth_subnet(25, 1),
            Some(net("255.255.255.128/25"))
        );
    }

    #[test]
    fn hosts_inside_only() {
        let subnet = net("10.5.3.0/24");
        assert_eq!(subnet.host(1), Some(Ipv4Addr::new(10, 5, 3, 1)));
        assert_eq!(subnet.host(255), Some(Ipv4Addr::new(10, 5, 3, 255)));
        assert_eq!(subnet.host(256), None);
    }
}
