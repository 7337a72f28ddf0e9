//! Layer rendering: whiteouts and opaque directories across layers, links, modes, owners,
//! compression sniffing.

use crate::image_support as support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use sinew_runner::image::fetch;
use sinew_runner::image::oci::MEDIA_LAYER_GZIP;
use support::*;

const MEDIA_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

#[test]
fn layers_render_with_whiteouts_opaque_dirs_links_modes_and_owners() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com"));
    let lower = tar_layer(&[
        Entry::Dir("etc"),
        Entry::File("etc/a", b"a"),
        Entry::File("etc/b", b"b"),
        Entry::Dir("keep"),
        Entry::File("keep/x", b"x"),
        Entry::File("keep/y", b"y"),
        Entry::Dir("gone"),
        Entry::File("gone/deep", b"d"),
        Entry::Dir("opq"),
        Entry::File("opq/old1", b"1"),
        Entry::Dir("opq/sub"),
        Entry::File("opq/sub/old2", b"2"),
        Entry::Dir("bin"),
        Entry::FileOwned("bin/tool", b"#!tool", 0o755, 1000, 1001),
        Entry::FileOwned("bin/su", b"su", 0o4755, 0, 0),
        Entry::Symlink("link", "bin/tool"),
        Entry::Hardlink("bin/tool2", "bin/tool"),
        Entry::Symlink("abs", "/etc"),
    ]);
    let upper = tar_layer(&[
        Entry::File("etc/.wh.a", b""),
        Entry::File("keep/.wh.x", b""),
        Entry::File("keep/z", b"z"),
        Entry::File(".wh.gone", b""),
        Entry::File("opq/new", b"new"),
        Entry::File("opq/.wh..wh..opq", b""),
        Entry::File("abs/through", b"contained"),
    ]);
    let sniffed = gzip(&tar_layer(&[Entry::File("sniffed", b"gz")]));
    let layout = env.path("img");
    write_layout(
        &layout,
        "example.com/layers:1",
        &[
            (MEDIA_LAYER_GZIP, gzip(&lower)),
            (MEDIA_TAR, upper),
            (MEDIA_TAR, sniffed),
        ],
    );
    sinew_runner::image::sign_layout(&layout, &cert).unwrap();
    fetch(&env.store(), &env.keys(), &env.options(&layout)).unwrap();
    let root = env.store().resolve("example.com/layers:1").unwrap().rootfs;

    assert!(!root.join("etc/a").exists(), "whiteout must delete etc/a");
    assert_eq!(fs::read(root.join("etc/b")).unwrap(), b"b");
    assert!(!root.join("keep/x").exists());
    assert_eq!(fs::read(root.join("keep/y")).unwrap(), b"y");
    assert_eq!(fs::read(root.join("keep/z")).unwrap(), b"z");
    assert!(
        !root.join("gone").exists(),
        "whiteout of a directory removes it whole"
    );
    let mut opq: Vec<String> = fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    opq.sort();
    assert_eq!(opq, vec!["new"], "opaque dir hides lower entries only");
    let tool = fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o755);
    assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
    assert_eq!(tool.mtime(), 1_000_000);
    let su = fs::metadata(root.join("bin/su")).unwrap();
    assert_eq!(
        su.permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    assert_eq!(
        fs::read_link(root.join("link")).unwrap().to_str(),
        Some("bin/tool")
    );
    assert_eq!(
        fs::metadata(root.join("bin/tool2")).unwrap().ino(),
        tool.ino(),
        "hard link"
    );
    assert_eq!(
        fs::read(root.join("etc/through")).unwrap(),
        b"contained",
        "absolute symlinks resolve inside the rootfs"
    );
    assert!(!std::path::Path::new("/etc/through").exists());
    assert_eq!(
        fs::read(root.join("sniffed")).unwrap(),
        b"gz",
        "gzip sniffed despite the tar media type"
    );
    for marker in ["etc/.wh.a", "opq/.wh..wh..opq", ".wh.gone"] {
        assert!(
            !root.join(marker).exists(),
            "whiteout marker {marker} must not be rendered"
        );
    }
}

#[test]
fn rendered_rootfs_and_config_are_reused_and_resolve_is_by_name_or_digest() {
    let env = Env::new();
    let cert = new_cert("a");
    env.trust(&cert, Some("example.com"));
    let layout = signed_layout(
        &env,
        "img",
        "example.com/one:1",
        &cert,
        &[Entry::File("f", b"1")],
    );
    let first = fetch(&env.store(), &env.keys(), &env.options(&layout)).unwrap();
    let mut second_options = env.options(&layout);
    second_options.name = Some("example.com/two:1".to_owned());
    fetch(&env.store(), &env.keys(), &second_options).unwrap();
    assert_eq!(
        fs::read_dir(env.state().join("rootfs")).unwrap().count(),
        1,
        "one rendering per manifest"
    );

    let by_name = env.store().resolve("example.com/one:1").unwrap();
    let hex = first.manifest_digest.trim_start_matches("sha256:");
    assert_eq!(by_name.manifest_digest, first.manifest_digest);
    assert_eq!(by_name.config.entrypoint, vec!["/bin/sh"]);
    assert_eq!(by_name.config.env, vec!["PATH=/bin"]);
    assert_eq!(
        by_name.rootfs,
        env.state().join("rootfs").join(hex).join("rootfs")
    );
    assert!(env
        .state()
        .join("rootfs")
        .join(hex)
        .join("config.json")
        .is_file());
    let ambiguous = env.store().resolve(&hex[..12]).unwrap_err();
    assert!(
        ambiguous.to_string().contains("matches several images"),
        "{ambiguous}"
    );
    assert!(env.store().resolve("example.com/none:1").is_err());
}
