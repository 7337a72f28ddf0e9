//! Boot media: the base initramfs is reproducible and holds what the guest needs.

use std::process::{Command, Stdio};

use sinew::lab::{base_image, LabError};
use sinew::{Arch, Build};
use sinew_tests::{prepared, run};

#[test]
fn base_images_are_reproducible_and_carry_modules_in_load_order() {
    prepared();
    let run = run("it-media");
    let kernel = run.prepare(&[Arch::Aarch64]).expect("kernel").remove(0);
    let agents = run
        .build(&Build::bins(&["sinew-init"]))
        .expect("cached agent builds");
    let agent = agents
        .get("sinew-init", Arch::Aarch64)
        .expect("aarch64 agent");
    let (one, two) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );

    let first = base_image(one.path(), &kernel, agent, &["vxlan"]).expect("first build");
    let again = base_image(one.path(), &kernel, agent, &["vxlan"]).expect("second build");
    let elsewhere =
        base_image(two.path(), &kernel, agent, &["vxlan"]).expect("build in another cache");
    assert!(
        first.new && !again.new,
        "the second build must find the stored image"
    );
    assert_eq!(first.sha256, again.sha256);
    assert_eq!(
        first.sha256, elsewhere.sha256,
        "same inputs, same digest, whatever the cache"
    );
    assert_eq!(
        std::fs::read(&first.path).expect("read"),
        std::fs::read(&elsewhere.path).expect("read")
    );

    let listing = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(Stdio::from(
            std::fs::File::open(&first.path).expect("open image"),
        ))
        .output()
        .expect("cpio -t runs");
    assert!(listing.status.success());
    let entries = String::from_utf8_lossy(&listing.stdout);
    let entries: Vec<&str> = entries.lines().collect();
    for wanted in ["init", "etc/sinew/modules"] {
        assert!(
            entries.contains(&wanted),
            "{wanted} missing from {entries:?}"
        );
    }
    let mut sorted = entries.clone();
    sorted.sort_unstable();
    assert_eq!(entries, sorted, "entries are written in sorted order");

    let order = Command::new("cpio")
        .args(["-i", "--quiet", "--to-stdout", "etc/sinew/modules"])
        .stdin(Stdio::from(
            std::fs::File::open(&first.path).expect("open image"),
        ))
        .output()
        .expect("cpio -i runs");
    let order = String::from_utf8_lossy(&order.stdout).into_owned();
    let position = |name: &str| {
        order
            .lines()
            .position(|l| l.ends_with(&format!("/{name}.ko")))
            .unwrap_or_else(|| panic!("{name} not in {order}"))
    };
    assert!(
        position("udp_tunnel") < position("vxlan"),
        "dependencies load first:\n{order}"
    );
    assert!(
        position("virtio") < position("virtio_net"),
        "dependencies load first:\n{order}"
    );
    for module in order.lines() {
        let inside = format!("lib/modules/{}/{module}", kernel.release);
        assert!(
            entries.contains(&inside.as_str()),
            "{inside} listed but not in the image"
        );
    }

    let amd = agents
        .get("sinew-init", Arch::X86_64)
        .expect("x86_64 agent");
    let err =
        base_image(one.path(), &kernel, amd, &[]).expect_err("an x86_64 agent on an arm64 kernel");
    assert!(matches!(err, LabError::AgentArch { .. }), "{err}");
}
