//! Boot benchmark: spawn-to-ready of a guest booted from sinew's initramfs, against the
//! same kernel booted from a bare busybox-init initramfs, per architecture, in one run.
//!
//! sinew is ready when its agent completes an authenticated handshake through the
//! forwarded port. The bare guest is ready when its `/init` shell script has done the same
//! groundwork (mount /proc, load the same modules, configure the control NIC) and printed
//! a marker on the console. Both run with the same machine, NICs, memory and accelerator.
//!
//! `cargo bench -p sinew-tests --bench boot`; `SINEW_BENCH_BOOTS=N` boots per case
//! (default 5). The last line is `RATIO boot=<sinew/bare, worst arch>`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew::{Arch, LabSpec, MachineSpec};
use sinew_tests::{busybox, median, prepared};
use sinew_vm::accel::Accel;
use sinew_vm::initramfs::Initramfs;
use sinew_vm::kernel::Kernel;
use sinew_vm::machine::Vm;
use sinew_vm::qemu::{self, ControlNic, DataNic};
use sinew_vm::switch::Switch;
use sinew_vm::MacAddr;

const MARKER: &str = "bare-init: ready";

fn main() -> Result<()> {
    let boots: usize = sinew_tests::bench_setting("SINEW_BENCH_BOOTS", 5);
    prepared();
    let paths = sinew::paths::Paths::from_env();
    let mut rows = Vec::new();
    for arch in Arch::ALL {
        let kernel = Kernel::find(&paths.cache, arch)?;
        let (mut sinew, accel) = sinew_boots(arch, boots)?;
        let mut bare = bare_boots(&kernel, accel, boots)?;
        let (s, b) = (median(&mut sinew), median(&mut bare));
        rows.push((arch, accel, s, b, s / b));
    }
    println!(
        "{:<8} {:<5} {:>6} {:>12} {:>12} {:>7}",
        "arch", "accel", "boots", "sinew p50 s", "bare p50 s", "ratio"
    );
    for (arch, accel, s, b, r) in &rows {
        println!(
            "{:<8} {:<5} {boots:>6} {s:>12.3} {b:>12.3} {r:>7.3}",
            arch.to_string(),
            format!("{accel:?}")
        );
    }
    let worst = rows.iter().map(|r| r.4).fold(f64::NAN, f64::max);
    println!("RATIO boot={worst:.3}");
    Ok(())
}

/// Boots a one-guest lab `boots` times; returns spawn-to-ready seconds and the accelerator.
fn sinew_boots(arch: Arch, boots: usize) -> Result<(Vec<f64>, Accel)> {
    let run = sinew_tests::run("bench-boot");
    let mut samples = Vec::new();
    let mut accel = Accel::Tcg;
    for _ in 0..boots {
        let lab = run.boot(&LabSpec::new("bench-boot").machine(MachineSpec::new("bench", arch)))?;
        let booted = lab.hosts()[0]
            .booted()
            .context("a booted host knows its boot")?;
        samples.push(booted.ready_after.as_secs_f64());
        accel = booted.accel;
    }
    Ok((samples, accel))
}

/// Boots the bare busybox initramfs `boots` times; returns spawn-to-marker seconds.
fn bare_boots(kernel: &Kernel, accel: Accel, boots: usize) -> Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("bare.cpio");
    std::fs::write(&initrd, bare_initramfs(kernel)?)?;
    let switch = Switch::start(&dir.path().join("data.sock"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut samples = Vec::new();
    for i in 0..boots {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let spec = qemu::MachineSpec {
            accel,
            memory_mib: 256,
            boot: qemu::Boot::Direct {
                kernel: kernel.image.clone(),
                initrd: initrd.clone(),
                cmdline_extra: "rdinit=/init".into(),
            },
            control: Some(ControlNic {
                host_port: port,
                guest_port: 7070,
                published: Vec::new(),
                mac: MacAddr::for_guest("bare", 0),
            }),
            data: Some(DataNic {
                switch_socket: switch.socket().to_path_buf(),
                mac: MacAddr::for_guest("bare", 1),
            }),
            ..qemu::MachineSpec::new(&format!("bare{i}"), kernel, &initrd, dir.path())
        };
        let started = Instant::now();
        let mut vm = Vm::spawn(spec)?;
        let seen = runtime.block_on(vm.console().wait_for_line(MARKER, Duration::from_secs(120)));
        let took = started.elapsed();
        if seen.is_err() {
            let tail = vm.console().last_lines(20).join("\n");
            vm.kill();
            bail!(
                "bare {} guest never printed {MARKER:?}:\n{tail}",
                kernel.arch
            );
        }
        vm.kill();
        samples.push(took.as_secs_f64());
    }
    Ok(samples)
}

/// busybox + the same modules sinew loads + a script doing the same groundwork.
fn bare_initramfs(kernel: &Kernel) -> Result<Vec<u8>> {
    let modules =
        sinew_vm::modules::resolve(&kernel.modules_dir, qemu::required_modules(kernel.arch))?;
    let mut image = Initramfs::new();
    image.add_file_from("bin/busybox", &busybox(kernel.arch)?, 0o755)?;
    let mut script = String::from("#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n");
    for module in &modules {
        let inside = format!("lib/modules/{}/{}", kernel.release, module.rel_path);
        image.add_file_from(&inside, &module.path, 0o644)?;
        script.push_str(&format!("/bin/busybox insmod /{inside}\n"));
    }
    script.push_str(
        "for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; /bin/busybox usleep 10000; done\n\
         /bin/busybox ip link set lo up\n/bin/busybox ip link set eth0 up\n\
         /bin/busybox ip addr add 10.0.2.15/24 dev eth0\n/bin/busybox ip route add default via 10.0.2.2\n",
    );
    script.push_str(&format!("echo {MARKER}\nexec /bin/busybox sleep 1000000\n"));
    image.add_file("init", script.into_bytes(), 0o755)?;
    image.add_dir("proc", 0o755)?;
    Ok(image.finish())
}
