//! TLS for `https://` sources: rustls on the ring provider, trusting the system roots
//! (rustls-native-certs, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus the CA
//! certificates the operator names with `--ca-cert`. Handshake failures are turned into
//! plain words: not trusted, name mismatch, expired, or a failed handshake.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A `--ca-cert` file is unreadable or holds no usable certificate.
    #[error("--ca-cert {path}: {reason} (expected a PEM file of CA certificates)")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Config(rustls::Error),
}

/// How many roots a client trusts, to say so when a server is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roots {
    /// Certificates from the system store.
    pub system: usize,
    /// Certificates from `--ca-cert` files.
    pub extra: usize,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} system roots and {} from --ca-cert",
            self.system, self.extra
        )
    }
}

/// Why a TLS connection was refused, in the words an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// No trusted CA issued the server's certificate.
    Untrusted {
        /// What the client trusted.
        roots: Roots,
    },
    /// The certificate is valid, but for other names.
    NameMismatch {
        /// The host of the URL.
        host: String,
        /// The names it is valid for, when the verifier reported them.
        presented: Vec<String>,
    },
    /// The certificate is outside its validity period.
    Expired(String),
    /// The certificate was refused for another reason.
    Rejected(String),
    /// The handshake failed before or apart from certificate checks.
    Handshake(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Untrusted { roots } => write!(
                f,
                "server certificate not trusted: no trusted CA issued it (trusted: {roots}); \
                 pass --ca-cert FILE (or SINEW_RUN_CA_CERT) with the CA that did"
            ),
            TlsFailure::NameMismatch { host, presented } if presented.is_empty() => write!(
                f,
                "server certificate name mismatch: it is not valid for {host}"
            ),
            TlsFailure::NameMismatch { host, presented } => write!(
                f,
                "server certificate name mismatch: it is valid for {}, not for {host}",
                presented.join(", ")
            ),
            TlsFailure::Expired(detail) => {
                write!(f, "server certificate expired or not yet valid: {detail}")
            }
            TlsFailure::Rejected(detail) => write!(f, "server certificate refused: {detail}"),
            TlsFailure::Handshake(detail) => write!(f, "TLS handshake failed: {detail}"),
        }
    }
}

impl TlsFailure {
    /// Classifies the rustls error found in `error`'s chain, from a connection to `host`
    /// trusting `roots`; `None` when there is none (the failure was not TLS).
    pub fn find(error: &(dyn StdError + 'static), host: &str, roots: Roots) -> Option<TlsFailure> {
        let tls = rustls_error(error)?;
        Some(match tls {
            rustls::Error::InvalidCertificate(certificate) => match certificate {
                CertificateError::UnknownIssuer => TlsFailure::Untrusted { roots },
                CertificateError::NotValidForName => TlsFailure::NameMismatch {
                    host: host.to_owned(),
                    presented: Vec::new(),
                },
                CertificateError::NotValidForNameContext { presented, .. } => {
                    TlsFailure::NameMismatch {
                        host: host.to_owned(),
                        presented: presented.iter().map(|n| bare_name(n)).collect(),
                    }
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::Expired(certificate.to_string())
                }
                other => TlsFailure::Rejected(other.to_string()),
            },
            other => TlsFailure::Handshake(other.to_string()),
        })
    }
}

/// The name inside the verifier's `DnsName("a.example")` / `IpAddress(..)` rendering.
fn bare_name(presented: &str) -> String {
    match presented.split_once('(') {
        Some((_, rest)) => rest.trim_end_matches(')').trim_matches('"').to_owned(),
        None => presented.to_owned(),
    }
}

/// A client configuration trusting the system roots plus every certificate in `ca_files`.
pub fn client_config(ca_files: &[PathBuf]) -> Result<(ClientConfig, Roots), TlsError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "reading the system CA certificates");
    }
    let (system, ignored) = store.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system CA certificates rustls cannot use");
    }
    let mut extra = 0;
    for path in ca_files {
        extra += add_ca_file(&mut store, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok((config, Roots { system, extra }))
}

/// Adds every certificate of a PEM file; returns how many.
fn add_ca_file(store: &mut RootCertStore, path: &Path) -> Result<usize, TlsError> {
    let bad = |reason: String| TlsError::CaCert {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block in it".to_owned()));
    }
    let count = certs.len();
    for cert in certs {
        store.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(count)
}

/// The rustls error somewhere in `error`'s chain. tokio-rustls wraps it in an `io::Error`,
/// which hyper-rustls wraps in another; `io::Error::source()` skips the wrapped error itself,
/// so wrapped errors are unwrapped explicitly.
fn rustls_error<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOTS: Roots = Roots {
        system: 3,
        extra: 1,
    };

    /// Wrapped as tokio-rustls and then hyper-rustls wrap it.
    fn classify(error: rustls::Error) -> Option<TlsFailure> {
        let tokio_rustls = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        TlsFailure::find(&std::io::Error::other(tokio_rustls), "a.example", ROOTS)
    }

    #[test]
    fn a_wrapped_unknown_issuer_reads_as_not_trusted() {
        let failure = classify(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
        .unwrap();
        assert_eq!(failure, TlsFailure::Untrusted { roots: ROOTS });
        let text = failure.to_string();
        assert!(
            text.contains("not trusted") && text.contains("--ca-cert"),
            "{text}"
        );
    }

    #[test]
    fn other_failures_are_told_apart() {
        let mismatch = classify(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))
        .unwrap();
        assert_eq!(
            mismatch.to_string(),
            "server certificate name mismatch: it is not valid for a.example"
        );
        let expired = classify(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert!(matches!(expired, Some(TlsFailure::Expired(_))));
        let handshake = classify(rustls::Error::HandshakeNotComplete);
        assert!(matches!(handshake, Some(TlsFailure::Handshake(_))));
    }

    #[test]
    fn presented_names_lose_their_rendering() {
        assert_eq!(bare_name("DnsName(\"b.example\")"), "b.example");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("c.example"), "c.example");
    }

    #[test]
    fn a_plain_io_error_is_not_tls() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(TlsFailure::find(&refused, "a.example", ROOTS), None);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = client_config(std::slice::from_ref(&path)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("ca.pem") && text.contains("no CERTIFICATE"),
            "{text}"
        );
        let missing = client_config(&[dir.path().join("missing.pem")]).unwrap_err();
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
    }
}
