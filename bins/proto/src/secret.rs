//! The per-lab secret that agent and SDK both hold.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Length of a [`Secret`] in bytes.
pub const SECRET_LEN: usize = 32;

/// A per-lab shared secret: 32 random bytes, known to the SDK and to every agent of the lab.
///
/// On disk it is 64 lowercase hexadecimal characters, optionally followed by a newline.
/// It never travels over the wire: both ends prove they know it with HMAC-SHA256 (see
/// [`crate::handshake`]). `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

/// Why a [`Secret`] could not be made, read or written.
#[derive(Debug, Error)]
pub enum SecretError {
    /// The text is not 64 characters long (after removing one trailing newline).
    #[error("expected 64 hexadecimal characters, found {0}")]
    Length(usize),
    /// The text has the right length but is not hexadecimal.
    #[error("expected hexadecimal characters only")]
    NotHex,
    /// The operating system could not supply random bytes.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    /// The file could not be read.
    #[error("cannot read agent secret {}: {source}", path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file could be read but does not hold a secret.
    #[error("agent secret {} is malformed: {source}", path.display())]
    Malformed {
        /// The file that was read.
        path: PathBuf,
        /// What is wrong with its contents.
        source: Box<SecretError>,
    },
    /// The file could not be written.
    #[error("cannot write agent secret {}: {source}", path.display())]
    Write {
        /// The file that was written.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl Secret {
    /// Makes a new secret from the operating system's random number generator.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = [0u8; SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(SecretError::Random)?;
        Ok(Self(bytes))
    }

    /// Parses 64 hexadecimal characters, optionally followed by one newline (`\n` or `\r\n`).
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        if text.len() != SECRET_LEN * 2 {
            return Err(SecretError::Length(text.chars().count()));
        }
        let mut bytes = [0u8; SECRET_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| SecretError::NotHex)?;
        Ok(Self(bytes))
    }

    /// Reads a secret from a file written by [`Secret::save`] (or any file holding the hex form).
    ///
    /// Errors name the path.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_hex(&text).map_err(|source| SecretError::Malformed {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Writes the hex form and a newline to `path`, creating the file with mode 0600
    /// (an existing file keeps its mode).
    pub fn save(&self, path: &Path) -> Result<(), SecretError> {
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(format!("{}\n", self.to_hex()).as_bytes())?;
            file.sync_all()
        };
        write().map_err(|source| SecretError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The hex form (64 lowercase characters, no newline), e.g. to put in a guest's boot image.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_with_optional_newline() {
        let secret = Secret::generate().unwrap();
        let hex = secret.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Secret::from_hex(&hex).unwrap(), secret);
        assert_eq!(Secret::from_hex(&format!("{hex}\n")).unwrap(), secret);
        assert_eq!(Secret::from_hex(&format!("{hex}\r\n")).unwrap(), secret);
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(
            Secret::from_hex("abcd"),
            Err(SecretError::Length(4))
        ));
        assert!(matches!(
            Secret::from_hex(&"zz".repeat(32)),
            Err(SecretError::NotHex)
        ));
        let hex = Secret::generate().unwrap().to_hex();
        assert!(Secret::from_hex(&format!("{hex}\n\n")).is_err());
    }

    #[test]
    fn debug_hides_the_bytes() {
        let secret = Secret::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let secret = Secret::generate().unwrap();
        secret.save(&path).unwrap();
        assert_eq!(Secret::load(&path).unwrap(), secret);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let message = Secret::load(&missing).unwrap_err().to_string();
        assert!(message.contains("missing.key"), "{message}");
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "nope\n").unwrap();
        let message = Secret::load(&bad).unwrap_err().to_string();
        assert!(
            message.contains("bad.key") && message.contains("found 4"),
            "{message}"
        );
    }
}
