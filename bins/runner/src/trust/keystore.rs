//! The keystore: `trustedkeys/root.d/<fingerprint>` for keys trusted for every image and
//! `trustedkeys/prefix.d/<segment>/…/<fingerprint>` for keys trusted under one name prefix.
//! Each file holds one armored public certificate; its name is the lowercase hex fingerprint.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use super::prefix::{ImageName, Prefix, PrefixError};

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    ReadKeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file holds no OpenPGP certificate, or a malformed one.
    #[error("{path} is not an OpenPGP certificate (armored or binary): {reason}")]
    NotACert {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A stored key could not be parsed; the keystore was edited by hand or is corrupt.
    #[error("stored key {path} is unreadable: {reason}")]
    CorruptKey {
        /// The stored key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The prefix is malformed.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// No stored key has this fingerprint (in the given scope).
    #[error("no trusted key with fingerprint {fingerprint}{}", scope.as_ref().map(|s| format!(" for {s}")).unwrap_or_default())]
    NotFound {
        /// The fingerprint asked for.
        fingerprint: String,
        /// The scope it was looked for in, if narrowed.
        scope: Option<TrustScope>,
    },
    /// A keystore file or directory could not be written or listed.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Where a key is trusted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrustScope {
    /// For every image.
    Root,
    /// For images whose repository equals or lies under the prefix.
    Prefix(Prefix),
}

impl std::fmt::Display for TrustScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustScope::Root => f.write_str("root (all images)"),
            TrustScope::Prefix(prefix) => write!(f, "prefix {prefix}"),
        }
    }
}

/// One trusted key as stored.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// Where it is trusted.
    pub scope: TrustScope,
    /// The primary key fingerprint, uppercase hex.
    pub fingerprint: String,
    /// The certificate's user IDs.
    pub user_ids: Vec<String>,
    /// The public certificate.
    pub cert: Cert,
}

impl TrustedKey {
    /// `cert`, trusted where `scope` says, with its fingerprint and user IDs.
    pub fn new(scope: TrustScope, cert: Cert) -> TrustedKey {
        TrustedKey {
            scope,
            fingerprint: cert.fingerprint().to_hex(),
            user_ids: cert
                .userids()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                .collect(),
            cert,
        }
    }
}

/// The on-disk keystore.
#[derive(Debug, Clone)]
pub struct KeyStore {
    root: PathBuf,
}

impl KeyStore {
    /// The keystore under a sinew-run state directory (`<dir>/trustedkeys`).
    pub fn in_state_dir(dir: &Path) -> KeyStore {
        KeyStore {
            root: dir.join("trustedkeys"),
        }
    }

    /// Trusts every certificate in `key_file` for `scope`; secret key material is dropped.
    /// Returns the keys added.
    pub fn trust(
        &self,
        scope: &TrustScope,
        key_file: &Path,
    ) -> Result<Vec<TrustedKey>, TrustError> {
        let bytes = fs::read(key_file).map_err(|source| TrustError::ReadKeyFile {
            path: key_file.to_owned(),
            source,
        })?;
        let not_a_cert = |reason: String| TrustError::NotACert {
            path: key_file.to_owned(),
            reason,
        };
        let parser = CertParser::from_bytes(&bytes).map_err(|e| not_a_cert(e.to_string()))?;
        let mut added = Vec::new();
        for cert in parser {
            let cert = cert
                .map_err(|e| not_a_cert(e.to_string()))?
                .strip_secret_key_material();
            let dir = self.scope_dir(scope);
            let path = dir.join(cert.fingerprint().to_hex().to_lowercase());
            let armored = cert
                .armored()
                .to_vec()
                .map_err(|e| not_a_cert(e.to_string()))?;
            write_atomically(&dir, &path, &armored)?;
            added.push(TrustedKey::new(scope.clone(), cert));
        }
        if added.is_empty() {
            return Err(not_a_cert("no certificate found".to_owned()));
        }
        Ok(added)
    }

    /// Every trusted key, root keys first, then by prefix.
    pub fn list(&self) -> Result<Vec<TrustedKey>, TrustError> {
        let mut keys = self.load_dir(&self.root.join("root.d"), &TrustScope::Root)?;
        let prefix_root = self.root.join("prefix.d");
        let mut stack = vec![(prefix_root.clone(), Vec::<String>::new())];
        while let Some((dir, segments)) = stack.pop() {
            for (path, name, is_dir) in read_dir_sorted(&dir)? {
                if is_dir {
                    let mut below = segments.clone();
                    below.push(name);
                    stack.push((path, below));
                } else if !segments.is_empty() && is_fingerprint_name(&name) {
                    let scope = TrustScope::Prefix(Prefix::from_segments(segments.clone())?);
                    keys.push(load_key(&path, scope)?);
                }
            }
        }
        keys.sort_by(|a, b| (&a.scope, &a.fingerprint).cmp(&(&b.scope, &b.fingerprint)));
        Ok(keys)
    }

    /// Removes the key with `fingerprint` from `scope`, or from every scope when `None`.
    /// Returns the scopes it was removed from.
    pub fn remove(
        &self,
        fingerprint: &str,
        scope: Option<&TrustScope>,
    ) -> Result<Vec<TrustScope>, TrustError> {
        let wanted = fingerprint.replace(' ', "").to_uppercase();
        let mut removed = Vec::new();
        for key in self.list()? {
            let in_scope = scope.is_none_or(|s| *s == key.scope);
            if in_scope && key.fingerprint == wanted {
                let path = self.scope_dir(&key.scope).join(wanted.to_lowercase());
                fs::remove_file(&path).map_err(|source| TrustError::Io { path, source })?;
                removed.push(key.scope);
            }
        }
        if removed.is_empty() {
            return Err(TrustError::NotFound {
                fingerprint: wanted,
                scope: scope.cloned(),
            });
        }
        Ok(removed)
    }

    /// The keys trusted for `name`: root keys and keys of every prefix covering it.
    pub fn trusted_for(&self, name: &ImageName) -> Result<Vec<TrustedKey>, TrustError> {
        let mut keys = self.load_dir(&self.root.join("root.d"), &TrustScope::Root)?;
        let segments = name.repository().segments();
        for depth in 1..=segments.len() {
            let prefix = Prefix::from_segments(segments[..depth].to_vec())?;
            let scope = TrustScope::Prefix(prefix);
            keys.extend(self.load_dir(&self.scope_dir(&scope), &scope)?);
        }
        Ok(keys)
    }

    fn scope_dir(&self, scope: &TrustScope) -> PathBuf {
        match scope {
            TrustScope::Root => self.root.join("root.d"),
            TrustScope::Prefix(prefix) => prefix
                .segments()
                .iter()
                .fold(self.root.join("prefix.d"), |dir, segment| dir.join(segment)),
        }
    }

    fn load_dir(&self, dir: &Path, scope: &TrustScope) -> Result<Vec<TrustedKey>, TrustError> {
        read_dir_sorted(dir)?
            .into_iter()
            .filter(|(_, name, is_dir)| !is_dir && is_fingerprint_name(name))
            .map(|(path, _, _)| load_key(&path, scope.clone()))
            .collect()
    }
}

fn load_key(path: &Path, scope: TrustScope) -> Result<TrustedKey, TrustError> {
    let corrupt = |reason: String| TrustError::CorruptKey {
        path: path.to_owned(),
        reason,
    };
    let cert = Cert::from_file(path).map_err(|e| corrupt(e.to_string()))?;
    let expected = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if cert.fingerprint().to_hex().to_lowercase() != expected {
        return Err(corrupt(format!(
            "holds certificate {}, not {expected}",
            cert.fingerprint()
        )));
    }
    Ok(TrustedKey::new(scope, cert))
}

fn is_fingerprint_name(name: &str) -> bool {
    (name.len() == 40 || name.len() == 64)
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lists a directory as (path, file name, is directory); a missing directory is empty.
fn read_dir_sorted(dir: &Path) -> Result<Vec<(PathBuf, String, bool)>, TrustError> {
    let io_err = |source| TrustError::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        let is_dir = entry.file_type().map_err(io_err)?.is_dir();
        out.push((
            entry.path(),
            entry.file_name().to_string_lossy().into_owned(),
            is_dir,
        ));
    }
    out.sort();
    Ok(out)
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let io_err = |source| TrustError::Io {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}
