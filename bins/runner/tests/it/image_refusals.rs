//! Every refusal of `fetch`: each asserts the specific error and that nothing reached the
//! store.

use crate::image_support as support;

use std::fs;
use std::time::{Duration, SystemTime};

use sinew_runner::image::oci::{MEDIA_LAYER_GZIP, MEDIA_MANIFEST};
use sinew_runner::image::{fetch, FetchError, UnpackError};
use sinew_runner::signing::VerifyError;
use support::*;

const NAME: &str = "example.com/app:1.0";

fn good_layer() -> Vec<Entry<'static>> {
    vec![Entry::Dir("bin"), Entry::File("bin/hello", b"hello")]
}

fn refused(env: &Env, layout: &std::path::Path) -> FetchError {
    let error =
        fetch(&env.store(), &env.keys(), &env.options(layout)).expect_err("fetch must be refused");
    env.assert_store_empty();
    error
}

#[test]
fn unsigned_image_is_refused() {
    let env = Env::new();
    let layout = env.path("img");
    write_layout(
        &layout,
        NAME,
        &[(MEDIA_LAYER_GZIP, gzip(&tar_layer(&good_layer())))],
    );
    env.trust(&new_cert("a"), Some("example.com/app"));
    match refused(&env, &layout) {
        FetchError::Unsigned { image, location } => {
            assert_eq!(image, NAME);
            assert_eq!(location, format!("{}.asc", layout.display()));
        }
        other => panic!("expected Unsigned, got {other}"),
    }
}

#[test]
fn tampered_manifest_blob_is_refused_by_digest() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let (top, _) = read_manifest(&layout);
    let path = blob_path(&layout, &top.digest);
    let mut bytes = fs::read(&path).unwrap();
    bytes.push(b' ');
    fs::write(&path, bytes).unwrap();
    match refused(&env, &layout) {
        FetchError::DigestMismatch {
            image,
            what,
            expected,
            ..
        } => {
            assert_eq!(image, NAME);
            assert_eq!(what, "top-level manifest");
            assert_eq!(expected, top.digest);
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
}

#[test]
fn rewritten_manifest_with_consistent_digests_fails_the_signature() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let (_, mut manifest) = read_manifest(&layout);
    manifest.layers.clear();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sinew_runner::image::Digest::of(&bytes);
    fs::write(blob_path(&layout, &digest.to_string()), &bytes).unwrap();
    let mut top = read_manifest(&layout).0;
    top.digest = digest.to_string();
    top.size = bytes.len() as u64;
    top.media_type = MEDIA_MANIFEST.to_owned();
    write_index(&layout, &top);
    match refused(&env, &layout) {
        FetchError::Verify(VerifyError::BadSignature {
            image, fingerprint, ..
        }) => {
            assert_eq!(image, NAME);
            assert_eq!(fingerprint, cert.fingerprint().to_hex());
        }
        other => panic!("expected BadSignature, got {other}"),
    }
}

#[test]
fn tampered_config_is_refused() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let (_, manifest) = read_manifest(&layout);
    let path = blob_path(&layout, &manifest.config.digest);
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("/bin/sh", "/bin/xx");
    fs::write(&path, text).unwrap();
    match refused(&env, &layout) {
        FetchError::DigestMismatch { what, expected, .. } => {
            assert_eq!(what, "config");
            assert_eq!(expected, manifest.config.digest);
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
}

#[test]
fn tampered_layer_is_refused() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let (_, manifest) = read_manifest(&layout);
    let evil = gzip(&tar_layer(&[Entry::File("bin/hello", b"evil!")]));
    fs::write(blob_path(&layout, &manifest.layers[0].digest), evil).unwrap();
    match refused(&env, &layout) {
        FetchError::DigestMismatch { what, expected, .. } => {
            assert_eq!(what, "layer 1 of 1");
            assert_eq!(expected, manifest.layers[0].digest);
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
}

#[test]
fn key_not_in_keystore_is_refused() {
    let env = Env::new();
    let signer = new_cert("signer");
    env.trust(&new_cert("other"), None);
    let layout = signed_layout(&env, "img", NAME, &signer, &good_layer());
    match refused(&env, &layout) {
        FetchError::Verify(VerifyError::UntrustedKey {
            image, trusted_for, ..
        }) => {
            assert_eq!(image, NAME);
            assert!(trusted_for.is_empty());
        }
        other => panic!("expected UntrustedKey, got {other}"),
    }
}

#[test]
fn key_trusted_only_for_another_prefix_is_refused() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = signed_layout(&env, "img", "example.com/apple:1", &cert, &good_layer());
    match refused(&env, &layout) {
        FetchError::Verify(VerifyError::UntrustedKey {
            image,
            fingerprint,
            trusted_for,
        }) => {
            assert_eq!(image, "example.com/apple:1");
            assert_eq!(fingerprint, cert.fingerprint().to_hex());
            assert_eq!(trusted_for, vec!["prefix example.com/app".to_owned()]);
        }
        other => panic!("expected UntrustedKey, got {other}"),
    }
}

#[test]
fn expired_key_is_refused() {
    let env = Env::new();
    let cert = expired_cert("old");
    env.trust(&cert, Some("example.com"));
    let layout = env.path("img");
    let top = write_layout(
        &layout,
        NAME,
        &[(MEDIA_LAYER_GZIP, gzip(&tar_layer(&good_layer())))],
    );
    let signed = fs::read(blob_path(&layout, &top.digest)).unwrap();
    let when = SystemTime::now() - Duration::from_secs(2 * 86_400 - 3_600);
    fs::write(env.path("img.asc"), sign_at(&cert, &signed, when)).unwrap();
    match refused(&env, &layout) {
        FetchError::Verify(VerifyError::KeyExpired {
            image, fingerprint, ..
        }) => {
            assert_eq!(image, NAME);
            assert_eq!(fingerprint, cert.fingerprint().to_hex());
        }
        other => panic!("expected KeyExpired, got {other}"),
    }
}

#[test]
fn revoked_key_is_refused() {
    let env = Env::new();
    let (cert, revocation) = sequoia_openpgp::cert::CertBuilder::new()
        .add_userid("revoked")
        .add_signing_subkey()
        .generate()
        .unwrap();
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let (revoked, _) = cert.clone().insert_packets(revocation).unwrap();
    env.trust(&revoked, Some("example.com/app"));
    match refused(&env, &layout) {
        FetchError::Verify(VerifyError::KeyRevoked { image, fingerprint }) => {
            assert_eq!(image, NAME);
            assert_eq!(fingerprint, cert.fingerprint().to_hex());
        }
        other => panic!("expected KeyRevoked, got {other}"),
    }
}

#[test]
fn signature_by_wrong_key_over_other_bytes_is_refused_even_for_root_keys() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, None);
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let other = signed_layout(
        &env,
        "other",
        "example.com/other:1",
        &cert,
        &[Entry::File("x", b"x")],
    );
    fs::copy(
        format!("{}.asc", other.display()),
        format!("{}.asc", layout.display()),
    )
    .unwrap();
    assert!(matches!(
        refused(&env, &layout),
        FetchError::Verify(VerifyError::BadSignature { .. })
    ));
}

fn unpack_refusal(entries: &[Entry<'_>]) -> UnpackError {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = signed_layout(&env, "img", NAME, &cert, entries);
    match refused(&env, &layout) {
        FetchError::Unpack(error) => error,
        other => panic!("expected an unpack refusal, got {other}"),
    }
}

#[test]
fn parent_dir_entry_is_refused() {
    let error = unpack_refusal(&[Entry::File("bin/../../escaped", b"x")]);
    assert!(
        matches!(&error, UnpackError::ParentDir { path, .. } if path == "bin/../../escaped"),
        "{error}"
    );
}

#[test]
fn absolute_entry_is_refused() {
    let error = unpack_refusal(&[Entry::File("/etc/sinew-absolute-test", b"x")]);
    assert!(
        matches!(&error, UnpackError::AbsolutePath { path, .. } if path == "/etc/sinew-absolute-test"),
        "{error}"
    );
    assert!(!std::path::Path::new("/etc/sinew-absolute-test").exists());
}

#[test]
fn write_through_escaping_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = format!("../../../../../../../../../..{}", outside.path().display());
    let error = unpack_refusal(&[
        Entry::Symlink("out", &target),
        Entry::File("out/planted", b"x"),
    ]);
    assert!(
        matches!(&error, UnpackError::SymlinkEscape { path, .. } if path == "out/planted"),
        "{error}"
    );
    assert!(!outside.path().join("planted").exists());
}

#[test]
fn hardlink_to_outside_is_refused() {
    let error = unpack_refusal(&[Entry::Hardlink("passwd", "../../../../../../etc/passwd")]);
    assert!(
        matches!(&error, UnpackError::HardlinkEscape { path, .. } if path == "passwd"),
        "{error}"
    );
}

#[test]
fn hardlink_through_escaping_symlink_is_refused() {
    let error = unpack_refusal(&[
        Entry::Symlink("up", "../../../../../../../.."),
        Entry::Hardlink("passwd", "up/etc/passwd"),
    ]);
    assert!(
        matches!(&error, UnpackError::HardlinkEscape { target, .. } if target == "up/etc/passwd"),
        "{error}"
    );
}

#[test]
fn character_device_is_refused() {
    let error = unpack_refusal(&[Entry::CharDevice("dev-null")]);
    assert!(
        matches!(&error, UnpackError::DeviceNode { path, .. } if path == "dev-null"),
        "{error}"
    );
}

#[test]
fn block_device_is_refused() {
    let error = unpack_refusal(&[Entry::Dir("dev"), Entry::BlockDevice("dev/sda")]);
    assert!(
        matches!(&error, UnpackError::DeviceNode { path, .. } if path == "dev/sda"),
        "{error}"
    );
}

#[test]
fn cli_refusal_names_image_and_key_and_exits_nonzero() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/other"));
    let layout = signed_layout(&env, "img", NAME, &cert, &good_layer());
    let out = env.run(&["fetch", layout.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(NAME), "{stderr}");
    assert!(stderr.contains(&cert.fingerprint().to_hex()), "{stderr}");
    assert!(stderr.contains("not trusted"), "{stderr}");
    env.assert_store_empty();
}

#[test]
fn insecure_option_skips_verification_with_a_warning() {
    let env = Env::new();
    let layout = env.path("img");
    write_layout(
        &layout,
        NAME,
        &[(MEDIA_LAYER_GZIP, gzip(&tar_layer(&good_layer())))],
    );
    let out = env.run(&[
        "fetch",
        "--insecure-options=image",
        layout.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("signature verification skipped"),
        "{stderr}"
    );
    let rendered = env.store().resolve(NAME).unwrap();
    assert_eq!(
        fs::read(rendered.rootfs.join("bin/hello")).unwrap(),
        b"hello"
    );
}

#[test]
fn layer_not_matching_the_config_diff_id_is_refused() {
    use sinew_runner::image::oci::{ImageConfig, MEDIA_CONFIG};
    use sinew_runner::image::Digest;

    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com/app"));
    let layout = env.path("img");
    let mut top = write_layout(
        &layout,
        NAME,
        &[(MEDIA_LAYER_GZIP, gzip(&tar_layer(&good_layer())))],
    );
    let (_, mut manifest) = read_manifest(&layout);
    let mut config: ImageConfig =
        serde_json::from_slice(&fs::read(blob_path(&layout, &manifest.config.digest)).unwrap())
            .unwrap();
    let wrong = Digest::of(b"another layer").to_string();
    config.rootfs.diff_ids = vec![wrong.clone()];
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::of(&config_bytes);
    fs::write(
        blob_path(&layout, &config_digest.to_string()),
        &config_bytes,
    )
    .unwrap();
    manifest.config.digest = config_digest.to_string();
    manifest.config.size = config_bytes.len() as u64;
    manifest.config.media_type = MEDIA_CONFIG.to_owned();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = Digest::of(&manifest_bytes);
    fs::write(
        blob_path(&layout, &manifest_digest.to_string()),
        &manifest_bytes,
    )
    .unwrap();
    top.digest = manifest_digest.to_string();
    top.size = manifest_bytes.len() as u64;
    write_index(&layout, &top);
    sinew_runner::image::sign_layout(&layout, &cert).unwrap();
    match refused(&env, &layout) {
        FetchError::Unpack(UnpackError::DiffIdMismatch { expected, .. }) => {
            assert_eq!(expected, wrong)
        }
        other => panic!("expected DiffIdMismatch, got {other}"),
    }
}

#[test]
fn expired_signature_is_refused() {
    use sequoia_openpgp::armor;
    use sequoia_openpgp::packet::signature::SignatureBuilder;
    use sequoia_openpgp::policy::StandardPolicy;
    use sequoia_openpgp::serialize::Serialize;
    use sequoia_openpgp::types::SignatureType;
    use sequoia_openpgp::Packet;

    let env = Env::new();
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    let cert = sequoia_openpgp::cert::CertBuilder::new()
        .add_userid("sig-expiry")
        .add_signing_subkey()
        .set_creation_time(day_ago)
        .generate()
        .unwrap()
        .0;
    env.trust(&cert, Some("example.com/app"));
    let layout = env.path("img");
    let top = write_layout(
        &layout,
        NAME,
        &[(MEDIA_LAYER_GZIP, gzip(&tar_layer(&good_layer())))],
    );
    let signed = fs::read(blob_path(&layout, &top.digest)).unwrap();
    let policy = StandardPolicy::new();
    let mut keypair = cert
        .keys()
        .with_policy(&policy, None)
        .for_signing()
        .unencrypted_secret()
        .next()
        .unwrap()
        .key()
        .clone()
        .into_keypair()
        .unwrap();
    let signature = SignatureBuilder::new(SignatureType::Binary)
        .set_signature_creation_time(SystemTime::now() - Duration::from_secs(7_200))
        .unwrap()
        .set_signature_validity_period(Duration::from_secs(3_600))
        .unwrap()
        .sign_message(&mut keypair, &signed)
        .unwrap();
    let mut armored = Vec::new();
    let mut writer = armor::Writer::new(&mut armored, armor::Kind::Signature).unwrap();
    Packet::from(signature).serialize(&mut writer).unwrap();
    writer.finalize().unwrap();
    fs::write(env.path("img.asc"), armored).unwrap();
    match refused(&env, &layout) {
        FetchError::Verify(VerifyError::SignatureExpired {
            image, fingerprint, ..
        }) => {
            assert_eq!(image, NAME);
            assert_eq!(fingerprint, cert.fingerprint().to_hex());
        }
        other => panic!("expected SignatureExpired, got {other}"),
    }
}

#[test]
fn whiteout_naming_a_parent_is_refused() {
    for marker in ["etc/.wh...", "etc/.wh..", "etc/.wh."] {
        let error = unpack_refusal(&[Entry::Dir("etc"), Entry::File(marker, b"")]);
        assert!(
            matches!(&error, UnpackError::BadWhiteout { path, .. } if path == marker),
            "{error}"
        );
    }
}
