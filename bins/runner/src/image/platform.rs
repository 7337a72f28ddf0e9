//! Architecture names: Rust/uname spelling (`x86_64`, `aarch64`) versus OCI's GOARCH spelling
//! (`amd64`, `arm64`).

/// An architecture name that sinew-run does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown architecture {0:?}: expected x86_64/amd64, aarch64/arm64, riscv64, s390x, ppc64le or arm")]
pub struct ArchError(pub String);

/// (Rust name, OCI name, ELF `e_machine`).
const ARCHES: &[(&str, &str, u16)] = &[
    ("x86_64", "amd64", 62),
    ("aarch64", "arm64", 183),
    ("riscv64", "riscv64", 243),
    ("s390x", "s390x", 22),
    ("powerpc64le", "ppc64le", 21),
    ("arm", "arm", 40),
];

/// The OCI name of an architecture given in either spelling.
pub fn oci_arch(name: &str) -> Result<&'static str, ArchError> {
    ARCHES
        .iter()
        .find(|(rust, oci, _)| *rust == name || *oci == name)
        .map(|(_, oci, _)| *oci)
        .ok_or_else(|| ArchError(name.to_owned()))
}

/// The ELF `e_machine` value of an OCI architecture.
pub fn elf_machine(oci: &str) -> Option<u16> {
    ARCHES
        .iter()
        .find(|(_, name, _)| *name == oci)
        .map(|(_, _, machine)| *machine)
}

/// The OCI architecture of an ELF `e_machine` value, if known.
pub fn arch_of_elf_machine(machine: u16) -> Option<&'static str> {
    ARCHES
        .iter()
        .find(|(_, _, m)| *m == machine)
        .map(|(_, oci, _)| *oci)
}

/// The OCI name of the architecture this binary runs on.
pub fn host_arch() -> Result<&'static str, ArchError> {
    oci_arch(std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_map_to_oci() {
        assert_eq!(oci_arch("x86_64").unwrap(), "amd64");
        assert_eq!(oci_arch("amd64").unwrap(), "amd64");
        assert_eq!(oci_arch("aarch64").unwrap(), "arm64");
        assert!(oci_arch("vax").is_err());
        assert_eq!(elf_machine("arm64"), Some(183));
        assert_eq!(arch_of_elf_machine(62), Some("amd64"));
    }
}
