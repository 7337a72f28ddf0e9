//! Key generation and public-key export.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openpgp::cert::CertBuilder;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

/// Why a key could not be generated, loaded or exported.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Sequoia refused to generate the certificate.
    #[error("cannot generate a key for {user_id:?}: {reason}")]
    Generate {
        /// The user ID asked for.
        user_id: String,
        /// What sequoia said.
        reason: String,
    },
    /// The key file is not one OpenPGP certificate.
    #[error("{path} is not an OpenPGP key (armored or binary): {reason}")]
    Parse {
        /// The key file.
        path: PathBuf,
        /// What sequoia said.
        reason: String,
    },
    /// The certificate could not be serialized.
    #[error("cannot serialize key {fingerprint}: {reason}")]
    Serialize {
        /// The certificate fingerprint.
        fingerprint: String,
        /// What sequoia said.
        reason: String,
    },
}

/// Generates a certificate for `user_id` with a certification-only primary key and a signing
/// subkey, valid for `validity` from now (forever when `None`). Returns the armored secret key
/// (TSK) and the certificate.
pub fn generate_key(
    user_id: &str,
    validity: Option<Duration>,
) -> Result<(Vec<u8>, Cert), KeyError> {
    let error = |e: anyhow::Error| KeyError::Generate {
        user_id: user_id.to_owned(),
        reason: e.to_string(),
    };
    let (cert, _revocation) = CertBuilder::new()
        .add_userid(user_id)
        .add_signing_subkey()
        .set_validity_period(validity)
        .generate()
        .map_err(error)?;
    let armored = cert
        .as_tsk()
        .armored()
        .to_vec()
        .map_err(|e| serialize_error(&cert, e))?;
    Ok((armored, cert))
}

/// Loads one certificate (public or secret) from an armored or binary file.
pub fn load_cert(path: &Path) -> Result<Cert, KeyError> {
    Cert::from_file(path).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The armored public certificate, without any secret key material.
pub fn export_public(cert: &Cert) -> Result<Vec<u8>, KeyError> {
    cert.armored()
        .to_vec()
        .map_err(|e| serialize_error(cert, e))
}

fn serialize_error(cert: &Cert, e: anyhow::Error) -> KeyError {
    KeyError::Serialize {
        fingerprint: cert.fingerprint().to_hex(),
        reason: e.to_string(),
    }
}
