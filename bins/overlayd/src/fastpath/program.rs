//! The fast path's two tc programs, assembled here from eBPF instructions so that building
//! overlayd needs no BPF toolchain. Both forward an IPv4 packet the way the host's IP
//! forwarding would (the kernel's FIB and neighbour tables choose the next hop, TTL drops
//! by one) and hand every packet they do not understand to the kernel's own path:
//!
//! - `rx`, on the VXLAN device's ingress: a decapsulated packet for a container on the
//!   bridge goes straight into the container's namespace (`bpf_redirect_peer` on its veth),
//!   past the host's IP stack, the bridge and the veth's backlog. Which veth holds the
//!   container's MAC comes from the ports map, a mirror of the bridge's FDB.
//! - `tx`, on each container veth's host-side ingress: a packet whose route leaves by the
//!   VXLAN device is sent out of it at once (`bpf_redirect`), past the bridge and the
//!   host's IP stack.

/// One instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// Destination register in the low nibble, source in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

// Instruction classes, sizes, modes and operations (include/uapi/linux/bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ADD: u8 = 0x00;
const MOV: u8 = 0xb0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// `ld_imm64` with a map descriptor the kernel swaps for the map.
const PSEUDO_MAP_FD: u8 = 1;

/// Access widths.
#[derive(Debug, Clone, Copy)]
enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// Conditional jumps.
#[derive(Debug, Clone, Copy)]
enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

/// Helper functions by number.
#[derive(Debug, Clone, Copy)]
enum Helper {
    MapLookupElem = 1,
    Redirect = 23,
    FibLookup = 69,
    RedirectPeer = 155,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

/// `TC_ACT_OK`: let the kernel handle the packet as usual.
const TC_ACT_OK: i32 = 0;
const AF_INET: i32 = 2;

// `struct __sk_buff` fields.
const SKB_INGRESS_IFINDEX: i16 = 36;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

// Offsets in the frame: Ethernet header, then the IPv4 header.
const ETH_DST: i16 = 0;
const ETH_SRC: i16 = 6;
const ETH_TYPE: i16 = 12;
const IP_TOS: i16 = 14 + 1;
const IP_TTL: i16 = 14 + 8;
const IP_CHECK: i16 = 14 + 10;
const IP_SRC: i16 = 14 + 12;
const IP_DST: i16 = 14 + 16;
const HEADERS_END: i32 = 14 + 20;

// `struct bpf_fib_lookup`, 64 bytes on the stack at `FIB`.
const FIB: i16 = -64;
const FIB_SIZE: i32 = 64;
const FIB_FAMILY: i16 = FIB;
const FIB_IFINDEX: i16 = FIB + 8;
const FIB_TOS: i16 = FIB + 12;
const FIB_SRC: i16 = FIB + 16;
const FIB_DST: i16 = FIB + 32;
const FIB_SMAC: i16 = FIB + 52;
const FIB_DMAC: i16 = FIB + 58;

/// A 16-bit big-endian field as a load from the packet sees it on this machine.
const fn wire_u16(value: u16) -> i32 {
    u16::from_ne_bytes(value.to_be_bytes()) as i32
}

/// An instruction list whose "not for us" jumps all land on a final `return TC_ACT_OK`.
#[derive(Debug, Default)]
struct Asm {
    insns: Vec<Insn>,
    to_pass: Vec<usize>,
}

impl Asm {
    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }

    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.push(ALU64 | MOV | X, dst, src, 0, 0);
    }

    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.push(ALU64 | MOV | K, dst, 0, 0, imm);
    }

    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.push(ALU64 | ADD | K, dst, 0, 0, imm);
    }

    fn load(&mut self, size: Size, dst: u8, src: u8, off: i16) {
        self.push(LDX | MEM | size as u8, dst, src, off, 0);
    }

    fn store(&mut self, size: Size, dst: u8, off: i16, src: u8) {
        self.push(STX | MEM | size as u8, dst, src, off, 0);
    }

    fn store_imm(&mut self, size: Size, dst: u8, off: i16, imm: i32) {
        self.push(ST | MEM | size as u8, dst, 0, off, imm);
    }

    fn load_map_fd(&mut self, dst: u8, fd: i32) {
        self.push(LD | IMM | Size::DW as u8, dst, PSEUDO_MAP_FD, 0, fd);
        self.push(0, 0, 0, 0, 0);
    }

    /// Skips the next `skip` instructions if `dst <cond> imm`.
    fn skip_if(&mut self, cond: Cond, dst: u8, imm: i32, skip: i16) {
        self.push(JMP | cond as u8 | K, dst, 0, skip, imm);
    }

    /// Leaves the packet to the kernel if `dst <cond> imm`.
    fn pass_if(&mut self, cond: Cond, dst: u8, imm: i32) {
        self.to_pass.push(self.insns.len());
        self.skip_if(cond, dst, imm, 0);
    }

    /// Leaves the packet to the kernel if `dst <cond> src`.
    fn pass_if_reg(&mut self, cond: Cond, dst: u8, src: u8) {
        self.to_pass.push(self.insns.len());
        self.push(JMP | cond as u8 | X, dst, src, 0, 0);
    }

    fn call(&mut self, helper: Helper) {
        self.push(JMP | CALL, 0, 0, 0, helper as i32);
    }

    fn exit(&mut self) {
        self.push(JMP | EXIT, 0, 0, 0, 0);
    }

    /// Appends `return TC_ACT_OK` and points every pending jump at it.
    fn finish(mut self) -> Vec<Insn> {
        let pass = self.insns.len();
        self.mov_imm(R0, TC_ACT_OK);
        self.exit();
        for at in self.to_pass {
            let distance =
                i16::try_from(pass - at - 1).expect("a program of a few dozen instructions");
            self.insns[at].off = distance;
        }
        self.insns
    }
}

/// Checks that the frame is IPv4 that may be forwarded and asks the kernel's FIB where it
/// goes; continues only if the answer is `egress` with a resolved neighbour. Leaves the
/// packet's start in r7 and the FIB answer (MACs included) on the stack at `FIB`.
fn route(asm: &mut Asm, egress: u32) {
    let egress = i32::try_from(egress).expect("interface indexes are positive ints");
    asm.mov_reg(R6, R1);
    asm.load(Size::W, R7, R6, SKB_DATA);
    asm.load(Size::W, R8, R6, SKB_DATA_END);
    asm.mov_reg(R1, R7);
    asm.add_imm(R1, HEADERS_END);
    asm.pass_if_reg(Cond::Gt, R1, R8);
    asm.load(Size::H, R1, R7, ETH_TYPE);
    asm.pass_if(Cond::Ne, R1, wire_u16(0x0800));
    // A packet about to run out of hops is the kernel's to answer with ICMP.
    asm.load(Size::B, R1, R7, IP_TTL);
    asm.pass_if(Cond::Le, R1, 1);
    for slot in 0..FIB_SIZE / 8 {
        let slot = i16::try_from(slot * 8).expect("eight slots");
        asm.store_imm(Size::DW, R10, FIB + slot, 0);
    }
    asm.store_imm(Size::B, R10, FIB_FAMILY, AF_INET);
    asm.load(Size::B, R1, R7, IP_TOS);
    asm.store(Size::B, R10, FIB_TOS, R1);
    asm.load(Size::W, R1, R7, IP_SRC);
    asm.store(Size::W, R10, FIB_SRC, R1);
    asm.load(Size::W, R1, R7, IP_DST);
    asm.store(Size::W, R10, FIB_DST, R1);
    asm.load(Size::W, R1, R6, SKB_INGRESS_IFINDEX);
    asm.store(Size::W, R10, FIB_IFINDEX, R1);
    asm.mov_reg(R1, R6);
    asm.mov_reg(R2, R10);
    asm.add_imm(R2, i32::from(FIB));
    asm.mov_imm(R3, FIB_SIZE);
    asm.mov_imm(R4, 0);
    asm.call(Helper::FibLookup);
    // Anything but BPF_FIB_LKUP_RET_SUCCESS (no route, not forwarded, no neighbour yet,
    // too big) is the kernel's to handle.
    asm.pass_if(Cond::Ne, R0, 0);
    asm.load(Size::W, R1, R10, FIB_IFINDEX);
    asm.pass_if(Cond::Ne, R1, egress);
}

/// Forwards the frame at r7 as the kernel would: TTL down by one (checksum updated
/// incrementally, as `ip_decrease_ttl` does) and the FIB answer's MACs.
fn rewrite(asm: &mut Asm) {
    asm.load(Size::H, R1, R7, IP_CHECK);
    asm.add_imm(R1, wire_u16(0x0100));
    asm.skip_if(Cond::Lt, R1, 0xffff, 1);
    asm.add_imm(R1, 1);
    asm.store(Size::H, R7, IP_CHECK, R1);
    asm.load(Size::B, R1, R7, IP_TTL);
    asm.add_imm(R1, -1);
    asm.store(Size::B, R7, IP_TTL, R1);
    for (from, to) in [(FIB_DMAC, ETH_DST), (FIB_SMAC, ETH_SRC)] {
        for half in [0, 2, 4] {
            asm.load(Size::H, R1, R10, from + half);
            asm.store(Size::H, R7, to + half, R1);
        }
    }
}

/// The program for the VXLAN device's ingress: packets routed to `bridge` for a MAC in
/// the ports map (`ports_fd`, MAC → host-side veth index) go into that veth's peer.
pub fn rx(bridge: u32, ports_fd: i32) -> Vec<Insn> {
    let mut asm = Asm::default();
    route(&mut asm, bridge);
    asm.load_map_fd(R1, ports_fd);
    asm.mov_reg(R2, R10);
    asm.add_imm(R2, i32::from(FIB_DMAC));
    asm.call(Helper::MapLookupElem);
    asm.pass_if(Cond::Eq, R0, 0);
    asm.load(Size::W, R9, R0, 0);
    rewrite(&mut asm);
    asm.mov_reg(R1, R9);
    asm.mov_imm(R2, 0);
    asm.call(Helper::RedirectPeer);
    asm.exit();
    asm.finish()
}

/// The program for a container veth's host-side ingress: packets routed out of `vxlan`
/// leave by it directly.
pub fn tx(vxlan: u32) -> Vec<Insn> {
    let mut asm = Asm::default();
    route(&mut asm, vxlan);
    rewrite(&mut asm);
    asm.mov_imm(
        R1,
        i32::try_from(vxlan).expect("interface indexes are positive ints"),
    );
    asm.mov_imm(R2, 0);
    asm.call(Helper::Redirect);
    asm.exit();
    asm.finish()
}

/// A program that returns without setting r0, which the verifier must refuse.
#[cfg(test)]
pub fn unset_r0() -> Vec<Insn> {
    let mut asm = Asm::default();
    asm.exit();
    asm.insns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(insn: Insn) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = insn.code;
        out[1] = insn.regs;
        out[2..4].copy_from_slice(&insn.off.to_ne_bytes());
        out[4..].copy_from_slice(&insn.imm.to_ne_bytes());
        out
    }

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let mut asm = Asm::default();
        asm.load(Size::W, R7, R6, SKB_DATA);
        asm.load_map_fd(R1, 5);
        asm.call(Helper::RedirectPeer);
        let insns = asm.finish();
        // ldxw r7, [r6+76]
        assert_eq!(bytes(insns[0])[..4], [0x61, 0x67, 76, 0]);
        // lddw r1, map_fd 5: two slots, the pseudo source marking a map descriptor
        assert_eq!(bytes(insns[1]), [0x18, 0x11, 0, 0, 5, 0, 0, 0]);
        assert_eq!(bytes(insns[2]), [0; 8]);
        // call 155
        assert_eq!(bytes(insns[3]), [0x85, 0, 0, 0, 155, 0, 0, 0]);
        // the final return TC_ACT_OK
        assert_eq!(bytes(insns[4]), [0xb7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(insns[5]), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_early_exit_lands_on_the_final_pass() {
        let program = tx(7);
        let pass = program.len() - 2;
        let mut jumps = 0;
        for (at, insn) in program.iter().enumerate() {
            let conditional = insn.code & 0x07 == JMP && !matches!(insn.code & 0xf0, CALL | EXIT);
            if conditional && insn.off != 1 {
                jumps += 1;
                let target = at + 1 + usize::try_from(insn.off).expect("forward jumps only");
                assert_eq!(target, pass, "jump at {at}");
            }
        }
        // frame too short, not IPv4, TTL spent, FIB failure, another egress
        assert_eq!(jumps, 5);
    }

    #[test]
    fn ethertype_and_ttl_step_are_compared_as_loaded_from_the_wire() {
        let ipv4 = u16::try_from(wire_u16(0x0800)).expect("16 bits");
        assert_eq!(ipv4.to_ne_bytes(), [0x08, 0x00]);
        let step = u16::try_from(wire_u16(0x0100)).expect("16 bits");
        assert_eq!(step.to_ne_bytes(), [0x01, 0x00]);
    }
}
