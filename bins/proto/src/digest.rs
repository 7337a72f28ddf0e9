//! SHA-256 digests of file contents, as they travel in requests and replies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// A SHA-256 digest. Serialized, displayed and parsed as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sha256Digest(#[serde(with = "hex::serde")] [u8; 32]);

/// A string that is not a SHA-256 digest in hex.
#[derive(Debug, Error)]
#[error("not a SHA-256 digest (64 hexadecimal characters): {0:?}")]
pub struct DigestParseError(String);

impl Sha256Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The size and digest of the file at `path`, read in a stream (blocking).
    pub fn of_file(path: &std::path::Path) -> std::io::Result<(u64, Self)> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        Ok((size, Self(hasher.finalize().into())))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 32]> for Sha256Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| DigestParseError(text.to_owned()))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_in_every_form() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let digest = Sha256Digest::of(b"");
        assert_eq!(digest.to_string(), empty);
        assert_eq!(empty.parse::<Sha256Digest>().unwrap(), digest);
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{empty}\"")
        );
        assert_eq!(
            serde_json::from_str::<Sha256Digest>(&format!("\"{empty}\"")).unwrap(),
            digest
        );
        assert!("abc".parse::<Sha256Digest>().is_err());
    }
}
