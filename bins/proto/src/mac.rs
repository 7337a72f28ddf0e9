//! Ethernet MAC addresses as they travel in text: on a guest's kernel command line (written
//! by the host, read by `sinew-init`), in flannel's lease JSON (`aa:bb:cc:dd:ee:ff`) and in
//! a network-booting machine's requests (iPXE's `aa-bb-cc-dd-ee-ff`, read as well).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A string is not six hex bytes separated by colons.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid MAC address `{0}`: expected six hex bytes separated by colons (52:54:00:12:34:56) or hyphens")]
pub struct MacError(pub String);

/// A 48-bit Ethernet MAC address; serialised as its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

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

    /// The address from a link-layer attribute, if it is six bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
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

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || MacError(text.to_owned());
        let mut bytes = [0u8; 6];
        // iPXE's `${mac:hexhyp}` separates with hyphens.
        let separator = if text.get(2..3) == Some("-") {
            '-'
        } else {
            ':'
        };
        let mut parts = text.split(separator);
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|part| part.len() == 2)
                .ok_or_else(invalid)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddr(bytes))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
        let mac: MacAddr = "52:54:00:ab:CD:0f".parse().expect("a valid MAC");
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(MacAddr::from([0x52, 0x54, 0, 0xab, 0xcd, 0x0f]), mac);
        assert_eq!(MacAddr::from_slice(&mac.0), Some(mac));
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
        let hyphens: MacAddr = "52-54-00-AB-cd-0f".parse().expect("iPXE's hexhyp form");
        assert_eq!(hyphens, mac);
    }

    #[test]
    fn parse_errors_quote_the_text() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
            "5254.00ab.cdef",
            "52-54:00:ab:cd:0f",
        ] {
            let error = bad.parse::<MacAddr>().expect_err(bad);
            assert_eq!(error, MacError(bad.to_owned()));
            assert!(error.to_string().contains(&format!("`{bad}`")), "{error}");
        }
    }

    #[test]
    fn serialises_as_text() {
        let mac = MacAddr([0x0a, 0x58, 0x0a, 0x05, 0x03, 0xff]);
        let json = serde_json::to_string(&mac).expect("serialisable");
        assert_eq!(json, "\"0a:58:0a:05:03:ff\"");
        assert_eq!(
            serde_json::from_str::<MacAddr>(&json).expect("parsable"),
            mac
        );
        assert!(serde_json::from_str::<MacAddr>("\"0a:58\"").is_err());
    }
}
