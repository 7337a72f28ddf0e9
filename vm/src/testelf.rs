//! Hand-built ELF64 little-endian images for unit tests: just enough structure for
//! `object` to parse program headers and named sections.

use object::elf;

/// A program header's type and its contents.
pub(crate) type Segment = (u32, Vec<u8>);

/// An ELF64 LE image of type `e_type` for `machine`, with the given segments and
/// named PROGBITS sections (plus the null section and `.shstrtab`).
// Test images hold a few small segments and sections, so every offset, size and count
// written as a u32 or u16 fits.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn elf64(
    e_type: u16,
    machine: u16,
    segments: &[Segment],
    sections: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const SHDR: usize = 64;
    let mut out = vec![0u8; EHDR + PHDR * segments.len()];
    let mut phdrs = Vec::new();
    for (p_type, data) in segments {
        phdrs.push((*p_type, out.len(), data.len()));
        out.extend_from_slice(data);
    }
    let mut shstrtab = vec![0u8];
    let mut shdrs = vec![(0u32, elf::SHT_NULL, 0usize, 0usize)];
    for (name, data) in sections {
        let name_off = shstrtab.len() as u32;
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
        shdrs.push((name_off, elf::SHT_PROGBITS, out.len(), data.len()));
        out.extend_from_slice(data);
    }
    let shstr_name = shstrtab.len() as u32;
    shstrtab.extend_from_slice(b".shstrtab\0");
    shdrs.push((shstr_name, elf::SHT_STRTAB, out.len(), shstrtab.len()));
    out.extend_from_slice(&shstrtab);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len();
    for (name, sh_type, offset, size) in &shdrs {
        let mut sh = Vec::with_capacity(SHDR);
        sh.extend_from_slice(&name.to_le_bytes());
        sh.extend_from_slice(&sh_type.to_le_bytes());
        sh.extend_from_slice(&0u64.to_le_bytes()); // flags
        sh.extend_from_slice(&0u64.to_le_bytes()); // addr
        sh.extend_from_slice(&(*offset as u64).to_le_bytes());
        sh.extend_from_slice(&(*size as u64).to_le_bytes());
        sh.extend_from_slice(&0u32.to_le_bytes()); // link
        sh.extend_from_slice(&0u32.to_le_bytes()); // info
        sh.extend_from_slice(&1u64.to_le_bytes()); // addralign
        sh.extend_from_slice(&0u64.to_le_bytes()); // entsize
        out.extend_from_slice(&sh);
    }
    let mut h = Vec::with_capacity(EHDR);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    h.extend_from_slice(&e_type.to_le_bytes());
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // version
    h.extend_from_slice(&0u64.to_le_bytes()); // entry
    h.extend_from_slice(
        &(if segments.is_empty() {
            0u64
        } else {
            EHDR as u64
        })
        .to_le_bytes(),
    );
    h.extend_from_slice(&(shoff as u64).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // flags
    h.extend_from_slice(&(EHDR as u16).to_le_bytes());
    h.extend_from_slice(&(PHDR as u16).to_le_bytes());
    h.extend_from_slice(&(segments.len() as u16).to_le_bytes());
    h.extend_from_slice(&(SHDR as u16).to_le_bytes());
    h.extend_from_slice(&(shdrs.len() as u16).to_le_bytes());
    h.extend_from_slice(&((shdrs.len() - 1) as u16).to_le_bytes());
    out[..EHDR].copy_from_slice(&h);
    for (i, (p_type, offset, size)) in phdrs.iter().enumerate() {
        let mut ph = Vec::with_capacity(PHDR);
        ph.extend_from_slice(&p_type.to_le_bytes());
        ph.extend_from_slice(&4u32.to_le_bytes()); // flags: R
        ph.extend_from_slice(&(*offset as u64).to_le_bytes());
        ph.extend_from_slice(&(*offset as u64).to_le_bytes()); // vaddr
        ph.extend_from_slice(&(*offset as u64).to_le_bytes()); // paddr
        ph.extend_from_slice(&(*size as u64).to_le_bytes());
        ph.extend_from_slice(&(*size as u64).to_le_bytes());
        ph.extend_from_slice(&8u64.to_le_bytes()); // align
        let at = EHDR + PHDR * i;
        out[at..at + PHDR].copy_from_slice(&ph);
    }
    out
}

/// A `PT_DYNAMIC` segment body holding the given `(tag, value)` entries and `DT_NULL`.
pub(crate) fn dynamic(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, val) in entries.iter().chain([(u64::from(elf::DT_NULL), 0)].iter()) {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&val.to_le_bytes());
    }
    out
}

/// A kernel-module-like relocatable object whose `.modinfo` holds `fields`.
pub(crate) fn kmod(machine: u16, fields: &[&str]) -> Vec<u8> {
    let mut modinfo = Vec::new();
    for f in fields {
        modinfo.extend_from_slice(f.as_bytes());
        modinfo.push(0);
    }
    elf64(
        elf::ET_REL,
        machine,
        &[],
        &[(".text", vec![0xc3]), (".modinfo", modinfo)],
    )
}
