//! What to boot and how: [`MachineSpec`] and the QEMU command line it becomes.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::{Accel, Arch, Kernel, MacAddr};

/// The guest's address on the control NIC (QEMU user networking; its DHCP server
/// also hands out this address).
pub const CONTROL_GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The host as seen from the control NIC (gateway of the control network).
pub const CONTROL_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Prefix length of the control network.
pub const CONTROL_PREFIX_LEN: u8 = 24;
const CONTROL_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);

/// One QEMU guest, direct-kernel booted from an initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// Guest name, used in QEMU's process title and in errors.
    pub name: String,
    /// Guest architecture.
    pub arch: Arch,
    /// Accelerator; see [`crate::accel::candidates`].
    pub accel: Accel,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// Initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// Appended to the base kernel command line (console, panic, TSC settings).
    pub cmdline_extra: String,
    /// x86_64 under TCG only: the guest TSC frequency in kHz, passed as
    /// `tsc_early_khz` because the kernel otherwise hangs calibrating the TSC on
    /// `microvm`. TCG guests read the host's TSC, so `None` (the usual value)
    /// means [`host_tsc_khz`], filled in by [`crate::Vm::spawn`].
    pub tsc_khz: Option<u32>,
    /// Unix socket QEMU serves QMP on (at most 107 bytes long).
    pub qmp_socket: PathBuf,
    /// File receiving the guest's serial console; QEMU's own stdout and stderr go
    /// to the same path with `.qemu` appended.
    pub console_log: PathBuf,
    /// The control NIC, if any.
    pub control: Option<ControlNic>,
    /// The data-plane NIC, if any.
    pub data: Option<DataNic>,
}

/// The control NIC: QEMU user networking with `restrict=on` (the guest reaches
/// nothing outside), and one TCP port forwarded from 127.0.0.1 to the guest.
/// The guest is [`CONTROL_GUEST_ADDR`]/[`CONTROL_PREFIX_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlNic {
    /// Port on the host's 127.0.0.1.
    pub host_port: u16,
    /// Port in the guest it forwards to.
    pub guest_port: u16,
    /// The NIC's MAC; guests should find their NICs by MAC, not by name.
    pub mac: MacAddr,
}

/// The data-plane NIC: a port on the lab's [`crate::Switch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNic {
    /// The switch's unix socket (it must be listening before QEMU starts).
    pub switch_socket: PathBuf,
    /// The NIC's MAC.
    pub mac: MacAddr,
}

impl MachineSpec {
    /// A spec with defaults: TCG, 1 CPU, 512 MiB, host TSC, no NICs, and
    /// its QMP socket and console log in `run_dir` (named after `name`).
    pub fn new(name: &str, kernel: &Kernel, initrd: &Path, run_dir: &Path) -> MachineSpec {
        MachineSpec {
            name: name.to_owned(),
            arch: kernel.arch,
            accel: Accel::Tcg,
            cpus: 1,
            memory_mib: 512,
            kernel: kernel.image.clone(),
            initrd: initrd.to_owned(),
            cmdline_extra: String::new(),
            tsc_khz: None,
            qmp_socket: run_dir.join(format!("{name}.qmp")),
            console_log: run_dir.join(format!("{name}.console.log")),
            control: None,
            data: None,
        }
    }

    /// The full kernel command line.
    pub fn cmdline(&self) -> String {
        // panic=-1 reboots at once on a panic, and -no-reboot turns that reboot into
        // a QEMU exit: a crashed guest ends instead of sitting there. edd=off skips
        // the x86 setup code's BIOS disk probe, whose "Probing EDD" line is printed
        // before the kernel proper runs, even by a guest that then hangs under
        // nested KVM: without it, "any console output" would not prove a boot.
        let mut line = match self.arch {
            Arch::X86_64 => "console=ttyS0 panic=-1 edd=off".to_owned(),
            Arch::Aarch64 => "console=ttyAMA0 panic=-1".to_owned(),
        };
        if let (Arch::X86_64, Accel::Tcg, Some(khz)) = (self.arch, self.accel, self.tsc_khz) {
            line.push_str(&format!(" tsc_early_khz={khz}"));
        }
        if !self.cmdline_extra.trim().is_empty() {
            line.push(' ');
            line.push_str(self.cmdline_extra.trim());
        }
        line
    }

    /// Where QEMU's own stdout and stderr go: `<console_log>.qemu`.
    pub fn qemu_log(&self) -> PathBuf {
        let mut path = self.console_log.clone().into_os_string();
        path.push(".qemu");
        PathBuf::from(path)
    }
}

/// The QEMU arguments (without the binary, [`Arch::qemu_binary`]) for `spec`.
pub fn args(spec: &MachineSpec) -> Vec<OsString> {
    let mut a = Args::default();
    a.push("-name")
        .push_opts("guest=", &[OsStr::new(&spec.name)]);
    let (machine, cpu, nic) = match (spec.arch, spec.accel) {
        // ACPI stays on: it is how a guest `poweroff` ends QEMU on microvm.
        (Arch::X86_64, Accel::Tcg) => ("microvm,acpi=on", "max", "virtio-net-device"),
        (Arch::X86_64, Accel::Kvm) => ("microvm,acpi=on", "host", "virtio-net-device"),
        (Arch::Aarch64, Accel::Tcg) => ("virt", "cortex-a72", "virtio-net-pci"),
        (Arch::Aarch64, Accel::Kvm) => ("virt,gic-version=host", "host", "virtio-net-pci"),
    };
    a.push("-M").push(machine);
    a.push("-accel").push(match spec.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg,thread=multi",
    });
    a.push("-cpu").push(cpu);
    a.push("-smp").push(spec.cpus.to_string());
    a.push("-m").push(spec.memory_mib.to_string());
    a.push("-nodefaults")
        .push("-no-user-config")
        .push("-display")
        .push("none")
        .push("-no-reboot");
    a.push("-kernel").push(&spec.kernel);
    a.push("-initrd").push(&spec.initrd);
    a.push("-append").push(spec.cmdline());
    a.push("-chardev")
        .push_opts("file,id=console,path=", &[spec.console_log.as_os_str()]);
    a.push("-serial").push("chardev:console");
    a.push("-chardev").push_opts(
        "socket,id=qmp,server=on,wait=off,path=",
        &[spec.qmp_socket.as_os_str()],
    );
    a.push("-mon").push("chardev=qmp,mode=control");
    if let Some(ctl) = &spec.control {
        a.push("-netdev").push(format!(
            "user,id=ctl,restrict=on,net={CONTROL_NETWORK}/{CONTROL_PREFIX_LEN},host={CONTROL_GATEWAY},\
             dhcpstart={CONTROL_GUEST_ADDR},hostfwd=tcp:127.0.0.1:{}-:{}",
            ctl.host_port, ctl.guest_port,
        ));
        a.push("-device")
            .push(format!("{nic},netdev=ctl,mac={}", ctl.mac));
    }
    if let Some(data) = &spec.data {
        a.push("-netdev").push_opts(
            "stream,id=data,server=off,addr.type=unix,addr.path=",
            &[data.switch_socket.as_os_str()],
        );
        a.push("-device")
            .push(format!("{nic},netdev=data,mac={}", data.mac));
    }
    a.0
}

/// The modules (beyond the kernel's built-ins) a guest of `arch` needs for its
/// NICs and for the power button; resolve them with [`crate::modules::resolve`].
pub fn required_modules(arch: Arch) -> &'static [&'static str] {
    match arch {
        // button + evdev: microvm's ACPI power button (system_powerdown) reaches
        // userspace as an input event.
        Arch::X86_64 => &["virtio_mmio", "virtio_net", "button", "evdev"],
        Arch::Aarch64 => &["virtio_pci", "virtio_net", "evdev"],
    }
}

/// The host's TSC frequency in kHz from `/proc/cpuinfo` (`cpu MHz`), or `None`
/// where it is not listed (non-x86 hosts).
pub fn host_tsc_khz() -> Option<u32> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == "cpu MHz"))?
        .1
        .trim()
        .parse()
        .ok()?;
    let khz = (mhz * 1000.0).round();
    if !(khz >= 1.0 && khz <= f64::from(u32::MAX)) {
        return None;
    }
    // `khz` is a whole number in 1..=u32::MAX (rounded and checked above): the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let khz = khz as u32;
    Some(khz)
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.0.push(arg.as_ref().to_owned());
        self
    }

    /// Pushes `prefix` followed by `values` with commas doubled: QEMU's option
    /// syntax reads `,,` as a literal comma, so any path is safe.
    fn push_opts(&mut self, prefix: &str, values: &[&OsStr]) -> &mut Self {
        let mut bytes = prefix.as_bytes().to_vec();
        for value in values {
            for &b in value.as_bytes() {
                bytes.push(b);
                if b == b',' {
                    bytes.push(b',');
                }
            }
        }
        self.0.push(OsString::from_vec(bytes));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arch: Arch, accel: Accel) -> MachineSpec {
        let kernel = Kernel {
            arch,
            release: "6.1.0-56-cloud-amd64".into(),
            image: "/k/vmlinuz".into(),
            modules_dir: "/k/lib/modules/6.1.0-56-cloud-amd64".into(),
        };
        let mut spec = MachineSpec::new(
            "node1",
            &kernel,
            Path::new("/run/node1.cpio"),
            Path::new("/run"),
        );
        spec.accel = accel;
        spec.tsc_khz = Some(2_000_000);
        spec
    }

    fn joined(spec: &MachineSpec) -> String {
        args(spec)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn after<'a>(args: &'a [OsString], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .filter_map(|w| w[1].to_str())
            .collect()
    }

    #[test]
    fn common_flags_for_every_arch_and_accel() {
        for arch in Arch::ALL {
            for accel in [Accel::Kvm, Accel::Tcg] {
                let s = spec(arch, accel);
                let a = args(&s);
                for flag in ["-nodefaults", "-no-user-config", "-no-reboot"] {
                    assert!(a.iter().any(|x| x == flag), "{arch} {accel}: {flag}");
                }
                assert_eq!(after(&a, "-display"), ["none"]);
                assert_eq!(after(&a, "-kernel"), ["/k/vmlinuz"]);
                assert_eq!(after(&a, "-initrd"), ["/run/node1.cpio"]);
                assert_eq!(after(&a, "-serial"), ["chardev:console"]);
                assert!(
                    after(&a, "-chardev").contains(&"file,id=console,path=/run/node1.console.log")
                );
                assert!(after(&a, "-chardev")
                    .contains(&"socket,id=qmp,server=on,wait=off,path=/run/node1.qmp"));
                assert_eq!(after(&a, "-mon"), ["chardev=qmp,mode=control"]);
                assert_eq!(after(&a, "-m"), ["512"]);
                assert_eq!(after(&a, "-smp"), ["1"]);
                assert_eq!(after(&a, "-name"), ["guest=node1"]);
                assert!(!joined(&s).contains("-netdev"));
            }
        }
    }

    #[test]
    fn x86_is_microvm_with_tsc_only_under_tcg() {
        let tcg = spec(Arch::X86_64, Accel::Tcg);
        let a = args(&tcg);
        assert_eq!(after(&a, "-M"), ["microvm,acpi=on"]);
        assert_eq!(after(&a, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(after(&a, "-cpu"), ["max"]);
        assert_eq!(
            after(&a, "-append"),
            ["console=ttyS0 panic=-1 edd=off tsc_early_khz=2000000"]
        );
        let kvm = spec(Arch::X86_64, Accel::Kvm);
        let a = args(&kvm);
        assert_eq!(after(&a, "-accel"), ["kvm"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
        assert_eq!(after(&a, "-append"), ["console=ttyS0 panic=-1 edd=off"]);
    }

    #[test]
    fn aarch64_is_virt_with_pl011_console_and_no_tsc() {
        let mut tcg = spec(Arch::Aarch64, Accel::Tcg);
        tcg.cmdline_extra = " quiet ".into();
        let a = args(&tcg);
        assert_eq!(after(&a, "-M"), ["virt"]);
        assert_eq!(after(&a, "-cpu"), ["cortex-a72"]);
        assert_eq!(after(&a, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(after(&a, "-append"), ["console=ttyAMA0 panic=-1 quiet"]);
        let a = args(&spec(Arch::Aarch64, Accel::Kvm));
        assert_eq!(after(&a, "-M"), ["virt,gic-version=host"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
    }

    #[test]
    fn nics_use_the_arch_transport_fixed_macs_and_loopback_forwarding() {
        for (arch, device) in [
            (Arch::X86_64, "virtio-net-device"),
            (Arch::Aarch64, "virtio-net-pci"),
        ] {
            let mut s = spec(arch, Accel::Tcg);
            let ctl_mac = MacAddr::for_guest("node1", 0);
            let data_mac = MacAddr::for_guest("node1", 1);
            s.control = Some(ControlNic {
                host_port: 40022,
                guest_port: 7000,
                mac: ctl_mac,
            });
            s.data = Some(DataNic {
                switch_socket: "/run/lab,1/switch.sock".into(),
                mac: data_mac,
            });
            let a = args(&s);
            assert_eq!(
                after(&a, "-netdev"),
                [
                    "user,id=ctl,restrict=on,net=10.0.2.0/24,host=10.0.2.2,dhcpstart=10.0.2.15,hostfwd=tcp:127.0.0.1:40022-:7000",
                    "stream,id=data,server=off,addr.type=unix,addr.path=/run/lab,,1/switch.sock",
                ]
            );
            assert_eq!(
                after(&a, "-device"),
                [
                    format!("{device},netdev=ctl,mac={ctl_mac}"),
                    format!("{device},netdev=data,mac={data_mac}")
                ]
            );
        }
    }

    #[test]
    fn commas_in_paths_and_names_are_escaped() {
        let mut s = spec(Arch::X86_64, Accel::Tcg);
        s.name = "a,b".into();
        s.qmp_socket = "/r,un/q.sock".into();
        let a = args(&s);
        assert_eq!(after(&a, "-name"), ["guest=a,,b"]);
        assert!(
            after(&a, "-chardev").contains(&"socket,id=qmp,server=on,wait=off,path=/r,,un/q.sock")
        );
    }

    #[test]
    fn qemu_log_sits_next_to_the_console_log() {
        assert_eq!(
            spec(Arch::X86_64, Accel::Tcg).qemu_log(),
            Path::new("/run/node1.console.log.qemu")
        );
    }

    #[test]
    fn module_lists_per_arch() {
        assert!(required_modules(Arch::X86_64).contains(&"virtio_mmio"));
        assert!(required_modules(Arch::Aarch64).contains(&"virtio_pci"));
    }
}
