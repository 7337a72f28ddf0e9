//! Network boot benchmark: spawn-to-ready of a guest booting a signed machine image from the
//! network (iPXE on x86_64; UEFI, PXE and GRUB on aarch64) against the same image booted
//! directly (kernel and initramfs handed to QEMU), per architecture, in one run.
//!
//! Ready means the agent completed an authenticated handshake, as for every lab guest. The
//! two modes alternate, one one-guest lab at a time, so that both see the same machine.
//!
//! `cargo bench -p sinew-tests --bench netboot`; `SINEW_BENCH_BOOTS=N` boots per case
//! (default 5). The last line is `RATIO netboot=<network/direct, worst arch>`.

use anyhow::{Context, Result};
use sinew::{BootFrom, LabSpec, MachineImage, MachineImageSpec, MachineSpec, Run};
use sinew_tests::{median, prepared};

fn main() -> Result<()> {
    let boots: usize = sinew_tests::bench_setting("SINEW_BENCH_BOOTS", 5);
    prepared();
    let run = sinew_tests::run("bench-netboot");
    let key = run.signing_key("bench-netboot <bench@sinew.example>")?;
    let images = run.build_machine_image(&MachineImageSpec::new("bench-netboot", "1"), &key)?;
    let mut rows = Vec::new();
    for image in &images {
        let (mut direct, mut network) = (Vec::new(), Vec::new());
        for _ in 0..boots {
            direct.push(ready_after(&run, image, BootFrom::Direct)?);
            network.push(ready_after(&run, image, BootFrom::Network)?);
        }
        let (d, n) = (median(&mut direct), median(&mut network));
        rows.push((image.arch, d, n, n / d));
    }
    println!(
        "{:<8} {:>6} {:>13} {:>14} {:>7}",
        "arch", "boots", "direct p50 s", "network p50 s", "ratio"
    );
    for (arch, d, n, r) in &rows {
        println!(
            "{:<8} {boots:>6} {d:>13.3} {n:>14.3} {r:>7.3}",
            arch.to_string()
        );
    }
    let worst = rows.iter().map(|r| r.3).fold(f64::NAN, f64::max);
    println!("RATIO netboot={worst:.3}");
    Ok(())
}

/// Boots `image` in a one-guest lab as `boot` says; returns spawn-to-ready seconds.
fn ready_after(run: &Run, image: &MachineImage, boot: BootFrom) -> Result<f64> {
    let mut machine = MachineSpec::new("bench", image.arch).image(image);
    machine.boot = boot;
    let lab = run.boot(&LabSpec::new("bench-netboot").machine(machine))?;
    let booted = lab.hosts()[0]
        .booted()
        .context("a booted host knows its boot")?;
    let seconds = booted.ready_after.as_secs_f64();
    run.shutdown(lab)?;
    Ok(seconds)
}
