//! Guests booted from the network: iPXE on x86_64, UEFI and GRUB on aarch64, both from the
//! lab's boot server, booting signed machine images and ending up as guests booted directly
//! do; and a tampered image part that the server refuses, so the guest never boots it.

use sinew::boot::{Fetched, Part};
use sinew::machine_image::MachineImage;
use sinew::{Arch, LabSpec, MachineImageSpec, MachineSpec, Run};
use sinew_tests::{busybox, prepared, run};
use sinew_vm::MacAddr;

fn images(run: &Run, archs: &[Arch]) -> Vec<MachineImage> {
    let key = run
        .signing_key("it-netboot <it@sinew.example>")
        .expect("key");
    let spec = MachineImageSpec::new("it-netboot", "1.0")
        .archs(archs)
        .template("/etc/motd", "{{ image.name }} {{ image.version }}\n");
    run.build_machine_image(&spec, &key).expect("images build")
}

#[test]
fn guests_of_both_arches_boot_signed_images_from_the_network() {
    prepared();
    let run = run("it-netboot");
    let images = images(&run, &Arch::ALL);
    let lab = run
        .boot(
            &LabSpec::new("it-netboot")
                .machine(
                    MachineSpec::new("amd", Arch::X86_64)
                        .image(&images[0])
                        .network_boot(),
                )
                .machine(
                    MachineSpec::new("arm", Arch::Aarch64)
                        .image(&images[1])
                        .network_boot(),
                ),
        )
        .expect("lab boots from the network");
    let server = lab
        .boot_server()
        .expect("a lab with network boots has a boot server");
    let events = server.events();
    assert!(events.iter().all(|e| e.status < 400), "{events:#?}");
    for (host, image) in lab.hosts().iter().zip(&images) {
        let facts = host.facts().expect("facts");
        assert_eq!(facts.arch, host.arch().uname_machine(), "{host}");
        let label = facts.image.expect("the image names itself");
        assert_eq!(
            (label.name.as_str(), label.version.as_str()),
            ("it-netboot", "1.0")
        );
        assert_eq!(label.arch, facts.arch);
        let motd = host.get("/etc/motd").expect("rendered template");
        assert_eq!(motd, b"it-netboot 1.0\n");
        // The guest asked for its script, then its kernel and initramfs, named by the
        // image's digests.
        let mac = MacAddr::for_guest(host.name(), 0).to_string();
        let mine: Vec<&Fetched> = events
            .iter()
            .filter(|e| e.labels.get("mac") == Some(mac.as_str()))
            .map(|e| &e.fetched)
            .collect();
        let script = Fetched::Script {
            profile: Some(host.name().to_owned()),
        };
        assert!(mine.contains(&&script), "{host}: {mine:?}");
        let assets: Vec<(String, Option<Part>)> = mine
            .iter()
            .filter_map(|f| match f {
                Fetched::Asset { name, part } => Some((name.clone(), *part)),
                _ => None,
            })
            .collect();
        assert_eq!(
            assets,
            [
                (
                    format!("vmlinuz-{}", image.manifest.kernel.sha256),
                    Some(Part::Kernel)
                ),
                (
                    format!("initrd-{}", image.manifest.initrd.sha256),
                    Some(Part::Initrd)
                ),
            ],
            "{host}"
        );
    }
    // Same lab networking as direct boots: the data plane between the two.
    let (amd, arm) = (&lab.hosts()[0], &lab.hosts()[1]);
    amd.put_file(
        &busybox(Arch::X86_64).expect("busybox"),
        "/bin/busybox",
        0o755,
    )
    .expect("ship busybox");
    let target = arm.data_ip().to_string();
    let ping = amd
        .exec(&["/bin/busybox", "ping", "-c", "1", "-W", "5", &target])
        .expect("ping runs");
    assert!(
        ping.stdout_text().contains("1 packets received"),
        "{}",
        ping.stdout_text()
    );
    run.shutdown(lab).expect("shutdown");
}

#[test]
fn a_tampered_initramfs_is_refused_and_the_guest_never_boots_it() {
    prepared();
    let run = run("it-netboot-tampered");
    let mut image = images(&run, &[Arch::X86_64]).remove(0);
    // The guest boots from a copy, which the test then changes under the boot server.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("initrd.cpio");
    std::fs::copy(&image.initrd, &copy).unwrap();
    image.initrd = copy.clone();
    let spec = LabSpec::new("it-netboot-tampered").machine(
        MachineSpec::new("amd", Arch::X86_64)
            .image(&image)
            .network_boot(),
    );
    let mut lab = run.boot(&spec).expect("the untampered image boots");
    let mut bytes = std::fs::read(&copy).unwrap();
    // The last byte is cpio padding: the archive would still unpack, only the digest differs.
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&copy, &bytes).unwrap();

    // Changed under a running server: answered 403, and the lab says so at once.
    let started = std::time::Instant::now();
    let failed = run
        .reboot(&mut lab, "amd", None)
        .expect_err("refused at reboot");
    let message = format!("{failed:#}");
    assert!(
        message.contains("answered 403 to its request for asset initrd-")
            && message.contains("its digest is not the one the image names"),
        "{message}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refused promptly, not at the boot timeout: {:?}",
        started.elapsed()
    );
    drop(lab);

    // Changed before a lab starts: its boot server refuses to start, no guest boots.
    let failed = run.boot(&spec).expect_err("refused at load");
    let message = format!("{failed:#}");
    assert!(
        message.contains("task `boot server` failed")
            && message.contains("profile amd: boot.initrd: asset \"initrd-")
            && message.contains(&format!("but {} is expected", image.manifest.initrd.sha256)),
        "{message}"
    );
}
