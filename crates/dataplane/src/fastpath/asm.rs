//! A small eBPF assembler: the instruction encodings the fast-path
//! program uses, with forward labels resolved at [`Asm::finish`]. Each
//! instruction is the kernel's 8-byte `struct bpf_insn` (opcode, dst and
//! src register nibbles, 16-bit offset, 32-bit immediate) as a
//! little-endian `u64`.

/// Registers r0-r10 (r10 is the read-only frame pointer).
pub type Reg = u8;
pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R3: Reg = 3;
pub const R4: Reg = 4;
pub const R5: Reg = 5;
pub const R6: Reg = 6;
pub const R7: Reg = 7;
pub const R8: Reg = 8;
pub const R9: Reg = 9;
pub const FP: Reg = 10;

/// Memory access widths.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

impl Size {
    /// The width in bytes.
    pub fn bytes(self) -> i16 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }
}

/// Conditional jumps (64-bit compares).
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

/// ALU operations (64-bit).
#[derive(Clone, Copy, Debug)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    And = 0x50,
    Mov = 0xb0,
}

const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_MEM: u8 = 0x60;
const SRC_X: u8 = 0x08;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
const PSEUDO_MAP_FD: Reg = 1;
const PSEUDO_KFUNC_CALL: Reg = 2;

/// A jump target, bound once with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

fn encode(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(((src & 0x0f) << 4) | (dst & 0x0f)) << 8
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

/// Instructions being assembled.
#[derive(Default)]
pub struct Asm {
    insns: Vec<u64>,
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of jumps to patch.
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    fn push(&mut self, insn: u64) -> &mut Asm {
        self.insns.push(insn);
        self
    }

    /// `dst op= imm`.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Asm {
        self.push(encode(CLASS_ALU64 | op as u8, dst, 0, 0, imm))
    }

    /// `dst op= src`.
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Asm {
        self.push(encode(CLASS_ALU64 | op as u8 | SRC_X, dst, src, 0, 0))
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Asm {
        self.push(encode(CLASS_LDX | MODE_MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Asm {
        self.push(encode(CLASS_STX | MODE_MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Asm {
        self.push(encode(CLASS_ST | MODE_MEM | size as u8, dst, 0, off, imm))
    }

    /// `dst = <map referenced by file descriptor fd>` (two slots).
    pub fn load_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Asm {
        self.push(encode(CLASS_LD | Size::DW as u8, dst, PSEUDO_MAP_FD, 0, fd));
        self.push(0)
    }

    /// `if dst cond imm goto target`.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), target));
        self.push(encode(CLASS_JMP | cond as u8, dst, 0, 0, imm))
    }

    /// `if dst cond src goto target`.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, target: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), target));
        self.push(encode(CLASS_JMP | cond as u8 | SRC_X, dst, src, 0, 0))
    }

    /// `goto target`.
    pub fn goto(&mut self, target: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), target));
        self.push(encode(CLASS_JMP, 0, 0, 0, 0))
    }

    /// Calls BPF helper number `helper`.
    pub fn call_helper(&mut self, helper: i32) -> &mut Asm {
        self.push(encode(CLASS_JMP | OP_CALL, 0, 0, 0, helper))
    }

    /// Calls the kernel function with BTF id `btf_id` (a kfunc).
    pub fn call_kfunc(&mut self, btf_id: u32) -> &mut Asm {
        self.push(encode(
            CLASS_JMP | OP_CALL,
            0,
            PSEUDO_KFUNC_CALL,
            0,
            btf_id as i32,
        ))
    }

    pub fn exit(&mut self) -> &mut Asm {
        self.push(encode(CLASS_JMP | OP_EXIT, 0, 0, 0, 0))
    }

    /// The instructions, jumps resolved. Panics on an unbound label or an
    /// out-of-range jump: both are bugs in the program text, not input.
    pub fn finish(mut self) -> Vec<u64> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].expect("every label is bound");
            let off = i16::try_from(target as i64 - at as i64 - 1).expect("jump in range");
            self.insns[at] |= u64::from(off as u16) << 16;
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_layout() {
        let mut a = Asm::new();
        a.alu_reg(Alu::Mov, R6, R1) // 0xbf, dst 6 src 1
            .load(Size::W, R2, R6, 76) // 0x61
            .store_imm(Size::DW, FP, -8, 0) // 0x7a
            .call_kfunc(1234)
            .exit();
        let insns = a.finish();
        assert_eq!(insns[0], 0x0000_0000_0000_16bf);
        assert_eq!(insns[1], 0x0000_0000_004c_6261);
        assert_eq!(insns[2], 0x0000_0000_fff8_0a7a);
        assert_eq!(insns[3], (1234u64 << 32) | 0x2085);
        assert_eq!(insns[4], 0x95);
    }

    #[test]
    fn labels_resolve_forwards_and_backwards() {
        let mut a = Asm::new();
        let end = a.label();
        let top = a.label();
        a.bind(top);
        a.jump_imm(Cond::Eq, R0, 0, end); // 0: +3
        a.goto(top); // 1: -2
        a.load_map_fd(R1, 7); // 2, 3
        a.bind(end);
        a.exit(); // 4
        let insns = a.finish();
        assert_eq!((insns[0] >> 16) as u16 as i16, 3);
        assert_eq!((insns[1] >> 16) as u16 as i16, -2);
    }
}
