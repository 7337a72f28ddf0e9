//! sinew-vm against real QEMU: stock Debian cloud kernels from `Kernel::fetch`, a
//! busybox initramfs made with `Initramfs` and the kernel's resolved virtio modules,
//! booted under TCG.
//!
//! Kernels and the arm64 busybox are cached in the SDK's cache (`$SINEW_CACHE_DIR`,
//! default `~/.cache/sinew`), so only the first run downloads; `SINEW_DEB_DIR` points
//! the fetch at pre-downloaded `.deb` files instead of apt.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sinew_tests::{busybox, cache_dir, free_port};
use sinew_vm::machine::VmError;
use sinew_vm::qmp::Event;
use sinew_vm::{accel, modules, qemu};
use sinew_vm::{
    Accel, AccelPolicy, Arch, ControlNic, DataNic, Ending, Initramfs, Kernel, MacAddr, MachineSpec,
    Switch, Vm,
};

/// Generous: TCG guests share two cores with whatever else is building.
const BOOT: Duration = Duration::from_secs(120);
const READY: &str = "SINEW-READY";

/// A test guest's initramfs and what went into it.
struct Image {
    kernel: Kernel,
    modules: usize,
    initrd: PathBuf,
}

/// An initramfs whose `/init` (busybox sh) mounts the basics, loads the modules
/// the kernel needs for its NICs in resolved order, prints
/// `SINEW-READY <machine> <release> modules=<n>` and then runs `role`.
fn image(arch: Arch, dir: &Path, role: &str) -> Result<Image> {
    // `find` first: asking apt what is newest costs seconds per call.
    let kernel =
        Kernel::find(&cache_dir(), arch).or_else(|_| Kernel::fetch(&cache_dir(), arch, &|_| {}))?;
    let wanted = qemu::required_modules(arch);
    let resolved = modules::resolve(&kernel.modules_dir, wanted)?;
    let mut init = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n",
    );
    let mut image = Initramfs::new();
    image.add_file_from("bin/busybox", &busybox(arch)?, 0o755)?;
    for module in &resolved {
        let inside = format!("lib/modules/{}/{}", kernel.release, module.rel_path);
        image.add_file_from(&inside, &module.path, 0o644)?;
        init.push_str(&format!(
            "insmod /{inside} || echo SINEW-INSMOD-FAILED {}\n",
            module.name
        ));
    }
    init.push_str(&format!(
        "echo \"{READY} $(uname -m) $(uname -r) modules=$(wc -l < /proc/modules)\"\n{role}\n"
    ));
    image.add_file("init", init, 0o755)?;
    for d in ["proc", "sys", "dev"] {
        image.add_dir(d, 0o755)?;
    }
    let initrd = dir.join(format!("{arch}.cpio"));
    std::fs::write(&initrd, image.finish())?;
    Ok(Image {
        kernel,
        modules: resolved.len(),
        initrd,
    })
}

fn spec(name: &str, image: &Image, dir: &Path) -> MachineSpec {
    let mut spec = MachineSpec::new(name, &image.kernel, &image.initrd, dir);
    spec.accel = Accel::Tcg;
    spec.memory_mib = 256;
    spec
}

/// Waits for the ready line and checks it names the right machine, kernel and
/// module count.
async fn ready(vm: &Vm, image: &Image) -> Result<()> {
    let line = vm.console().wait_for_line(READY, BOOT).await?;
    let expected = format!(
        "{READY} {} {} modules={}",
        image.kernel.arch, image.kernel.release, image.modules
    );
    ensure!(
        line.trim() == expected,
        "guest {} said {line:?}, expected {expected:?}",
        vm.spec().name
    );
    let text = vm.console().text()?;
    ensure!(
        !text.contains("SINEW-INSMOD-FAILED"),
        "a module failed to load:\n{text}"
    );
    Ok(())
}

/// Whether a live process (not a zombie) with this pid mentions `needle` on its
/// command line; pids may be reused, hence the needle.
fn running(pid: u32, needle: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(&*needle.to_string_lossy())
}

#[test]
fn real_kernels_resolve_their_virtio_modules_in_load_order() -> Result<()> {
    let expected: [(Arch, &[&str]); 2] = [
        (
            Arch::X86_64,
            &[
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "button",
                "evdev",
                "qemu_fw_cfg",
            ],
        ),
        (
            Arch::Aarch64,
            &[
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "evdev",
                "qemu_fw_cfg",
            ],
        ),
    ];
    for (arch, names) in expected {
        let kernel = Kernel::fetch(&cache_dir(), arch, &|_| {})?;
        assert_eq!(Kernel::find(&cache_dir(), arch)?.release, kernel.release);
        assert!(
            kernel
                .release
                .ends_with(&format!("-cloud-{}", arch.debian_arch())),
            "{}",
            kernel.release
        );
        let got = modules::resolve(&kernel.modules_dir, qemu::required_modules(arch))?;
        let got: Vec<&str> = got.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(got, names, "{arch}");
        let err = modules::resolve(&kernel.modules_dir, &["no_such_module"])
            .err()
            .context("unknown module resolved")?;
        let err = err.to_string();
        assert!(
            err.contains("no_such_module") && err.contains(&kernel.release),
            "{err}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn both_arches_boot_under_tcg_and_power_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut guests = Vec::new();
    for arch in Arch::ALL {
        let image = image(arch, dir.path(), "poweroff -f")?;
        let started = Instant::now();
        let vm = Vm::spawn(spec(&format!("boot-{arch}"), &image, dir.path()))?;
        guests.push((vm, image, started));
    }
    async fn timed((vm, image, started): &(Vm, Image, Instant)) -> Result<Duration> {
        ready(vm, image).await.map(|()| started.elapsed())
    }
    let (a, b) = tokio::join!(timed(&guests[0]), timed(&guests[1]));
    for ((vm, _, _), took) in guests.iter().zip([a?, b?]) {
        println!(
            "{} reached userspace {:.2}s after spawn",
            vm.spec().arch,
            took.as_secs_f64()
        );
    }
    for (vm, _, _) in &guests {
        let status = vm
            .wait_exit(BOOT)
            .await
            .context("guest did not power off")?;
        assert!(
            status.success(),
            "{}: QEMU exited with {status}",
            vm.spec().name
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_guests_on_one_switch_ping_each_other() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let switch = Switch::start(&dir.path().join("data.sock"))?;
    let net = |ip: &str| {
        format!(
            "ip link set eth0 up\nip addr add {ip}/24 dev eth0\n\
             echo \"SINEW-MAC $(cat /sys/class/net/eth0/address)\""
        )
    };
    // x86 pings aarch64: one segment, both NIC transports (virtio-mmio and PCI).
    let pinger = format!(
        "{}\nfor i in $(seq 1 60); do\n  if ping -c 1 -W 1 10.99.0.2 >/dev/null; then echo SINEW-PING-OK; break; fi\ndone\n\
         exec sleep 100000",
        net("10.99.0.1")
    );
    let target = format!("{}\nexec sleep 100000", net("10.99.0.2"));
    let mut vms = Vec::new();
    for (arch, role) in [(Arch::X86_64, pinger), (Arch::Aarch64, target)] {
        let image = image(arch, dir.path(), &role)?;
        let mut spec = spec(&format!("net-{arch}"), &image, dir.path());
        let mac = MacAddr::for_guest(&spec.name, 1);
        spec.data = Some(DataNic {
            switch_socket: switch.socket().to_owned(),
            mac,
        });
        vms.push((Vm::spawn(spec)?, mac));
    }
    for (vm, mac) in &vms {
        let line = vm.console().wait_for_line("SINEW-MAC", BOOT).await?;
        assert_eq!(line.trim(), format!("SINEW-MAC {mac}"));
    }
    assert_eq!(switch.port_count(), 2);
    let ping = vms[0]
        .0
        .console()
        .wait_for_line("SINEW-PING-OK", BOOT)
        .await;
    ping.with_context(|| {
        format!(
            "aarch64 console:\n{}",
            vms[1].0.console().last_lines(10).join("\n")
        )
    })?;
    Ok(())
}

#[tokio::test]
async fn control_nic_forwards_a_loopback_port_to_the_guest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let role = format!(
        "ip link set eth0 up\nip addr add {}/24 dev eth0\n\
         mkdir -p /www\necho hello-from-guest > /www/index.html\nhttpd -p 7000 -h /www\n\
         echo SINEW-HTTP-UP\nexec sleep 100000",
        qemu::CONTROL_GUEST_ADDR
    );
    let image = image(Arch::X86_64, dir.path(), &role)?;
    let host_port = free_port()?;
    let mut spec = spec("ctl", &image, dir.path());
    spec.control = Some(ControlNic {
        host_port,
        guest_port: 7000,
        published: Vec::new(),
        mac: MacAddr::for_guest("ctl", 0),
    });
    let vm = Vm::spawn(spec)?;
    vm.console().wait_for_line("SINEW-HTTP-UP", BOOT).await?;
    let mut body = String::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, host_port))?;
        stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
        body.clear();
        // slirp accepts before the guest answers; an empty reply means not yet.
        if stream.read_to_string(&mut body).is_ok() && body.contains("hello-from-guest") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no page through 127.0.0.1:{host_port}; last reply {body:?}")
}

#[tokio::test]
async fn qmp_reports_status_and_the_guests_own_shutdown() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let image = image(Arch::X86_64, dir.path(), "sleep 3\npoweroff -f")?;
    let mut vm = Vm::spawn(spec("qmp", &image, dir.path()))?;
    let mut qmp = vm.qmp(Duration::from_secs(5)).await?;
    ready(&vm, &image).await?;
    let status = qmp.status().await?;
    assert!(status.running, "{status:?}");
    match qmp.wait_shutdown(BOOT).await? {
        Event::SHUTDOWN { data, .. } => assert!(data.guest, "{data:?}"),
        other => bail!("expected SHUTDOWN, got {other:?}"),
    }
    let status = vm
        .wait_exit(Duration::from_secs(10))
        .await
        .context("QEMU still runs after SHUTDOWN")?;
    assert!(status.success(), "{status}");
    assert_eq!(
        vm.shutdown(Duration::from_secs(1)).await?,
        Ending::AlreadyGone
    );
    Ok(())
}

#[tokio::test]
async fn x86_power_button_reaches_the_guest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Any input event (the ACPI power button is the only input device) powers off. The
    // guest says it is armed only once every reader holds its device open: an event sent
    // before that would be lost.
    let role = "for e in /dev/input/event*; do\n  (dd if=$e of=/dev/null bs=24 count=1 2>/dev/null && poweroff -f) &\ndone\n\
                n=$(ls /dev/input | grep -c event)\n\
                until [ \"$(ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c /dev/input/event)\" -ge \"$n\" ]; do sleep 1; done\n\
                echo SINEW-ARMED $(ls /dev/input)\nexec sleep 100000";
    let image = image(Arch::X86_64, dir.path(), role)?;
    let mut vm = Vm::spawn(spec("button", &image, dir.path()))?;
    let armed = vm.console().wait_for_line("SINEW-ARMED", BOOT).await?;
    assert!(armed.contains("event"), "no input device: {armed}");
    let ending = vm.shutdown(Duration::from_secs(60)).await?;
    assert_eq!(ending, Ending::PoweredOff);
    assert!(vm.try_wait().is_some_and(|s| s.success()));
    Ok(())
}

#[tokio::test]
async fn shutdown_quits_a_guest_that_ignores_the_power_button() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let image = image(Arch::Aarch64, dir.path(), "exec sleep 100000")?;
    let mut vm = Vm::spawn(spec("deaf", &image, dir.path()))?;
    ready(&vm, &image).await?;
    let started = Instant::now();
    let ending = vm.shutdown(Duration::from_secs(1)).await?;
    assert_eq!(ending, Ending::Quit);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!running(vm.pid(), &vm.spec().console_log));
    Ok(())
}

#[tokio::test]
async fn kvm_probe_ends_in_a_booted_guest_and_remembers_failures() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let arch = Arch::host().context("host is x86_64 or aarch64")?;
    let image = image(arch, dir.path(), "exec sleep 100000")?;
    // What the SDK does: a KVM guest whose QEMU exits at startup, or that prints nothing
    // within a few seconds (nested virtualisation), is given up, and TCG is used instead.
    for accel in accel::candidates_for(AccelPolicy::Auto, arch, &state)? {
        let mut spec = spec("probe", &image, dir.path());
        spec.accel = accel;
        let spawned = Vm::spawn(spec);
        if accel == Accel::Kvm {
            let speaks = match &spawned {
                Ok(vm) => vm
                    .console()
                    .wait_for_output(Duration::from_secs(5))
                    .await
                    .is_ok(),
                Err(err) => {
                    assert!(matches!(err, VmError::EarlyExit { .. }), "{err}");
                    false
                }
            };
            accel::remember(&state, speaks)?;
            if !speaks {
                drop(spawned);
                assert_eq!(
                    accel::candidates_for(AccelPolicy::Auto, arch, &state)?,
                    [Accel::Tcg]
                );
                continue;
            }
        }
        let vm = spawned?;
        ready(&vm, &image).await?;
        println!(
            "{arch} guest booted under {accel}; KVM verdict: {:?}",
            accel::remembered(&state)
        );
        return Ok(());
    }
    bail!("no accelerator booted the guest")
}

#[test]
fn missing_kernel_fails_fast_naming_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, Initramfs::new().finish())?;
    let kernel = Kernel {
        arch: Arch::X86_64,
        release: "6.1.0-0-cloud-amd64".into(),
        image: dir.path().join("no-such-vmlinuz"),
        modules_dir: dir.path().into(),
    };
    let started = Instant::now();
    let err = Vm::spawn(MachineSpec::new("nokernel", &kernel, &initrd, dir.path()))
        .err()
        .context("spawned without a kernel")?;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(err, VmError::BootFile { what: "kernel", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&*kernel.image.to_string_lossy()),
        "{err}"
    );
    Ok(())
}

#[test]
fn qemu_startup_failure_is_reported_with_its_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, Initramfs::new().finish())?;
    // A file that is not a kernel: QEMU fails while loading it.
    let bogus = dir.path().join("vmlinuz-bogus");
    std::fs::write(&bogus, vec![0u8; 4096])?;
    let kernel = Kernel {
        arch: Arch::X86_64,
        release: "bogus".into(),
        image: bogus,
        modules_dir: dir.path().into(),
    };
    let err = Vm::spawn(MachineSpec::new("bogus", &kernel, &initrd, dir.path()))
        .err()
        .context("spawned a bogus kernel")?;
    assert!(matches!(err, VmError::EarlyExit { .. }), "{err}");
    assert!(err.to_string().contains("qemu-system-x86_64"), "{err}");
    Ok(())
}

#[tokio::test]
async fn killed_or_dropped_qemu_leaves_no_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let image = image(Arch::X86_64, dir.path(), "exec sleep 100000")?;

    // kill(): SIGKILL and reap, idempotently.
    let mut vm = Vm::spawn(spec("killed", &image, dir.path()))?;
    vm.console().wait_for_output(BOOT).await?;
    let (pid, log) = (vm.pid(), vm.spec().console_log.clone());
    let status = vm.kill().context("kill reaps")?;
    assert_eq!(status.signal(), Some(9));
    assert_eq!(vm.kill(), Some(status));
    assert!(!running(pid, &log));

    // Drop: same, and the QMP socket goes too.
    let vm = Vm::spawn(spec("dropped", &image, dir.path()))?;
    let (pid, log, qmp) = (
        vm.pid(),
        vm.spec().console_log.clone(),
        vm.spec().qmp_socket.clone(),
    );
    assert!(running(pid, &log));
    drop(vm);
    assert!(!running(pid, &log) && !qmp.exists());

    // Killed from outside: waits fail at once with QEMU's status, not at the deadline.
    let vm = Vm::spawn(spec("shot", &image, dir.path()))?;
    std::process::Command::new("kill")
        .args(["-KILL", &vm.pid().to_string()])
        .status()?;
    let started = Instant::now();
    let err = vm
        .console()
        .wait_for_line("never printed", BOOT)
        .await
        .err()
        .context("a dead guest printed")?;
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(err.to_string().contains("QEMU exited"), "{err}");
    assert!(vm.try_wait().is_some());

    // PR_SET_PDEATHSIG: QEMU dies with the thread that spawned it.
    let thread_spec = spec("orphan", &image, dir.path());
    let vm = std::thread::spawn(move || Vm::spawn(thread_spec))
        .join()
        .expect("spawner thread")?;
    let status = vm
        .wait_exit(Duration::from_secs(10))
        .await
        .context("QEMU outlived its spawning thread")?;
    assert_eq!(status.signal(), Some(9));
    Ok(())
}
