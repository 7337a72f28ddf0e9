//! Checks on ELF binaries before they are shipped to a guest: which machine they are
//! for and whether they are statically linked.

use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

use crate::Arch;

/// What [`inspect`] found out about an ELF executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    /// The machine the code is for.
    pub arch: Arch,
    /// True when the binary needs no dynamic loader and no shared libraries
    /// (static-pie binaries count as static).
    pub is_static: bool,
}

/// Error from [`inspect`] or [`inspect_file`].
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The bytes are not an ELF file at all.
    #[error("not an ELF file (detected format: {0})")]
    NotElf(String),
    /// A 32-bit ELF file; guests are 64-bit.
    #[error("32-bit ELF file; expected a 64-bit x86_64 or aarch64 executable")]
    Elf32,
    /// The ELF structure could not be parsed.
    #[error("malformed ELF file: {0}")]
    Malformed(#[source] object::read::Error),
    /// An ELF file that is not an executable or shared object (e.g. a `.o` or a core dump).
    #[error("ELF file of type {0} is not an executable; expected EXEC or DYN")]
    NotExecutable(u16),
    /// Code for a machine that is not a guest architecture.
    #[error("ELF machine {name} (e_machine {machine}) is not a guest architecture; expected x86_64 or aarch64")]
    UnsupportedMachine {
        /// The raw `e_machine` value.
        machine: u16,
        /// A readable name for it.
        name: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// [`inspect_file`] failed on the named file.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        source: Box<ElfError>,
    },
}

/// Reads an ELF executable's machine and linkage.
pub fn inspect(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    match FileKind::parse(bytes) {
        Ok(FileKind::Elf64) => {}
        Ok(FileKind::Elf32) => return Err(ElfError::Elf32),
        Ok(other) => return Err(ElfError::NotElf(format!("{other:?}"))),
        Err(_) => return Err(ElfError::NotElf("unknown".into())),
    }
    let file = ElfFile64::<Endianness>::parse(bytes).map_err(ElfError::Malformed)?;
    let endian = file.endian();
    let header = file.elf_header();
    let e_type = header.e_type(endian);
    if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
        return Err(ElfError::NotExecutable(e_type));
    }
    let arch = match header.e_machine(endian) {
        elf::EM_X86_64 => Arch::X86_64,
        elf::EM_AARCH64 => Arch::Aarch64,
        machine => {
            return Err(ElfError::UnsupportedMachine {
                machine,
                name: machine_name(machine),
            })
        }
    };
    let mut is_static = true;
    for ph in file.elf_program_headers() {
        match ph.p_type(endian) {
            elf::PT_INTERP => is_static = false,
            elf::PT_DYNAMIC => {
                // static-pie binaries have a PT_DYNAMIC (for self-relocation) but no
                // DT_NEEDED: only needed libraries make a binary dynamic.
                let entries = ph
                    .dynamic(endian, bytes)
                    .map_err(ElfError::Malformed)?
                    .unwrap_or(&[]);
                if entries
                    .iter()
                    .any(|d| d.tag32(endian) == Some(elf::DT_NEEDED))
                {
                    is_static = false;
                }
            }
            _ => {}
        }
    }
    Ok(ElfInfo { arch, is_static })
}

/// [`inspect`] on a file; errors name the file.
pub fn inspect_file(path: &Path) -> Result<ElfInfo, ElfError> {
    let bytes = std::fs::read(path).map_err(|source| ElfError::Read {
        path: path.to_owned(),
        source,
    })?;
    inspect(&bytes).map_err(|e| ElfError::File {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390",
        elf::EM_MIPS => "mips",
        elf::EM_LOONGARCH => "loongarch",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testelf::{dynamic, elf64};

    fn exe(machine: u16, segments: &[(u32, Vec<u8>)]) -> Vec<u8> {
        elf64(elf::ET_EXEC, machine, segments, &[])
    }

    #[test]
    fn static_executable_per_machine() {
        for (machine, arch) in [
            (elf::EM_X86_64, Arch::X86_64),
            (elf::EM_AARCH64, Arch::Aarch64),
        ] {
            let info = inspect(&exe(machine, &[(elf::PT_LOAD, vec![0; 16])])).unwrap();
            assert_eq!(
                info,
                ElfInfo {
                    arch,
                    is_static: true
                }
            );
        }
    }

    #[test]
    fn interpreter_makes_it_dynamic() {
        let bytes = exe(
            elf::EM_X86_64,
            &[(elf::PT_INTERP, b"/lib/ld-musl-x86_64.so.1\0".to_vec())],
        );
        assert!(!inspect(&bytes).unwrap().is_static);
    }

    #[test]
    fn static_pie_is_static_but_needed_libraries_are_not() {
        let pie = elf64(
            elf::ET_DYN,
            elf::EM_AARCH64,
            &[(elf::PT_DYNAMIC, dynamic(&[(u64::from(elf::DT_FLAGS_1), 0)]))],
            &[],
        );
        assert!(inspect(&pie).unwrap().is_static);
        let needs_libc = elf64(
            elf::ET_DYN,
            elf::EM_AARCH64,
            &[(elf::PT_DYNAMIC, dynamic(&[(u64::from(elf::DT_NEEDED), 1)]))],
            &[],
        );
        assert!(!inspect(&needs_libc).unwrap().is_static);
    }

    #[test]
    fn other_machines_are_named() {
        let err = inspect(&exe(elf::EM_RISCV, &[])).unwrap_err().to_string();
        assert!(
            err.contains("riscv") && err.contains("x86_64 or aarch64"),
            "{err}"
        );
    }

    #[test]
    fn non_elf_and_non_executables_are_refused() {
        assert!(matches!(
            inspect(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf(_))
        ));
        let obj = elf64(elf::ET_REL, elf::EM_X86_64, &[], &[]);
        assert!(matches!(
            inspect(&obj),
            Err(ElfError::NotExecutable(elf::ET_REL))
        ));
    }

    #[test]
    fn this_test_binary_is_a_host_executable() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(inspect_file(&exe).unwrap().arch, Arch::host().unwrap());
        let err = inspect_file(Path::new("/nonexistent/bin"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/bin"), "{err}");
    }
}
