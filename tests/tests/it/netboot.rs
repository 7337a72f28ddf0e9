//! Guests booted from the network: iPXE on x86_64, UEFI and GRUB on aarch64, both from the
//! lab's boot server, ending up as guests booted directly do.

use sinew::boot::Fetched;
use sinew::{Arch, LabSpec, MachineSpec};
use sinew_tests::{busybox, prepared, run};

#[test]
fn guests_of_both_arches_boot_from_the_network_and_work_as_direct_ones() {
    prepared();
    let run = run("it-netboot");
    let lab = run
        .boot(
            &LabSpec::new("it-netboot")
                .machine(MachineSpec::new("amd", Arch::X86_64).network_boot())
                .machine(MachineSpec::new("arm", Arch::Aarch64).network_boot()),
        )
        .expect("lab boots from the network");
    let server = lab
        .boot_server()
        .expect("a lab with network boots has a boot server");
    let events = server.events();
    for host in lab.hosts() {
        let facts = host.facts().expect("facts");
        assert_eq!(facts.arch, host.arch().uname_machine(), "{host}");
        let mac = sinew_vm::MacAddr::for_guest(host.name(), 0).to_string();
        let fetched: Vec<&Fetched> = events
            .iter()
            .filter(|e| {
                e.labels
                    .get("mac")
                    .is_some_and(|m| m.eq_ignore_ascii_case(&mac))
            })
            .map(|e| &e.fetched)
            .collect();
        let script = Fetched::Script {
            profile: Some(host.name().to_owned()),
        };
        let parts: Vec<_> = fetched
            .iter()
            .filter_map(|f| match f {
                Fetched::Asset { part, .. } => Some(*part),
                _ => None,
            })
            .collect();
        assert!(fetched.contains(&&script), "{host}: {fetched:?}");
        assert_eq!(
            parts,
            [
                Some(sinew::boot::Part::Kernel),
                Some(sinew::boot::Part::Initrd)
            ],
            "{host}: {fetched:?}"
        );
        assert!(events.iter().all(|e| e.status < 400), "{host}: {events:#?}");
    }
    // Same lab networking as direct boots: the data plane between the two.
    let amd = lab.host("amd").unwrap();
    let arm = lab.host("arm").unwrap();
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
