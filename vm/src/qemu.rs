//! What to boot and how: [`MachineSpec`] and the QEMU command line it becomes.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{netboot, Accel, Arch, Kernel, MacAddr};

/// The guest's address on the control NIC (QEMU user networking; its DHCP server
/// also hands out this address).
pub const CONTROL_GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The host as seen from the control NIC (gateway of the control network).
pub const CONTROL_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Prefix length of the control network.
pub const CONTROL_PREFIX_LEN: u8 = 24;
const CONTROL_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);

/// One QEMU guest, booted directly from a kernel and initramfs or from the network.
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
    /// How it boots.
    pub boot: Boot,
    /// Its SMBIOS system UUID (`-uuid`); [`guest_uuid`] gives a stable one per name.
    pub uuid: String,
    /// Files handed to the guest through QEMU's fw_cfg, as `opt/<name>` entries: the guest
    /// reads them from `/sys/firmware/qemu_fw_cfg/by_name/opt/<name>/raw`. They never cross
    /// a network, so secrets travel this way.
    pub fw_cfg: Vec<(String, PathBuf)>,
    /// Direct boot of an x86_64 guest under TCG only: the guest TSC frequency in kHz, passed as
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

/// How a guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads the kernel and initramfs itself (`-kernel`, `-initrd`, `-append`).
    Direct {
        /// Kernel image.
        kernel: PathBuf,
        /// Initramfs.
        initrd: PathBuf,
        /// Appended to the base kernel command line ([`kernel_args`] and the TSC setting).
        cmdline_extra: String,
    },
    /// The firmware boots from the control NIC and takes kernel, initramfs and command line
    /// from a boot server (see [`crate::netboot`]); it needs a [`ControlNic`].
    Network(NetworkBoot),
}

/// Where a network-booted guest finds its boot server and, on aarch64, its loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkBoot {
    /// The boot server's port on the host's 127.0.0.1. The guest reaches it as
    /// `http://10.0.2.100/` ([`crate::netboot::BOOT_SERVER`]) and nothing else: its user
    /// networking stays `restrict=on`.
    pub server_port: u16,
    /// aarch64: the TFTP root holding the GRUB loader the firmware boots first
    /// ([`crate::netboot::GrubLoader`]); x86_64 boots iPXE from the NIC's option ROM instead.
    pub loader: Option<PathBuf>,
}

/// The control NIC: QEMU user networking with `restrict=on` (the guest reaches
/// nothing outside), and TCP ports forwarded from 127.0.0.1 to the guest: the agent's,
/// and any the guest publishes.
/// The guest is [`CONTROL_GUEST_ADDR`]/[`CONTROL_PREFIX_LEN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlNic {
    /// Port on the host's 127.0.0.1.
    pub host_port: u16,
    /// Port in the guest it forwards to.
    pub guest_port: u16,
    /// More ports forwarded the same way: (port on the host's 127.0.0.1, port in the guest).
    pub published: Vec<(u16, u16)>,
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
    /// A direct-boot spec with defaults: TCG, 1 CPU, 512 MiB, host TSC, no NICs, and
    /// its QMP socket and console log in `run_dir` (named after `name`).
    pub fn new(name: &str, kernel: &Kernel, initrd: &Path, run_dir: &Path) -> MachineSpec {
        let boot = Boot::Direct {
            kernel: kernel.image.clone(),
            initrd: initrd.to_owned(),
            cmdline_extra: String::new(),
        };
        MachineSpec::booting(name, kernel.arch, boot, run_dir)
    }

    /// A spec with defaults that boots as `boot` says (see [`MachineSpec::new`]).
    pub fn booting(name: &str, arch: Arch, boot: Boot, run_dir: &Path) -> MachineSpec {
        MachineSpec {
            name: name.to_owned(),
            arch,
            accel: Accel::Tcg,
            cpus: 1,
            memory_mib: 512,
            boot,
            uuid: guest_uuid(name),
            fw_cfg: Vec::new(),
            tsc_khz: None,
            qmp_socket: run_dir.join(format!("{name}.qmp")),
            console_log: run_dir.join(format!("{name}.console.log")),
            control: None,
            data: None,
        }
    }

    /// The full kernel command line of a direct boot (`None` for a network boot, whose
    /// command line comes from the boot server).
    pub fn cmdline(&self) -> Option<String> {
        let Boot::Direct { cmdline_extra, .. } = &self.boot else {
            return None;
        };
        let mut line = kernel_args(self.arch).to_owned();
        if let (Arch::X86_64, Accel::Tcg, Some(khz)) = (self.arch, self.accel, self.tsc_khz) {
            line.push_str(&format!(" tsc_early_khz={khz}"));
        }
        if !cmdline_extra.trim().is_empty() {
            line.push(' ');
            line.push_str(cmdline_extra.trim());
        }
        Some(line)
    }

    /// Where QEMU's own stdout and stderr go: `<console_log>.qemu`.
    pub fn qemu_log(&self) -> PathBuf {
        let mut path = self.console_log.clone().into_os_string();
        path.push(".qemu");
        PathBuf::from(path)
    }
}

/// The kernel arguments every guest of `arch` boots with: the serial console, and
/// `panic=-1`, which reboots at once on a panic (and `-no-reboot` turns that reboot into a
/// QEMU exit: a crashed guest ends instead of sitting there). On x86_64 `edd=off` skips the
/// setup code's BIOS disk probe, whose "Probing EDD" line is printed before the kernel
/// proper runs, even by a guest that then hangs under nested KVM: without it, "any console
/// output" would not prove a boot.
pub fn kernel_args(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "console=ttyS0 panic=-1 edd=off",
        Arch::Aarch64 => "console=ttyAMA0 panic=-1",
    }
}

/// A stable SMBIOS UUID for the guest called `name` (RFC 9562 version 8, from its
/// SHA-256), so a guest keeps its identity, and its boot server group, across reboots.
pub fn guest_uuid(name: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"sinew guest uuid\0")
        .chain_update(name.as_bytes())
        .finalize();
    let mut b: [u8; 16] = digest[..16].try_into().expect("SHA-256 has 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The QEMU arguments (without the binary, [`Arch::qemu_binary`]) for `spec`.
pub fn args(spec: &MachineSpec) -> Vec<OsString> {
    let mut a = Args::default();
    a.push("-name")
        .push_opts("guest=", &[OsStr::new(&spec.name)]);
    let network = matches!(spec.boot, Boot::Network(_));
    let (machine, cpu, nic) = match (spec.arch, spec.accel, network) {
        // ACPI stays on: it is how a guest `poweroff` ends QEMU on microvm.
        (Arch::X86_64, Accel::Tcg, false) => ("microvm,acpi=on", "max", "virtio-net-device"),
        (Arch::X86_64, Accel::Kvm, false) => ("microvm,acpi=on", "host", "virtio-net-device"),
        // microvm has no firmware that boots from a NIC: the PC's SeaBIOS runs the NIC's
        // iPXE option ROM.
        (Arch::X86_64, Accel::Tcg, true) => ("pc", "max", "virtio-net-pci"),
        (Arch::X86_64, Accel::Kvm, true) => ("pc", "host", "virtio-net-pci"),
        (Arch::Aarch64, Accel::Tcg, _) => ("virt", "cortex-a72", "virtio-net-pci"),
        (Arch::Aarch64, Accel::Kvm, _) => ("virt,gic-version=host", "host", "virtio-net-pci"),
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
    a.push("-uuid").push(&spec.uuid);
    match &spec.boot {
        Boot::Direct { kernel, initrd, .. } => {
            a.push("-kernel").push(kernel);
            a.push("-initrd").push(initrd);
            a.push("-append").push(spec.cmdline().unwrap_or_default());
        }
        Boot::Network(_) if spec.arch == Arch::Aarch64 => {
            a.push("-bios").push(netboot::UEFI_FIRMWARE);
        }
        Boot::Network(_) => {}
    }
    for (name, file) in &spec.fw_cfg {
        let mut entry = OsString::from("name=opt/");
        entry.push(escape_opt(OsStr::new(name)));
        entry.push(",file=");
        entry.push(escape_opt(file.as_os_str()));
        a.push("-fw_cfg").push(entry);
    }
    a.push("-chardev")
        .push_opts("file,id=console,path=", &[spec.console_log.as_os_str()]);
    a.push("-serial").push("chardev:console");
    a.push("-chardev").push_opts(
        "socket,id=qmp,server=on,wait=off,path=",
        &[spec.qmp_socket.as_os_str()],
    );
    a.push("-mon").push("chardev=qmp,mode=control");
    if let Some(ctl) = &spec.control {
        let mut netdev = OsString::from(format!(
            "user,id=ctl,restrict=on,net={CONTROL_NETWORK}/{CONTROL_PREFIX_LEN},host={CONTROL_GATEWAY},\
             dhcpstart={CONTROL_GUEST_ADDR},hostfwd=tcp:127.0.0.1:{}-:{}",
            ctl.host_port, ctl.guest_port,
        ));
        for (host_port, guest_port) in &ctl.published {
            netdev.push(format!(",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"));
        }
        let mut device = format!("{nic},netdev=ctl,mac={}", ctl.mac);
        if let Boot::Network(boot) = &spec.boot {
            netdev.push(netboot::netdev_options(spec.arch, boot));
            // On x86_64 the NIC's default option ROM is iPXE (netboot::IPXE_ROM, which
            // QEMU finds in its firmware path).
            device.push_str(",bootindex=1");
        }
        a.push("-netdev").push(netdev);
        a.push("-device").push(device);
    }
    if let Some(data) = &spec.data {
        a.push("-netdev").push_opts(
            "stream,id=data,server=off,addr.type=unix,addr.path=",
            &[data.switch_socket.as_os_str()],
        );
        // No option ROM: the data NIC never boots anything, and SeaBIOS would spend time
        // initialising one.
        let rom = if network && spec.arch == Arch::X86_64 {
            ",romfile="
        } else {
            ""
        };
        a.push("-device")
            .push(format!("{nic},netdev=data,mac={}{rom}", data.mac));
    }
    a.0
}

/// The modules (beyond the kernel's built-ins) a guest of `arch` needs for its
/// NICs and for the power button; resolve them with [`crate::modules::resolve`].
pub fn required_modules(arch: Arch) -> &'static [&'static str] {
    match arch {
        // button + evdev: microvm's ACPI power button (system_powerdown) reaches
        // userspace as an input event.
        // virtio_pci: a network-booted x86_64 guest is a PC with PCI NICs. qemu_fw_cfg:
        // files handed over through fw_cfg (MachineSpec::fw_cfg).
        Arch::X86_64 => &[
            "virtio_mmio",
            "virtio_pci",
            "virtio_net",
            "button",
            "evdev",
            "qemu_fw_cfg",
        ],
        Arch::Aarch64 => &["virtio_pci", "virtio_net", "evdev", "qemu_fw_cfg"],
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

    /// Pushes `prefix` followed by `values`, escaped with [`escape_opt`].
    fn push_opts(&mut self, prefix: &str, values: &[&OsStr]) -> &mut Self {
        let mut arg = OsString::from(prefix);
        for value in values {
            arg.push(escape_opt(value));
        }
        self.0.push(arg);
        self
    }
}

/// `value` with commas doubled: QEMU's option syntax reads `,,` as a literal comma, so any
/// path or name is safe as an option value.
pub(crate) fn escape_opt(value: &OsStr) -> OsString {
    let mut bytes = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
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
        if let Boot::Direct { cmdline_extra, .. } = &mut tcg.boot {
            *cmdline_extra = " quiet ".into();
        }
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
                published: vec![(40080, 8080)],
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
                    "user,id=ctl,restrict=on,net=10.0.2.0/24,host=10.0.2.2,dhcpstart=10.0.2.15,hostfwd=tcp:127.0.0.1:40022-:7000,hostfwd=tcp:127.0.0.1:40080-:8080",
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
    fn network_boots_chain_from_the_control_nic_to_the_boot_server() {
        for arch in Arch::ALL {
            let mut s = spec(arch, Accel::Tcg);
            s.boot = Boot::Network(NetworkBoot {
                server_port: 40080,
                loader: Some("/cache/grub,1".into()),
            });
            s.fw_cfg = vec![("sinew/agent.key".into(), "/run/a,b/key".into())];
            let ctl_mac = MacAddr::for_guest("node1", 0);
            s.control = Some(ControlNic {
                host_port: 40022,
                guest_port: 7000,
                published: Vec::new(),
                mac: ctl_mac,
            });
            s.data = Some(DataNic {
                switch_socket: "/run/switch.sock".into(),
                mac: MacAddr::for_guest("node1", 1),
            });
            let a = args(&s);
            for flag in ["-kernel", "-initrd", "-append"] {
                assert!(after(&a, flag).is_empty(), "{arch}: {flag}");
            }
            assert_eq!(
                after(&a, "-fw_cfg"),
                ["name=opt/sinew/agent.key,file=/run/a,,b/key"]
            );
            assert_eq!(after(&a, "-uuid"), [guest_uuid("node1").as_str()]);
            let netdev = after(&a, "-netdev")[0];
            assert!(netdev.starts_with("user,id=ctl,restrict=on,"), "{netdev}");
            assert!(
                netdev.contains(
                    ",guestfwd=tcp:10.0.2.100:80-cmd:bash -c 'exec 3<>/dev/tcp/127.0.0.1/40080; "
                ),
                "{netdev}"
            );
            let devices = after(&a, "-device");
            assert!(
                devices[0].starts_with(&format!(
                    "virtio-net-pci,netdev=ctl,mac={ctl_mac},bootindex=1"
                )),
                "{devices:?}"
            );
            match arch {
                Arch::X86_64 => {
                    assert_eq!(after(&a, "-M"), ["pc"]);
                    assert!(
                        netdev.ends_with(",bootfile=http://10.0.2.100/boot.ipxe"),
                        "{netdev}"
                    );
                    assert!(devices[0].ends_with(",bootindex=1"), "{devices:?}");
                    assert!(devices[1].ends_with(",romfile="), "{devices:?}");
                }
                Arch::Aarch64 => {
                    assert_eq!(after(&a, "-bios"), [netboot::UEFI_FIRMWARE]);
                    assert!(
                        netdev.ends_with(",tftp=/cache/grub,,1,bootfile=grubnetaa64.efi"),
                        "{netdev}"
                    );
                    assert!(!devices[1].contains("romfile"), "{devices:?}");
                }
            }
            assert_eq!(s.cmdline(), None);
        }
    }

    #[test]
    fn guest_uuids_are_stable_distinct_and_well_formed() {
        let a = guest_uuid("node1");
        assert_eq!(a, guest_uuid("node1"));
        assert_ne!(a, guest_uuid("node2"));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "8", "version 8: {a}");
        assert!(
            matches!(&a[19..20], "8" | "9" | "a" | "b"),
            "RFC variant: {a}"
        );
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
