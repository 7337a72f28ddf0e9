//! Guest CPU architectures and the names each tool uses for them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A guest (and build target) CPU architecture.
///
/// Displays as the kernel's `uname -m` name; parses from that name or Debian's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Arch {
    /// 64-bit x86 (`x86_64`, Debian `amd64`).
    #[serde(rename = "x86_64", alias = "amd64")]
    X86_64,
    /// 64-bit Arm (`aarch64`, Debian `arm64`).
    #[serde(rename = "aarch64", alias = "arm64")]
    Aarch64,
}

/// Error from parsing an [`Arch`].
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// The name is none of the accepted spellings.
    #[error("unknown architecture `{0}`: expected one of x86_64, amd64, aarch64, arm64")]
    Unknown(String),
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture this program runs on, or `None` on a host that is neither
    /// (guests then run under TCG only).
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The Rust target triple of static binaries for this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The kernel's name for it, as printed by `uname -m`.
    pub fn uname_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for it (`dpkg --print-architecture`).
    pub fn debian_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The QEMU system emulator binary for guests of this architecture.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package that ships [`Arch::qemu_binary`].
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uname_machine())
    }
}

impl FromStr for Arch {
    type Err = ArchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(ArchError::Unknown(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings_and_displays_uname() {
        for (s, a) in [
            ("x86_64", Arch::X86_64),
            ("amd64", Arch::X86_64),
            ("aarch64", Arch::Aarch64),
            ("arm64", Arch::Aarch64),
        ] {
            assert_eq!(s.parse::<Arch>().unwrap(), a);
        }
        for a in Arch::ALL {
            assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        }
        assert_eq!(Arch::Aarch64.to_string(), "aarch64");
    }

    #[test]
    fn unknown_arch_error_lists_accepted_names() {
        let msg = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(
            msg.contains("riscv64") && msg.contains("x86_64, amd64, aarch64, arm64"),
            "{msg}"
        );
    }

    #[test]
    fn serde_uses_uname_names_and_accepts_debian_ones() {
        assert_eq!(serde_json::to_string(&Arch::X86_64).unwrap(), "\"x86_64\"");
        assert_eq!(
            serde_json::from_str::<Arch>("\"arm64\"").unwrap(),
            Arch::Aarch64
        );
    }

    #[test]
    fn host_is_known_here() {
        assert!(Arch::host().is_some());
    }
}
