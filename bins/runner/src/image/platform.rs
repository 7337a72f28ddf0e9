//! Architecture names: Rust/uname spelling (`x86_64`, `aarch64`) versus OCI's GOARCH spelling
//! (`amd64`, `arm64`).

/// An architecture name that sinew-run does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown architecture {0:?}: expected x86_64/amd64, aarch64/arm64, riscv64, s390x, ppc64le or arm")]
pub struct ArchError(pub String);

const ARCHES: &[(&str, &str)] = &[
    ("x86_64", "amd64"),
    ("aarch64", "arm64"),
    ("riscv64", "riscv64"),
    ("s390x", "s390x"),
    ("powerpc64le", "ppc64le"),
    ("arm", "arm"),
];

/// The OCI name of an architecture given in either spelling.
pub fn oci_arch(name: &str) -> Result<&'static str, ArchError> {
    ARCHES
        .iter()
        .find(|(rust, oci)| *rust == name || *oci == name)
        .map(|(_, oci)| *oci)
        .ok_or_else(|| ArchError(name.to_owned()))
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
    }
}
