//! Verification of a detached signature: which trusted key made it, whether that key is
//! revoked or expired, whether the signature itself is alive, and whether the bytes match.

use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::packet::Signature;
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::policy::StandardPolicy;
use openpgp::types::RevocationStatus;
use openpgp::{Cert, KeyHandle, Packet};
use sequoia_openpgp as openpgp;

use crate::trust::TrustedKey;

/// Why a signature did not verify. Every variant names the image and the signing key.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The signature file holds no OpenPGP signature.
    #[error("signature for image {image} is not an OpenPGP signature: {reason}")]
    Malformed {
        /// The image name.
        image: String,
        /// What the parser said.
        reason: String,
    },
    /// The signing key is not trusted for this image's name.
    #[error("image {image} is signed by key {fingerprint}, which is not trusted for it{}", trusted_elsewhere_note(.trusted_for))]
    UntrustedKey {
        /// The image name.
        image: String,
        /// The signing key's fingerprint (or key ID when the key is unknown).
        fingerprint: String,
        /// Scopes where the key is trusted, none of which covers the image.
        trusted_for: Vec<String>,
    },
    /// The signing key (primary or subkey) is revoked.
    #[error("image {image} is signed by key {fingerprint}, which is revoked")]
    KeyRevoked {
        /// The image name.
        image: String,
        /// The certificate fingerprint.
        fingerprint: String,
    },
    /// The signing key (primary or subkey) has expired.
    #[error("image {image} is signed by key {fingerprint}, which has expired: {reason}")]
    KeyExpired {
        /// The image name.
        image: String,
        /// The certificate fingerprint.
        fingerprint: String,
        /// What sequoia said.
        reason: String,
    },
    /// The signature itself is expired (or dated in the future).
    #[error("the signature on image {image} by key {fingerprint} is not alive (expired or dated in the future): {reason}")]
    SignatureExpired {
        /// The image name.
        image: String,
        /// The certificate fingerprint.
        fingerprint: String,
        /// What sequoia said.
        reason: String,
    },
    /// The signature does not match the signed bytes, or the key cannot sign.
    #[error("bad signature on image {image} by key {fingerprint}: {reason}")]
    BadSignature {
        /// The image name.
        image: String,
        /// The certificate fingerprint.
        fingerprint: String,
        /// What sequoia said.
        reason: String,
    },
}

fn trusted_elsewhere_note(scopes: &[String]) -> String {
    if scopes.is_empty() {
        " (the key is not in the keystore)".to_owned()
    } else {
        format!(" (it is trusted only for: {})", scopes.join(", "))
    }
}

/// Verifies a detached `signature` (armored or binary) over `data` for image `image` against
/// the `trusted` keys. `known` are all keys in the keystore, used only to say where an
/// untrusted key is trusted instead. Succeeds when any signature in the file verifies and
/// returns the signing certificate's fingerprint; otherwise returns the first signature's
/// refusal.
pub fn verify_detached(
    image: &str,
    data: &[u8],
    signature: &[u8],
    trusted: &[TrustedKey],
    known: &[TrustedKey],
) -> Result<String, VerifyError> {
    let signatures = parse_signatures(image, signature)?;
    let mut first_error = None;
    for sig in &signatures {
        match verify_one(image, data, sig, trusted, known) {
            Ok(fingerprint) => return Ok(fingerprint),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| VerifyError::Malformed {
        image: image.to_owned(),
        reason: "no signature packet found".to_owned(),
    }))
}

fn parse_signatures(image: &str, bytes: &[u8]) -> Result<Vec<Signature>, VerifyError> {
    let malformed = |e: anyhow::Error| VerifyError::Malformed {
        image: image.to_owned(),
        reason: e.to_string(),
    };
    let mut signatures = Vec::new();
    let mut ppr = PacketParser::from_bytes(bytes).map_err(malformed)?;
    while let PacketParserResult::Some(pp) = ppr {
        let (packet, next) = pp.next().map_err(malformed)?;
        if let Packet::Signature(sig) = packet {
            signatures.push(sig);
        }
        ppr = next;
    }
    Ok(signatures)
}

fn verify_one(
    image: &str,
    data: &[u8],
    sig: &Signature,
    trusted: &[TrustedKey],
    known: &[TrustedKey],
) -> Result<String, VerifyError> {
    let issuers = sig.get_issuers();
    let Some(cert) = find_signer(trusted.iter().map(|k| &k.cert), &issuers) else {
        return Err(untrusted(image, &issuers, known));
    };
    let fingerprint = cert.fingerprint().to_hex();
    let policy = StandardPolicy::new();
    let bad = |reason: String| VerifyError::BadSignature {
        image: image.to_owned(),
        fingerprint: fingerprint.clone(),
        reason,
    };
    let expired = |reason: String| VerifyError::KeyExpired {
        image: image.to_owned(),
        fingerprint: fingerprint.clone(),
        reason,
    };
    let revoked = || VerifyError::KeyRevoked {
        image: image.to_owned(),
        fingerprint: fingerprint.clone(),
    };
    if let RevocationStatus::Revoked(_) = cert.revocation_status(&policy, None) {
        return Err(revoked());
    }
    let valid_cert = cert.with_policy(&policy, None).map_err(|e| {
        bad(format!(
            "certificate not valid under the standard policy: {e}"
        ))
    })?;
    valid_cert.alive().map_err(|e| expired(e.to_string()))?;
    let key = valid_cert
        .keys()
        .key_handles(issuers.iter())
        .next()
        .ok_or_else(|| {
            bad("the signing key has no valid binding under the standard policy".to_owned())
        })?;
    if let RevocationStatus::Revoked(_) = key.revocation_status() {
        return Err(revoked());
    }
    key.alive().map_err(|e| expired(e.to_string()))?;
    if !key.for_signing() {
        return Err(bad(format!(
            "key {} is not marked for signing",
            key.key().fingerprint()
        )));
    }
    sig.signature_alive(None, None)
        .map_err(|e| VerifyError::SignatureExpired {
            image: image.to_owned(),
            fingerprint: fingerprint.clone(),
            reason: e.to_string(),
        })?;
    sig.verify_message(key.key(), data)
        .map_err(|e| bad(e.to_string()))?;
    Ok(fingerprint)
}

fn find_signer<'a>(
    mut certs: impl Iterator<Item = &'a Cert>,
    issuers: &[KeyHandle],
) -> Option<&'a Cert> {
    certs.find(|cert| {
        cert.keys()
            .any(|ka| issuers.iter().any(|h| h.aliases(ka.key().key_handle())))
    })
}

fn untrusted(image: &str, issuers: &[KeyHandle], known: &[TrustedKey]) -> VerifyError {
    let holders: Vec<&TrustedKey> = known
        .iter()
        .filter(|k| find_signer(std::iter::once(&k.cert), issuers).is_some())
        .collect();
    let fingerprint = match holders.first() {
        Some(key) => key.fingerprint.clone(),
        None => issuers
            .iter()
            .map(|h| h.to_hex())
            .next()
            .unwrap_or_else(|| "(no issuer in signature)".to_owned()),
    };
    VerifyError::UntrustedKey {
        image: image.to_owned(),
        fingerprint,
        trusted_for: holders.iter().map(|k| k.scope.to_string()).collect(),
    }
}
