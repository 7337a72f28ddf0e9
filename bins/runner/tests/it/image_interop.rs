//! Interop with real tools: images made by umoci (and copied by skopeo into an OCI archive),
//! signatures made by GnuPG, and sinew signatures checked by `gpg --verify`.

use crate::image_support as support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::*;

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tools() {
    ensure_tool("gpg", "gnupg");
    ensure_tool("umoci", "umoci");
    ensure_tool("skopeo", "skopeo");
}

/// A GnuPG home with an ed25519 signing key; returns its armored public key file.
fn gpg_home(env: &Env) -> String {
    let home = env.path("gnupg");
    fs::create_dir_all(&home).expect("the GnuPG home is created");
    sh(
        env.tmp.path(),
        "chmod 700 gnupg
         export GNUPGHOME=$PWD/gnupg
         gpg --batch --passphrase '' --quick-gen-key 'Interop <interop@example.com>' ed25519 sign never
         gpg --armor --export > gpg-public.asc",
    );
    env.path("gpg-public.asc").display().to_string()
}

/// Makes an umoci image with busybox-static, then deletes a file in a second layer.
fn umoci_image(env: &Env) {
    sh(
        env.tmp.path(),
        "umoci init --layout layout
         umoci new --image layout:latest
         umoci unpack --image layout:latest bundle
         mkdir -p bundle/rootfs/bin bundle/rootfs/etc/dropped
         cp /bin/busybox bundle/rootfs/bin/busybox
         ln -s busybox bundle/rootfs/bin/sh
         echo doomed > bundle/rootfs/etc/doomed
         echo kept > bundle/rootfs/etc/kept
         echo gone > bundle/rootfs/etc/dropped/file
         umoci repack --image layout:latest bundle
         rm bundle/rootfs/etc/doomed
         rm -r bundle/rootfs/etc/dropped
         umoci repack --image layout:latest bundle
         umoci config --image layout:latest --config.entrypoint /bin/busybox --config.cmd echo",
    );
}

fn top_blob(layout: &Path) -> String {
    let (top, _) = read_manifest(layout);
    blob_path(layout, &top.digest).display().to_string()
}

#[test]
fn umoci_image_signed_by_gnupg_fetches_verifies_and_renders() {
    tools();
    let env = Env::new();
    let public = gpg_home(&env);
    umoci_image(&env);
    let layout = env.path("layout");
    let blob = top_blob(&layout);
    sh(
        env.tmp.path(),
        &format!("GNUPGHOME=$PWD/gnupg gpg --batch --detach-sign --armor -o layout.asc {blob}"),
    );
    env.ok(&["trust", "--prefix", "example.com/busybox", &public]);

    let out = env.run(&["fetch", layout.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no full name"),
        "umoci's ref.name is a bare tag"
    );

    let printed = env.ok(&[
        "fetch",
        "--name",
        "example.com/busybox:latest",
        layout.to_str().unwrap(),
    ]);
    assert!(printed.starts_with("example.com/busybox:latest\tsha256:"));
    let rendered = env.store().resolve("example.com/busybox:latest").unwrap();
    assert_eq!(rendered.config.entrypoint, vec!["/bin/busybox"]);
    let root = &rendered.rootfs;
    assert!(!root.join("etc/doomed").exists(), "umoci whiteout applied");
    assert!(
        !root.join("etc/dropped").exists(),
        "umoci directory whiteout applied"
    );
    assert_eq!(fs::read_to_string(root.join("etc/kept")).unwrap(), "kept\n");
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", "echo rendered"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rendered\n");
}

#[test]
fn skopeo_oci_archive_fetches_with_its_annotated_name() {
    tools();
    let env = Env::new();
    let public = gpg_home(&env);
    umoci_image(&env);
    sh(
        env.tmp.path(),
        "skopeo copy oci:layout:latest oci-archive:image.tar:example.com/busybox:archived
         mkdir unpacked && tar -xf image.tar -C unpacked",
    );
    let blob = top_blob(&env.path("unpacked"));
    sh(
        env.tmp.path(),
        &format!("GNUPGHOME=$PWD/gnupg gpg --batch --detach-sign -o image.tar.asc {blob}"),
    );
    env.ok(&["trust", "--root", &public]);
    let printed = env.ok(&["fetch", env.path("image.tar").to_str().unwrap()]);
    assert!(
        printed.starts_with("example.com/busybox:archived\t"),
        "{printed}"
    );
    let rendered = env.store().resolve("example.com/busybox:archived").unwrap();
    assert!(rendered.rootfs.join("bin/busybox").is_file());
    assert!(
        fs::read_dir(env.state().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "staging cleaned"
    );
}

#[test]
fn sinew_signature_verifies_with_gpg() {
    tools();
    let env = Env::new();
    let key = env.path("key.pgp");
    env.ok(&[
        "key",
        "generate",
        "--userid",
        "Sinew <s@example.com>",
        "--out",
        key.to_str().unwrap(),
    ]);
    let public = env.ok(&["key", "export", "--key", key.to_str().unwrap()]);
    assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(!public.contains("PRIVATE"));
    fs::write(env.path("sinew-public.asc"), &public).unwrap();
    let out = env.path("img");
    env.ok(&[
        "image",
        "build",
        "--name",
        "example.com/s:1",
        "--arch",
        "x86_64=/bin/busybox",
        "--out",
        out.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    let blob = top_blob(&out);
    let verified = sh(
        env.tmp.path(),
        &format!(
            "mkdir -m 700 gnupg-verify
             export GNUPGHOME=$PWD/gnupg-verify
             gpg --batch --import sinew-public.asc
             gpg --batch --status-fd 1 --verify img.asc {blob}"
        ),
    );
    assert!(verified.contains("[GNUPG:] GOODSIG"), "{verified}");
    assert!(verified.contains("[GNUPG:] VALIDSIG"), "{verified}");

    fs::write(&blob, b"tampered").unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "GNUPGHOME=$PWD/gnupg-verify gpg --batch --verify img.asc {blob}"
        ))
        .current_dir(env.tmp.path())
        .status()
        .unwrap();
    assert!(!status.success(), "gpg must reject the tampered blob");
}
