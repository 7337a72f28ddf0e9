//! Ethernet MAC addresses as flannel writes them (`aa:bb:cc:dd:ee:ff`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A string is not six hex bytes separated by colons.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?}: expected a MAC address like 0a:58:0a:05:03:01")]
pub struct MacError(pub String);

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The address from a link-layer attribute, if it is six bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|part| part.len() == 2)
                .ok_or_else(|| MacError(text.to_owned()))?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacError(text.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacError(text.to_owned()));
        }
        Ok(Mac(bytes))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mac: Mac = "0A:58:0a:05:03:ff".parse().expect("a valid MAC");
        assert_eq!(mac, Mac([0x0a, 0x58, 0x0a, 0x05, 0x03, 0xff]));
        assert_eq!(mac.to_string(), "0a:58:0a:05:03:ff");
        assert_eq!(
            Mac::from_slice(&[1, 2, 3, 4, 5, 6]),
            Some(Mac([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(Mac::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "0a:58:0a:05:03",
            "0a:58:0a:05:03:01:02",
            "0a:58:0a:05:03:g1",
            "a:58:0a:05:03:01",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(MacError(bad.to_owned())), "{bad}");
        }
    }
}
