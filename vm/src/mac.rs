//! Ethernet MAC addresses for guest NICs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MacAddr(pub [u8; 6]);

/// Error from parsing a [`MacAddr`].
#[derive(Debug, thiserror::Error)]
pub enum MacError {
    /// The text is not six colon-separated hex bytes.
    #[error(
        "invalid MAC address `{0}`: expected six colon-separated hex bytes like 52:54:00:12:34:56"
    )]
    Invalid(String),
}

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// A stable, locally administered unicast address for NIC number `nic` of the
    /// guest called `guest`, so a guest keeps its MACs (and the leases and neighbour
    /// entries keyed by them) across reboots and runs.
    pub fn for_guest(guest: &str, nic: u8) -> MacAddr {
        let digest = Sha256::new()
            .chain_update(guest.as_bytes())
            .chain_update([0, nic])
            .finalize();
        // 0x02 in the first byte = locally administered, unicast: it cannot collide
        // with a vendor-assigned address.
        MacAddr([0x02, digest[0], digest[1], digest[2], digest[3], digest[4]])
    }

    /// Whether this is a group (broadcast or multicast) address.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(bytes: [u8; 6]) -> Self {
        MacAddr(bytes)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || MacError::Invalid(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_macs_are_stable_local_unicast_and_distinct() {
        let a = MacAddr::for_guest("node1", 0);
        assert_eq!(a, MacAddr::for_guest("node1", 0));
        assert_ne!(a, MacAddr::for_guest("node1", 1));
        assert_ne!(a, MacAddr::for_guest("node2", 0));
        assert_eq!(a.0[0], 0x02);
        assert!(!a.is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast());
    }

    #[test]
    fn display_and_parse_round_trip() {
        let m: MacAddr = "52:54:00:ab:CD:0f".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(MacAddr::from([0x52, 0x54, 0, 0xab, 0xcd, 0x0f]), m);
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
