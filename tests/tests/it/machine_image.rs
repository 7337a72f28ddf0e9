//! Machine images: reproducible, signed, and a failing architecture reported as such.

use sinew::machine_image::MachineImageError;
use sinew::{Arch, MachineImageSpec, Outcome};
use sinew_tests::{prepared, run};

fn spec(version: &str) -> MachineImageSpec {
    MachineImageSpec::new("it-image", version)
        .bin("sinew-probe", "/usr/bin/sinew-probe")
        .template(
            "/etc/motd",
            "{{ greeting }} from {{ image.name }} {{ image.version }} ({{ image.arch }})\n",
        )
        .var("greeting", "hello")
        .arg("quiet")
}

#[test]
fn images_are_reproducible_signed_and_verified() {
    prepared();
    let run = run("it-image");
    let key = run.signing_key("it-image <it@sinew.example>").expect("key");
    let first = run.build_machine_image(&spec("1.0"), &key).expect("builds");
    let again = run
        .build_machine_image(&spec("1.0"), &key)
        .expect("builds again");
    assert_eq!(first.len(), 2);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.id, b.id, "{}", a.label());
        assert_eq!(a.manifest, b.manifest, "{}", a.label());
        assert_eq!(
            std::fs::read(&a.initrd).unwrap(),
            std::fs::read(&b.initrd).unwrap()
        );
        assert_eq!(
            b.status(),
            sinew::Status::Ok,
            "a rebuild stores nothing new"
        );
        assert_eq!(a.manifest.args, ["quiet"]);
        assert_eq!(a.manifest.arch, a.arch.uname_machine());
        assert_eq!(a.verify(&key).expect("verifies").signer, key.fingerprint());
    }
    let (amd, arm) = (&first[0], &first[1]);
    assert_ne!(amd.manifest.initrd.sha256, arm.manifest.initrd.sha256);
    // Another version is another image, and another key does not verify this one.
    let next = run
        .build_machine_image(&spec("1.1").archs(&[Arch::X86_64]), &key)
        .expect("1.1");
    assert_ne!(next[0].id, amd.id);
    let stranger = run.signing_key("stranger <no@sinew.example>").expect("key");
    let refused = amd.verify(&stranger).expect_err("a stranger's key");
    assert!(
        refused.to_string().contains("it-image 1.0 (x86_64)"),
        "{refused}"
    );
    // A manifest changed on disk is not the image any more.
    let mut copy = amd.clone();
    let dir = tempfile::tempdir().unwrap();
    copy.manifest_path = dir.path().join("manifest.json");
    let mut text = std::fs::read_to_string(&amd.manifest_path).unwrap();
    text = text.replace("\"quiet\"", "\"init=/bin/sh\"");
    std::fs::write(&copy.manifest_path, text).unwrap();
    assert!(matches!(
        copy.verify(&key),
        Err(MachineImageError::Tampered { .. })
    ));
}

#[test]
fn a_failing_architecture_fails_the_build_unless_it_keeps_going() {
    prepared();
    let run = run("it-image-fail");
    let key = run.signing_key("it-image <it@sinew.example>").expect("key");
    let broken = spec("2.0").template(
        "/etc/broken",
        "{% if image.arch == \"aarch64\" %}{{ not_a_variable }}{% endif %}",
    );
    let failed = run
        .build_machine_image(&broken, &key)
        .expect_err("aarch64 fails");
    let message = format!("{failed:#}");
    assert!(message.contains("template /etc/broken"), "{message}");
    let kept = run
        .build_machine_image(&broken.keep_going(), &key)
        .expect("x86_64 still builds");
    assert_eq!(
        kept.iter().map(|i| i.arch).collect::<Vec<_>>(),
        [Arch::X86_64]
    );
}

#[test]
fn bad_specs_name_the_field() {
    let run = run("it-image-spec");
    let key = run.signing_key("it-image <it@sinew.example>").expect("key");
    for (spec, expected) in [
        (MachineImageSpec::new("a b", "1"), "name: \"a b\""),
        (MachineImageSpec::new("a", ""), "version: \"\""),
        (
            MachineImageSpec::new("a", "1").bin("sinew-probe", "usr/bin/x"),
            "not an absolute file path",
        ),
        (
            MachineImageSpec::new("a", "1").template("/init", "x"),
            "/init belongs to sinew-init",
        ),
        (
            MachineImageSpec::new("a", "1")
                .template("/etc/x", "1")
                .template("/etc/x", "2"),
            "/etc/x is given twice",
        ),
    ] {
        let err = run.build_machine_image(&spec, &key).expect_err("refused");
        assert!(format!("{err:#}").contains(expected), "{err:#}");
    }
}
