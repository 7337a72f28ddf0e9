//! `netboot`: build a signed machine image for x86_64 and aarch64, boot one guest of each
//! from the network (iPXE, and UEFI with GRUB), show what each asked the boot server for and
//! which signed image it runs, then build version 2, reboot one guest into it and show it
//! came back on the new image.
//!
//! `cargo run --bin netboot [-- --dry-run | -v]`

use sinew::boot::BootEvent;
use sinew::image::SigningKey;
use sinew::{Arch, Host, Lab, LabSpec, MachineImage, MachineImageSpec, MachineSpec, Run};

const IMAGE: &str = "netboot-demo";

fn main() -> anyhow::Result<()> {
    let run = Run::from_args("netboot")?;
    let key = run.signing_key("sinew playbooks <playbooks@sinew.example>")?;
    let v1 = run.build_machine_image(&image("1.0"), &key)?;
    let mut spec = LabSpec::new("netboot");
    for (name, arch) in [("amd", Arch::X86_64), ("arm", Arch::Aarch64)] {
        let mut machine = MachineSpec::new(name, arch).network_boot();
        if let Some(image) = v1.iter().find(|i| i.arch == arch) {
            machine = machine.image(image);
        }
        spec = spec.machine(machine);
    }
    let mut lab = run.boot(&spec)?;
    if !run.is_dry_run() {
        for (host, image) in lab.hosts().iter().zip(&v1) {
            show(&run, &lab, host, image, &key, 0)?;
        }
    }

    let v2 = run.build_machine_image(&image("2.0").archs(&[Arch::X86_64]), &key)?;
    let seen = lab.boot_server().map_or(0, |s| s.events().len());
    run.reboot(&mut lab, "amd", v2.first())?;
    if let (Some(host), Some(image)) = (lab.host("amd"), v2.first()) {
        show(&run, &lab, host, image, &key, seen)?;
    }
    run.shutdown(lab)?;
    run.finish()?;
    Ok(())
}

/// The image: the agent, and a message of the day rendered for each architecture.
fn image(version: &str) -> MachineImageSpec {
    MachineImageSpec::new(IMAGE, version)
        .template(
            "/etc/motd",
            "{{ image.name }} {{ image.version }} on {{ image.arch }}: booted from the network\n",
        )
        .arg("quiet")
}

/// What `host` asked the boot server for (from its `skip`th request on), and the image it
/// says it runs, checked against the signed one it should be.
fn show(
    run: &Run,
    lab: &Lab,
    host: &Host,
    image: &MachineImage,
    key: &SigningKey,
    skip: usize,
) -> anyhow::Result<()> {
    let mac = sinew::lab::control_mac(host.name()).to_string();
    let requests: Vec<String> = lab
        .boot_server()
        .map(|server| server.events())
        .unwrap_or_default()
        .into_iter()
        .skip(skip)
        .filter(|e: &BootEvent| e.labels.get("mac") == Some(mac.as_str()))
        .map(|e| format!("{} ({})", e.fetched, e.status))
        .collect();
    run.say(format!("{host:>4} asked the boot server for:"));
    for request in requests {
        run.say(format!("       {request}"));
    }
    let signer = run
        .task(&format!("verify {}", image.label()), || image.verify(key))?
        .signer;
    let label = run
        .task(&format!("image of [{host}]"), || host.facts())?
        .image;
    let motd = String::from_utf8_lossy(&host.get("/etc/motd")?).into_owned();
    match label {
        Some(label)
            if label.name == image.manifest.name && label.version == image.manifest.version =>
        {
            run.say(format!(
                "{host:>4} runs {} {} ({}), image sha256:{}, signed by {}: {}",
                label.name,
                label.version,
                label.arch,
                &image.id.to_hex()[..16],
                &signer[signer.len().saturating_sub(16)..],
                motd.trim()
            ));
            Ok(())
        }
        other => anyhow::bail!("{host} should run {} but reports {other:?}", image.label()),
    }
}
