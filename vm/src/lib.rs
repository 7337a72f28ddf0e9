//! QEMU guests for sinew: boot media, launch, QMP control, consoles and the
//! data-plane switch.
//!
//! A typical boot, as the SDK does it:
//!
//! 1. [`Kernel::fetch`] (setup) or [`Kernel::find`] a stock Debian cloud kernel.
//! 2. [`modules::resolve`] the kernel's [`qemu::required_modules`] (and whatever
//!    features need) in load order, and put them with the agent into an
//!    [`Initramfs`]; check shipped binaries with [`elf::inspect`].
//! 3. Start one [`Switch`] per lab for the data plane.
//! 4. Pick accelerators with [`accel::candidates`], fill a [`MachineSpec`] and
//!    [`Vm::spawn`] it; wait on its [`Console`]; if a KVM guest stays silent, kill
//!    it, [`accel::remember`] the hang and spawn again with TCG.
//! 5. [`Vm::shutdown`] (or drop the [`Vm`]: it never leaves QEMU behind).
//!
//! Environment: `SINEW_ACCEL` (`auto`, `kvm`, `tcg`; see [`accel`]),
//! `SINEW_KERNEL_DIR_X86_64` / `SINEW_KERNEL_DIR_AARCH64` (use an unpacked kernel
//! package instead of the cache; see [`Kernel::env_override`]) and `SINEW_DEB_DIR`
//! (take `.deb` packages from a directory instead of apt; see [`deb`]).

pub mod accel;
mod arch;
pub mod console;
pub mod deb;
pub mod elf;
pub mod initramfs;
pub mod kernel;
pub mod machine;
pub mod modules;
pub mod netboot;
mod process;
pub mod qemu;
pub mod qmp;
pub mod switch;
#[cfg(test)]
mod testelf;

pub use accel::{Accel, AccelPolicy};
pub use arch::{Arch, ArchError};
pub use console::Console;
pub use initramfs::Initramfs;
pub use kernel::Kernel;
pub use machine::{Ending, Vm};
pub use qemu::{args, Boot, ControlNic, DataNic, MachineSpec, NetworkBoot};
pub use qmp::Qmp;
pub use sinew_proto::mac::MacAddr;
pub use switch::Switch;
