//! The fast-path program, attached at the ingress of every workload
//! interface (packets leaving a pod). It hands a packet straight to the
//! destination pod's interface, skipping the host's routing, netfilter
//! and second veth queue, when — and only when — the slow path would have
//! forwarded it there unchanged:
//!
//! 1. A frame addressed to the interface; IPv4 without options or
//!    fragments, or IPv6 with TCP as the next header; TCP with ACK and
//!    without SYN, FIN or RST (connection set-up and teardown always take
//!    the slow path, so conntrack's state machine sees them), with a
//!    well-formed header length; TTL or hop limit above 1.
//! 2. The kernel's FIB sends it out of an interface in the `targets` map
//!    (the node's workload interfaces) with a resolved neighbour.
//! 3. Strict reverse-path check: the route back to the source leaves by
//!    the interface the packet came in on (`rp_filter=1`).
//! 4. Conntrack has the connection, it is ESTABLISHED, a reply has been
//!    seen, and it is not NATed, under a helper, sequence-adjusted, or on
//!    a fixed timeout. Policy was decided when the connection was set up;
//!    the slow path accepts such packets before any policy rule too.
//!
//! Then the program refreshes the connection's timeout (as conntrack would
//! for the packet), rewrites the MAC addresses from the FIB, decrements
//! the TTL (patching the IPv4 checksum, RFC 1624) or hop limit, and
//! redirects to the peer of the target interface. Anything else returns
//! `TCX_NEXT`: the packet continues as if the program were not there.
//!
//! Stack layout (offsets from the frame pointer):
//! tuple -40..-4, fib -120..-56, target -128, MACs -144..-132,
//! ct options -160..-144.

use super::asm::*;

/// What the program needs to know about this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// BTF ids of the kfuncs.
    pub ct_lookup: u32,
    pub ct_release: u32,
    pub ct_change_timeout: u32,
    /// `sizeof(struct bpf_ct_opts)`.
    pub ct_opts_size: u32,
    /// Offsets in `struct nf_conn` of `status` and `proto.tcp.state`.
    pub status_offset: i16,
    pub tcp_state_offset: i16,
}

const SKB_PKT_TYPE: i16 = 4;
const SKB_INGRESS_IFINDEX: i16 = 36;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_FIB_LOOKUP: i32 = 69;
const HELPER_REDIRECT_PEER: i32 = 155;
const FIB_SKIP_NEIGH: i32 = 4;

const TUPLE: i16 = -40;
const FIB: i16 = -120;
const FIB_IFINDEX: i16 = FIB + 8;
const FIB_SRC: i16 = FIB + 16;
const FIB_DST: i16 = FIB + 32;
const FIB_SMAC: i16 = FIB + 52;
const TARGET: i16 = -128;
const MACS: i16 = -144;
const CT_OPTS: i16 = -160;

/// `IPS_SEEN_REPLY | IPS_SRC_NAT | IPS_DST_NAT`, and the wanted value.
/// Conntrack status bits: the connection must have seen a reply and be
/// none of expected (a helper's related flow), NATed, sequence-adjusted,
/// on a fixed timeout, or under a helper (FTP and the like).
const IPS_EXPECTED: i32 = 1 << 0;
const IPS_SEEN_REPLY: i32 = 1 << 1;
const IPS_SRC_NAT: i32 = 1 << 4;
const IPS_DST_NAT: i32 = 1 << 5;
const IPS_SEQ_ADJUST: i32 = 1 << 6;
const IPS_FIXED_TIMEOUT: i32 = 1 << 10;
const IPS_HELPER: i32 = 1 << 13;
const STATUS_MASK: i32 = IPS_EXPECTED
    | IPS_SEEN_REPLY
    | IPS_SRC_NAT
    | IPS_DST_NAT
    | IPS_SEQ_ADJUST
    | IPS_FIXED_TIMEOUT
    | IPS_HELPER;
const TCP_CONNTRACK_ESTABLISHED: i32 = 3;
const TCX_NEXT: i32 = -1;
const IPPROTO_TCP: i32 = 6;

/// Assembles the program for `kernel`, looking targets up in the map
/// `targets_fd` and refreshing connections to `timeout_ms`.
pub fn assemble(kernel: &KernelLayout, targets_fd: i32, timeout_ms: u32) -> Vec<u64> {
    let mut a = Asm::new();
    let pass = a.label();
    let release_and_pass = a.label();
    let v4 = a.label();
    let common = a.label();
    let hop_limit = a.label();
    let redirect = a.label();
    let reverse_v6 = a.label();
    let reverse_lookup = a.label();

    // r6 = skb; only frames addressed to this host's interface (the slow
    // path would not route others); r2 = data; r3 = data_end; room for
    // Ethernet + IPv4 + TCP.
    a.alu_reg(Alu::Mov, R6, R1);
    a.load(Size::W, R4, R6, SKB_PKT_TYPE)
        .jump_imm(Cond::Ne, R4, 0, pass); // PACKET_HOST
    packet_bounds(&mut a, 14 + 20 + 20, pass);
    a.load(Size::H, R4, R2, 12); // EtherType, network order read as LE
    a.jump_imm(Cond::Eq, R4, 0x0008, v4);
    a.jump_imm(Cond::Ne, R4, 0xdd86, pass);

    // IPv6: Ethernet + 40-byte header + TCP.
    a.alu_reg(Alu::Mov, R4, R2)
        .alu_imm(Alu::Add, R4, 14 + 40 + 20)
        .jump_reg(Cond::Gt, R4, R3, pass);
    a.load(Size::B, R4, R2, 14 + 6)
        .jump_imm(Cond::Ne, R4, IPPROTO_TCP, pass);
    a.load(Size::B, R4, R2, 14 + 7)
        .jump_imm(Cond::Le, R4, 1, pass);
    tcp_flags_plain(&mut a, 14 + 40, pass);
    // Tuple: source, destination, ports — contiguous in the packet.
    copy(&mut a, Size::W, (R2, 14 + 8), (FP, TUPLE), 9);
    fib_request(&mut a, 10);
    copy(&mut a, Size::W, (FP, TUPLE), (FP, FIB_SRC), 8);
    a.alu_imm(Alu::Mov, R8, 6)
        .alu_imm(Alu::Mov, R9, 36)
        .goto(common);

    // IPv4: no options, not a fragment.
    a.bind(v4);
    a.load(Size::B, R4, R2, 14)
        .jump_imm(Cond::Ne, R4, 0x45, pass);
    a.load(Size::B, R4, R2, 14 + 9)
        .jump_imm(Cond::Ne, R4, IPPROTO_TCP, pass);
    a.load(Size::B, R4, R2, 14 + 8)
        .jump_imm(Cond::Le, R4, 1, pass);
    a.load(Size::H, R4, R2, 14 + 6)
        .alu_imm(Alu::And, R4, 0xff3f) // MF | fragment offset, as read
        .jump_imm(Cond::Ne, R4, 0, pass);
    tcp_flags_plain(&mut a, 14 + 20, pass);
    copy(&mut a, Size::W, (R2, 14 + 12), (FP, TUPLE), 3);
    fib_request(&mut a, 2);
    copy(&mut a, Size::W, (FP, TUPLE), (FP, FIB_SRC), 1);
    copy(&mut a, Size::W, (FP, TUPLE + 4), (FP, FIB_DST), 1);
    a.alu_imm(Alu::Mov, R8, 4).alu_imm(Alu::Mov, R9, 12);

    // Forward lookup: where would the kernel send it?
    a.bind(common);
    fib_lookup(&mut a, 0);
    a.jump_imm(Cond::Ne, R0, 0, pass);
    a.load(Size::W, R4, FP, FIB_IFINDEX)
        .store(Size::W, FP, TARGET, R4);
    a.load_map_fd(R1, targets_fd)
        .alu_reg(Alu::Mov, R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(TARGET))
        .call_helper(HELPER_MAP_LOOKUP)
        .jump_imm(Cond::Eq, R0, 0, pass);
    copy(&mut a, Size::H, (FP, FIB_SMAC), (FP, MACS), 6);

    // Reverse-path check: the route to the source leaves by the ingress.
    a.jump_imm(Cond::Eq, R8, 6, reverse_v6);
    fib_request(&mut a, 2);
    a.load(Size::W, R4, FP, TUPLE + 4)
        .store(Size::W, FP, FIB_SRC, R4);
    a.load(Size::W, R4, FP, TUPLE)
        .store(Size::W, FP, FIB_DST, R4);
    a.goto(reverse_lookup);
    a.bind(reverse_v6);
    fib_request(&mut a, 10);
    copy(&mut a, Size::W, (FP, TUPLE + 16), (FP, FIB_SRC), 4);
    copy(&mut a, Size::W, (FP, TUPLE), (FP, FIB_DST), 4);
    a.bind(reverse_lookup);
    fib_lookup(&mut a, FIB_SKIP_NEIGH);
    a.jump_imm(Cond::Ne, R0, 0, pass);
    a.load(Size::W, R4, FP, FIB_IFINDEX)
        .load(Size::W, R5, R6, SKB_INGRESS_IFINDEX)
        .jump_reg(Cond::Ne, R4, R5, pass);

    // Conntrack: established, reply seen, not NATed.
    a.store_imm(Size::W, FP, CT_OPTS, -1) // netns_id: the skb's
        .store_imm(Size::W, FP, CT_OPTS + 4, 0)
        .store_imm(Size::DW, FP, CT_OPTS + 8, IPPROTO_TCP); // l4proto; dir, zone 0
    a.alu_reg(Alu::Mov, R1, R6)
        .alu_reg(Alu::Mov, R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(TUPLE))
        .alu_reg(Alu::Mov, R3, R9)
        .alu_reg(Alu::Mov, R4, FP)
        .alu_imm(Alu::Add, R4, i32::from(CT_OPTS))
        .alu_imm(Alu::Mov, R5, kernel.ct_opts_size as i32)
        .call_kfunc(kernel.ct_lookup)
        .jump_imm(Cond::Eq, R0, 0, pass);
    a.alu_reg(Alu::Mov, R7, R0);
    a.load(Size::DW, R1, R7, kernel.status_offset)
        .alu_imm(Alu::And, R1, STATUS_MASK)
        .jump_imm(Cond::Ne, R1, IPS_SEEN_REPLY, release_and_pass);
    a.load(Size::B, R1, R7, kernel.tcp_state_offset).jump_imm(
        Cond::Ne,
        R1,
        TCP_CONNTRACK_ESTABLISHED,
        release_and_pass,
    );
    a.alu_reg(Alu::Mov, R1, R7)
        .alu_imm(Alu::Mov, R2, timeout_ms as i32)
        .call_kfunc(kernel.ct_change_timeout);
    a.alu_reg(Alu::Mov, R1, R7).call_kfunc(kernel.ct_release);

    // Rewrite: MACs, then TTL (and checksum) or hop limit.
    packet_bounds(&mut a, 14 + 40, pass);
    copy(&mut a, Size::H, (FP, MACS + 6), (R2, 0), 3);
    copy(&mut a, Size::H, (FP, MACS), (R2, 6), 3);
    a.jump_imm(Cond::Eq, R8, 6, hop_limit);
    // check += htons(0x0100) with end-around carry, as ip_decrease_ttl.
    let no_carry = a.label();
    a.load(Size::H, R4, R2, 14 + 10)
        .alu_imm(Alu::Add, R4, 0x0001)
        .jump_imm(Cond::Le, R4, 0xfffe, no_carry)
        .alu_imm(Alu::Add, R4, 1);
    a.bind(no_carry);
    a.store(Size::H, R2, 14 + 10, R4);
    a.load(Size::B, R4, R2, 14 + 8)
        .alu_imm(Alu::Sub, R4, 1)
        .store(Size::B, R2, 14 + 8, R4)
        .goto(redirect);
    a.bind(hop_limit);
    a.load(Size::B, R4, R2, 14 + 7)
        .alu_imm(Alu::Sub, R4, 1)
        .store(Size::B, R2, 14 + 7, R4);

    a.bind(redirect);
    a.load(Size::W, R1, FP, TARGET)
        .alu_imm(Alu::Mov, R2, 0)
        .call_helper(HELPER_REDIRECT_PEER)
        .exit();

    a.bind(release_and_pass);
    a.alu_reg(Alu::Mov, R1, R7).call_kfunc(kernel.ct_release);
    a.bind(pass);
    a.alu_imm(Alu::Mov, R0, TCX_NEXT).exit();
    a.finish()
}

/// Copies `count` units of `size` from `from` to `to` (register,
/// offset) through r4.
fn copy(a: &mut Asm, size: Size, from: (Reg, i16), to: (Reg, i16), count: i16) {
    let width = size.bytes();
    for i in 0..count {
        a.load(size, R4, from.0, from.1 + width * i)
            .store(size, to.0, to.1 + width * i, R4);
    }
}

/// `r2 = data; r3 = data_end`; to `fail` unless `len` bytes are there.
fn packet_bounds(a: &mut Asm, len: i32, fail: Label) {
    a.load(Size::W, R2, R6, SKB_DATA)
        .load(Size::W, R3, R6, SKB_DATA_END)
        .alu_reg(Alu::Mov, R4, R2)
        .alu_imm(Alu::Add, R4, len)
        .jump_reg(Cond::Gt, R4, R3, fail);
}

/// To `fail` unless the TCP header at `at` is at least 20 bytes long and
/// has ACK without SYN, FIN or RST (conntrack calls a segment without ACK
/// invalid; the slow path would drop it).
fn tcp_flags_plain(a: &mut Asm, at: i16, fail: Label) {
    a.load(Size::B, R4, R2, at + 12)
        .jump_imm(Cond::Lt, R4, 0x50, fail); // data offset < 5 words
    a.load(Size::B, R4, R2, at + 13)
        .alu_imm(Alu::And, R4, 0x17) // ACK | RST | SYN | FIN
        .jump_imm(Cond::Ne, R4, 0x10, fail);
}

/// A zeroed `struct bpf_fib_lookup` for `family` and TCP, from the
/// ingress interface.
fn fib_request(a: &mut Asm, family: i32) {
    for word in 0..8 {
        a.store_imm(Size::DW, FP, FIB + 8 * word, 0);
    }
    a.store_imm(Size::H, FP, FIB, family | (IPPROTO_TCP << 8));
    a.load(Size::W, R4, R6, SKB_INGRESS_IFINDEX)
        .store(Size::W, FP, FIB_IFINDEX, R4);
}

/// `r0 = bpf_fib_lookup(skb, &fib, 64, flags)`.
fn fib_lookup(a: &mut Asm, flags: i32) {
    a.alu_reg(Alu::Mov, R1, R6)
        .alu_reg(Alu::Mov, R2, FP)
        .alu_imm(Alu::Add, R2, i32::from(FIB))
        .alu_imm(Alu::Mov, R3, 64)
        .alu_imm(Alu::Mov, R4, flags)
        .call_helper(HELPER_FIB_LOOKUP);
}
