//! Detached, armored signatures.

use std::io::Write;

use openpgp::armor;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::Cert;
use sequoia_openpgp as openpgp;

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key has no usable (alive, unrevoked, signing-capable, unencrypted) secret key.
    #[error("key {fingerprint} has no usable signing secret key (is it a public key, expired, revoked or password-protected?)")]
    NoSigningKey {
        /// The certificate fingerprint.
        fingerprint: String,
    },
    /// Sequoia failed while writing the signature.
    #[error("signing with key {fingerprint} failed: {reason}")]
    Sign {
        /// The certificate fingerprint.
        fingerprint: String,
        /// What sequoia said.
        reason: String,
    },
}

/// Signs `data` with the first usable signing key of `cert`; returns an ASCII-armored detached
/// signature.
pub fn sign_detached(cert: &Cert, data: &[u8]) -> Result<Vec<u8>, SignError> {
    let fingerprint = cert.fingerprint().to_hex();
    let policy = StandardPolicy::new();
    let keypair = cert
        .keys()
        .with_policy(&policy, None)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .unencrypted_secret()
        .next()
        .and_then(|ka| ka.key().clone().into_keypair().ok())
        .ok_or_else(|| SignError::NoSigningKey {
            fingerprint: fingerprint.clone(),
        })?;
    let failed = |e: anyhow::Error| SignError::Sign {
        fingerprint: fingerprint.clone(),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let message = Armorer::new(message)
        .kind(armor::Kind::Signature)
        .build()
        .map_err(failed)?;
    let mut signer = Signer::new(message, keypair)
        .map_err(failed)?
        .detached()
        .build()
        .map_err(failed)?;
    signer.write_all(data).map_err(|e| failed(e.into()))?;
    signer.finalize().map_err(failed)?;
    Ok(out)
}
