//! `sinew-run trust`: keys stored per prefix in rkt's layout, listed, removed, and matched on
//! whole name segments when verifying.

use crate::image_support as support;

use std::fs;

use sequoia_openpgp::serialize::SerializeInto;
use sinew_runner::image::fetch;
use support::*;

fn key_file(env: &Env, name: &str) -> (sequoia_openpgp::Cert, String) {
    let cert = new_cert(&format!("{name} <{name}@example.com>"));
    let path = env.path(&format!("{name}.asc"));
    fs::write(
        &path,
        cert.as_tsk()
            .armored()
            .to_vec()
            .expect("the key serializes"),
    )
    .expect("the key file is written");
    (cert, path.display().to_string())
}

#[test]
fn trust_stores_public_keys_in_rkt_layout_and_lists_them() {
    let env = Env::new();
    let (app, app_file) = key_file(&env, "app");
    let (root, root_file) = key_file(&env, "root");
    env.ok(&["trust", "--prefix", "example.com/app", &app_file]);
    env.ok(&["trust", "--root", &root_file]);

    let fp = app.fingerprint().to_hex().to_lowercase();
    let stored = env
        .state()
        .join("trustedkeys/prefix.d/example.com/app")
        .join(&fp);
    let text = fs::read_to_string(&stored).unwrap();
    assert!(text.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(
        !text.contains("PRIVATE"),
        "secret material must not be stored"
    );
    let root_fp = root.fingerprint().to_hex().to_lowercase();
    assert!(env
        .state()
        .join("trustedkeys/root.d")
        .join(&root_fp)
        .is_file());

    let listed = env.ok(&["trust", "--list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with(&root.fingerprint().to_hex()) && lines[0].contains("root"));
    assert!(
        lines[1].contains("prefix example.com/app") && lines[1].contains("app <app@example.com>")
    );
}

#[test]
fn remove_deletes_from_one_scope_or_all() {
    let env = Env::new();
    let (cert, file) = key_file(&env, "k");
    env.ok(&["trust", "--prefix", "example.com/a", &file]);
    env.ok(&["trust", "--prefix", "example.com/b", &file]);
    env.ok(&["trust", "--root", &file]);
    let fp = cert.fingerprint().to_hex();
    env.ok(&["trust", "--remove", &fp, "--prefix", "example.com/a"]);
    assert_eq!(env.ok(&["trust", "--list"]).lines().count(), 2);
    let removed = env.ok(&["trust", "--remove", &fp.to_lowercase()]);
    assert_eq!(removed.lines().count(), 2, "{removed}");
    assert_eq!(env.ok(&["trust", "--list"]), "");
    let out = env.run(&["trust", "--remove", &fp]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no trusted key with fingerprint"));
}

#[test]
fn trust_refuses_bad_input_clearly() {
    let env = Env::new();
    let garbage = env.path("garbage.asc");
    fs::write(&garbage, "not a key").unwrap();
    let out = env.run(&["trust", "--root", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an OpenPGP certificate"));
    let (_, file) = key_file(&env, "k");
    let out = env.run(&["trust", "--prefix", "example.com/../etc", &file]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid path segment \"..\""));
    let out = env.run(&["trust", &file]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prefix PREFIX or --root"));
    assert!(!env.state().join("trustedkeys").exists());
}

#[test]
fn prefix_trust_covers_the_name_and_below_but_not_siblings() {
    let env = Env::new();
    let (cert, file) = key_file(&env, "k");
    env.ok(&["trust", "--prefix", "example.com/app", &file]);
    for (name, accepted) in [
        ("example.com/app:1", true),
        ("example.com/app/worker:1", true),
        ("example.com/apple:1", false),
        ("example.org/app:1", false),
    ] {
        let dir = name.replace(['/', ':'], "_");
        let layout = signed_layout(&env, &dir, name, &cert, &[Entry::File("f", b"x")]);
        let result = fetch(&env.store(), &env.keys(), &env.options(&layout));
        assert_eq!(
            result.is_ok(),
            accepted,
            "{name}: {:?}",
            result.err().map(|e| e.to_string())
        );
    }
}

#[test]
fn key_generate_makes_a_signing_subkey_with_the_requested_expiry() {
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::policy::StandardPolicy;

    let env = Env::new();
    let key = env.path("k.pgp");
    let printed = env.ok(&[
        "key",
        "generate",
        "--userid",
        "Exp <e@example.com>",
        "--out",
        key.to_str().unwrap(),
        "--expires-in",
        "2d",
    ]);
    let cert = sequoia_openpgp::Cert::from_file(&key).unwrap();
    assert_eq!(printed.trim(), cert.fingerprint().to_hex());
    assert!(cert.is_tsk());
    let policy = StandardPolicy::new();
    let valid = cert.with_policy(&policy, None).unwrap();
    let expiry = valid.primary_key().key_expiration_time().unwrap();
    let left = expiry
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((2 * 86_400 - 120..=2 * 86_400).contains(&left), "{left}");
    assert_eq!(valid.keys().subkeys().for_signing().count(), 1);
    let out = env.run(&[
        "key",
        "generate",
        "--userid",
        "x",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "an existing key file must not be overwritten"
    );
    let out = env.run(&[
        "key",
        "generate",
        "--userid",
        "x",
        "--out",
        env.path("y").to_str().unwrap(),
        "--expires-in",
        "2w",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"--expires-in: "2w": expected a duration such as 365d"#),
        "{stderr}"
    );
}
