//! OpenSSH's `known_hosts`: is the key a server presented the one recorded for it?
//!
//! Entries are matched as OpenSSH matches them: comma-separated patterns with `*` and `?`
//! and `!` negation, `[address]:port` off port 22, hashed names (`|1|salt|hash`, HMAC-SHA1)
//! and `@revoked` keys. Unlike OpenSSH, a host known under another key type is refused
//! too (the connection asks for the recorded types first, so a server that has one of
//! them presents it): a new key type is exactly what an attacker would present.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts, Marker};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};

/// The system-wide file OpenSSH also reads; never written.
const GLOBAL: &str = "/etc/ssh/ssh_known_hosts";

/// One writer at a time: hosts connecting in parallel record their keys to one file.
static RECORDING: Mutex<()> = Mutex::new(());

/// Errors reading or writing a `known_hosts` file.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// The file exists but could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be recorded.
    #[error("recording a host key in {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What the files say about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Recorded for this host.
    Known,
    /// The host is in no file.
    Unknown,
    /// The host is recorded with other keys: these, as `file:line fingerprint`.
    Changed(Vec<String>),
    /// The key is marked `@revoked` (at `file:line`).
    Revoked(String),
}

/// The `known_hosts` files checked for a host: the policy's file, then the system's.
#[derive(Debug, Clone)]
pub struct KnownHostsFiles {
    user: PathBuf,
    global: PathBuf,
}

/// A key and where it was found, for messages.
struct Found {
    at: String,
    entry: Entry,
}

impl KnownHostsFiles {
    /// Checks `user` (which trust on first use writes) and the system-wide file.
    pub fn new(user: &Path) -> Self {
        Self {
            user: user.into(),
            global: PathBuf::from(GLOBAL),
        }
    }

    /// The file trust on first use writes.
    pub fn user(&self) -> &Path {
        &self.user
    }

    /// Checks `user` only.
    #[cfg(test)]
    fn only(user: &Path) -> Self {
        Self {
            user: user.into(),
            global: PathBuf::new(),
        }
    }

    /// The key types recorded for `name`, to ask the server for first.
    pub fn algorithms(&self, name: &str) -> Result<Vec<Algorithm>, KnownHostsError> {
        let mut algorithms = Vec::new();
        for found in self.entries_for(name)? {
            let algorithm = found.entry.public_key().algorithm();
            if found.entry.marker().is_none() && !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
        Ok(algorithms)
    }

    /// What the files say about `key`, presented by the server known as `name`
    /// ([`super::SshTarget::known_hosts_name`]).
    pub fn check(&self, name: &str, key: &PublicKey) -> Result<Verdict, KnownHostsError> {
        let found = self.entries_for(name)?;
        if let Some(revoked) = found
            .iter()
            .find(|f| f.entry.marker() == Some(&Marker::Revoked) && same_key(f, key))
        {
            return Ok(Verdict::Revoked(revoked.at.clone()));
        }
        let recorded: Vec<&Found> = found
            .iter()
            .filter(|f| f.entry.marker().is_none())
            .collect();
        if recorded.iter().any(|f| same_key(f, key)) {
            return Ok(Verdict::Known);
        }
        if recorded.is_empty() {
            return Ok(Verdict::Unknown);
        }
        Ok(Verdict::Changed(
            recorded
                .iter()
                .map(|f| format!("{} {}", f.at, fingerprint(f.entry.public_key())))
                .collect(),
        ))
    }

    /// Appends `key` for `name` to the user's file, creating it (and its directory).
    pub fn record(&self, name: &str, key: &PublicKey) -> Result<(), KnownHostsError> {
        let write = |source| KnownHostsError::Write {
            path: self.user.clone(),
            source,
        };
        let line = format!(
            "{name} {}\n",
            key.to_openssh()
                .map_err(|e| write(std::io::Error::other(e)))?
        );
        let _one_writer = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.user.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let ends_in_newline = std::fs::read(&self.user)
            .map(|text| text.last().is_none_or(|&b| b == b'\n'))
            .unwrap_or(true);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.user)
            .map_err(write)?;
        let text = if ends_in_newline {
            line
        } else {
            format!("\n{line}")
        };
        file.write_all(text.as_bytes()).map_err(write)
    }

    fn entries_for(&self, name: &str) -> Result<Vec<Found>, KnownHostsError> {
        let mut found = Vec::new();
        for path in [&self.user, &self.global] {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) if path.as_os_str().is_empty() => continue,
                Err(source) => {
                    return Err(KnownHostsError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            };
            found.extend(entries(&text, path, name));
        }
        Ok(found)
    }
}

/// The entries of one file that match `name`. Lines OpenSSH would skip (a key type this
/// client does not know, a malformed line) are skipped, with a log line.
fn entries(text: &str, path: &Path, name: &str) -> Vec<Found> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), index + 1);
        let normalised = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let entry = match KnownHosts::new(&normalised).next() {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                tracing::debug!("{at}: skipped: {e}");
                continue;
            }
            None => continue,
        };
        if matches(entry.host_patterns(), name) {
            found.push(Found { at, entry });
        }
    }
    found
}

fn same_key(found: &Found, key: &PublicKey) -> bool {
    found.entry.public_key().key_data() == key.key_data()
}

/// `SHA256:...` as OpenSSH prints it, after the key type.
pub fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

fn matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
            ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let name = name.to_ascii_lowercase();
            let mut matched = false;
            for pattern in list {
                let pattern = pattern.to_ascii_lowercase();
                match pattern.strip_prefix('!') {
                    Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
                    Some(_) => {}
                    None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
                }
            }
            matched
        }
    }
}

/// OpenSSH's wildcard match: `*` any run of characters, `?` any one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two ed25519 keys and an ECDSA key, made with ssh-keygen for these tests.
    const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEaCPmdBVEqyFsq+s9jrAIR3mi4m6m7wXTgjbcnp6+3c";
    const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDlmIwyBV7tyJmpJbD5GPgMhsZz+rmjqG56TxxsQ3aom";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNT33ANbsls/w1CYSUdnbnDJBIot+W1ekDB5EBoNDXQlPqClU3AOJueZiD0NYoudruee94HTy88Yl/Xc0AXdlXU=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key")
    }

    fn files(text: &str) -> (tempfile::TempDir, KnownHostsFiles) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).expect("write");
        let files = KnownHostsFiles::only(&path);
        (dir, files)
    }

    #[test]
    fn a_recorded_key_is_known_and_another_key_of_a_recorded_host_is_changed() {
        let (_dir, files) = files(&format!("# comment\n\nweb1,192.0.2.10 {ED_A}\n"));
        for (name, verdict) in [
            ("web1", Verdict::Known),
            ("192.0.2.10", Verdict::Known),
            ("web2", Verdict::Unknown),
        ] {
            assert_eq!(
                files.check(name, &key(ED_A)).expect("check"),
                verdict,
                "{name}"
            );
        }
        let Verdict::Changed(recorded) = files.check("web1", &key(ED_B)).expect("check") else {
            panic!("a different key must be a change");
        };
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].ends_with(&format!(":3 {}", fingerprint(&key(ED_A)))));
        assert!(
            matches!(
                files.check("web1", &key(ECDSA)).expect("check"),
                Verdict::Changed(_)
            ),
            "another key type for a known host is refused too"
        );
    }

    #[test]
    fn ports_off_22_are_bracketed_and_patterns_follow_openssh() {
        let (_dir, files) = files(&format!(
            "[web1]:2222 {ED_A}\n*.example.org,!bad.example.org {ED_B}\nhost? {ECDSA}\n"
        ));
        for (name, presented, verdict) in [
            ("[web1]:2222", ED_A, Verdict::Known),
            ("web1", ED_A, Verdict::Unknown),
            ("a.EXAMPLE.org", ED_B, Verdict::Known),
            ("bad.example.org", ED_B, Verdict::Unknown),
            ("host7", ECDSA, Verdict::Known),
            ("host77", ECDSA, Verdict::Unknown),
        ] {
            let checked = files.check(name, &key(presented)).expect("check");
            assert_eq!(checked, verdict, "{name}");
        }
        assert_eq!(
            files.algorithms("[web1]:2222").expect("algorithms"),
            [Algorithm::Ed25519]
        );
    }

    #[test]
    fn hashed_names_match_by_hmac_and_revoked_keys_are_refused() {
        // `ssh-keygen -H` of a line for "localhost".
        let (_dir, files) = files(&format!(
            "|1|ORdi6M3CgZnEfkf9hWAgdbuxofg=|5RukmL9W1ztflP5JO8re7+pNrhM= {ED_A}\n@revoked * {ED_B}\n"
        ));
        assert_eq!(
            files.check("localhost", &key(ED_A)).expect("check"),
            Verdict::Known
        );
        assert_eq!(
            files.check("otherhost", &key(ED_A)).expect("check"),
            Verdict::Unknown
        );
        assert!(matches!(
            files.check("otherhost", &key(ED_B)).expect("check"),
            Verdict::Revoked(at) if at.ends_with(":2")
        ));
    }

    #[test]
    fn a_recorded_key_is_known_the_next_time() {
        let (_dir, files) = files(&format!("other {ED_B}"));
        files.record("[web1]:2222", &key(ED_A)).expect("record");
        assert_eq!(
            files.check("[web1]:2222", &key(ED_A)).expect("check"),
            Verdict::Known
        );
        assert_eq!(
            files.check("other", &key(ED_B)).expect("check"),
            Verdict::Known
        );
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"[h]:*", b"[h]:22"));
    }
}
