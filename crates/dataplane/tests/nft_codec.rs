//! The nf_tables codec without a kernel: byte vectors captured from the
//! kernel's dump of rules `nft` created decode to the expected
//! expressions and re-encode byte for byte; netlink errors with extended
//! ACK attributes decode in both their capped and full forms; every
//! message type round-trips (`decode(encode(m)) == m`, proptest); and the
//! decoder never panics on arbitrary or corrupted bytes.

use proptest::prelude::*;
use tortie_dataplane::nft::expr::{CmpOp, CtKey, MetaKey, PayloadBase, RangeOp};
use tortie_dataplane::nft::msg::{
    self, Body, Chain, ChainHook, Family, Frame, Gen, NftMessage, NlError, Rule, Set, SetElem,
    SetElems, Table,
};
use tortie_dataplane::nft::{Data, Expr, Reg, Verdict};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn one_message(bytes: &[u8]) -> NftMessage {
    let frames = msg::decode_frames(bytes);
    assert_eq!(frames.len(), 1, "{frames:?}");
    match frames.into_iter().next() {
        Some(Ok(Frame::Nft(m))) => m,
        other => panic!("not an nf_tables message: {other:?}"),
    }
}

/// `ct state established,related accept comment "established"`, as the
/// kernel dumps it (table `inet t`, chain `fw1`, handle 5).
const CT_RULE: &str = "10010000060a0208070000000b5c000001000002060001007400000008000200667731000c0003000000000000000005cc00040020000100070001006374000014000200080001000000000108000200000000004c0001000c00010062697477697365003c00020008000100000000010800020000000001080003000000000408000600000000000c00040008000100060000000c00050008000100000000002c00010008000100636d700020000200080001000000000108000200000000010c0003000800010000000000300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c000200080001000000000112000700000c65737461626c6973686564000000";
/// `oifname vmap @vm`.
const VMAP_RULE: &str = "98000000060a0208070000000b5c000001000002060001007400000008000200667731000c00030000000000000000060c00060000000000000000055c00040024000100090001006d657461000000001400020008000200000000070800010000000001340001000b0001006c6f6f6b757000002400020007000100766d0000080002000000000108000300000000000800050000000000";
/// `meta mark . ip saddr @sel goto c` (nft converts the mark with a
/// `byteorder` expression, which this codec keeps raw).
const CONCAT_RULE: &str = "8c010000060a0208070000000b5c000001000002060001007400000008000200667731000c00030000000000000000070c00060000000000000000065001040024000100090001006d6574610000000014000200080002000000000f08000100000000012c00010008000100636d700020000200080001000000000108000200000000000c000300050001000200000024000100090001006d657461000000001400020008000200000000030800010000000001400001000e000100627974656f726465720000002c00020008000100000000010800020000000001080003000000000108000400000000040800050000000004340001000c0001007061796c6f6164002400020008000100000000090800020000000001080003000000000c08000400000000042c0001000b0001006c6f6f6b757000001c0002000800010073656c0008000200000000010800050000000000380001000e000100696d6d656469617465000000240002000800010000000000180002001400020008000100fffffffc0600020063000000";
/// `iifname "cali*" meta mark set meta mark | 0x10000 log prefix "x " drop`.
const MARK_LOG_RULE: &str = "74010000060a0208070000000b5c000001000002060001007400000008000200667731000c00030000000000000000080c00060000000000000000073801040024000100090001006d6574610000000014000200080002000000000608000100000000012c00010008000100636d700020000200080001000000000108000200000000000c0003000800010063616c6924000100090001006d6574610000000014000200080002000000000308000100000000014c0001000c00010062697477697365003c00020008000100000000010800020000000001080003000000000408000600000000000c00040008000100fffffeff0c000500080001000000010024000100090001006d65746100000000140002000800020000000003080003000000000120000100080001006c6f67001400020007000200782000000800050000000004300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000000";

#[test]
fn captured_kernel_dumps_reencode_byte_for_byte() {
    for hex in [CT_RULE, VMAP_RULE, CONCAT_RULE, MARK_LOG_RULE] {
        let bytes = unhex(hex);
        let m = one_message(&bytes);
        assert_eq!(m.to_bytes().expect("encodes"), bytes, "{m:?}");
    }
}

#[test]
fn a_captured_rule_decodes_to_the_expected_message() {
    let want = NftMessage {
        family: Family::Inet,
        flags: 0x0802, // NLM_F_MULTI | NLM_F_APPEND, as dumped
        seq: 7,
        port_id: 0x5c0b, // the dumping socket's
        res_id: 2,       // the ruleset generation, low 16 bits
        body: Body::NewRule(Rule {
            table: "t".into(),
            chain: "fw1".into(),
            handle: Some(5),
            position: None,
            exprs: vec![
                Expr::Ct {
                    key: CtKey::STATE,
                    dreg: Reg(1),
                    direction: None,
                },
                Expr::Bitwise {
                    sreg: Reg(1),
                    dreg: Reg(1),
                    mask: vec![6, 0, 0, 0],
                    xor: vec![0; 4],
                },
                Expr::Cmp {
                    sreg: Reg(1),
                    op: CmpOp::NEQ,
                    data: vec![0; 4],
                },
                Expr::Immediate {
                    dreg: Reg::VERDICT,
                    data: Data::Verdict(Verdict::Accept),
                },
            ]
            .into(),
            userdata: Some(b"\x00\x0cestablished\x00".to_vec()),
        }),
    };
    let bytes = unhex(CT_RULE);
    assert_eq!(one_message(&bytes), want);
    assert_eq!(want.to_bytes().expect("encodes"), bytes);
}

#[test]
fn captured_dispatch_and_concatenated_lookups_decode() {
    let Body::NewRule(vmap) = one_message(&unhex(VMAP_RULE)).body else {
        panic!("a rule")
    };
    assert_eq!(
        vmap.exprs[..],
        [
            Expr::Meta {
                key: MetaKey::OIFNAME,
                dreg: Reg(1),
            },
            Expr::Lookup {
                set: "vm".into(),
                sreg: Reg(1),
                dreg: Some(Reg::VERDICT),
                invert: false,
            },
        ]
    );
    let Body::NewRule(concat) = one_message(&unhex(CONCAT_RULE)).body else {
        panic!("a rule")
    };
    assert!(matches!(&concat.exprs[3], Expr::Other { name, .. } if name == "byteorder"));
    assert_eq!(
        concat.exprs[4],
        Expr::Payload {
            base: PayloadBase::NETWORK,
            offset: 12,
            len: 4,
            dreg: Reg::r32(1),
        }
    );
    assert_eq!(
        concat.exprs.last(),
        Some(&Expr::Immediate {
            dreg: Reg::VERDICT,
            data: Data::Verdict(Verdict::Goto("c".into())),
        })
    );
    let Body::NewRule(mark) = one_message(&unhex(MARK_LOG_RULE)).body else {
        panic!("a rule")
    };
    assert!(mark.exprs.contains(&Expr::Log {
        prefix: Some("x ".into()),
        level: 4,
    }));
    assert!(mark.exprs.contains(&Expr::MetaSet {
        key: MetaKey::MARK,
        sreg: Reg(1),
    }));
}

fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn errors_with_extended_acks_decode_capped_and_full() {
    let orig_hdr = nlmsg(0x0a06, 0x5, 42, &[]);
    let tlvs = {
        let mut t = Vec::new();
        let text = b"bad rule\0";
        t.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        t.extend_from_slice(&1u16.to_ne_bytes());
        t.extend_from_slice(text);
        t.resize(t.len().next_multiple_of(4), 0);
        t.extend_from_slice(&8u16.to_ne_bytes());
        t.extend_from_slice(&2u16.to_ne_bytes());
        t.extend_from_slice(&20u32.to_ne_bytes());
        t
    };
    // Capped: the original header only, then the TLVs.
    let mut capped = (-22i32).to_ne_bytes().to_vec();
    capped.extend_from_slice(&orig_hdr);
    capped.extend_from_slice(&tlvs);
    let want = NlError {
        seq: 42,
        errno: 22,
        message: Some("bad rule".into()),
        offset: Some(20),
    };
    let frames = msg::decode_frames(&nlmsg(2, 0x100 | 0x200, 42, &capped));
    assert_eq!(frames, vec![Ok(Frame::Error(want.clone()))]);
    // Full: the original message (header + 8-byte payload) is included.
    let orig = nlmsg(0x0a06, 0x5, 42, &[1, 0, 0, 0, 4, 0, 9, 0]);
    let mut full = (-22i32).to_ne_bytes().to_vec();
    full.extend_from_slice(&orig);
    full.extend_from_slice(&tlvs);
    assert_eq!(
        msg::decode_frames(&nlmsg(2, 0x200, 42, &full)),
        vec![Ok(Frame::Error(want))]
    );
    // A plain ACK, and a dump's end, in one datagram.
    let mut two = nlmsg(
        2,
        0x100,
        9,
        &[&0i32.to_ne_bytes()[..], &orig_hdr[..]].concat(),
    );
    two.extend_from_slice(&nlmsg(3, 2, 10, &0i32.to_ne_bytes()));
    assert_eq!(
        msg::decode_frames(&two),
        vec![
            Ok(Frame::Error(NlError {
                seq: 9,
                errno: 0,
                message: None,
                offset: None,
            })),
            Ok(Frame::Done {
                seq: 10,
                flags: 2,
                errno: 0,
            }),
        ]
    );
}

// ---- property tests ----

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{0,24}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Accept),
        Just(Verdict::Drop),
        Just(Verdict::Continue),
        Just(Verdict::Return),
        name().prop_map(Verdict::Jump),
        name().prop_map(Verdict::Goto),
        any::<i32>()
            .prop_filter("not a named code", |c| ![0, 1, -1, -3, -4, -5].contains(c))
            .prop_map(Verdict::Other),
    ]
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        bytes(64).prop_map(Data::Value),
        verdict().prop_map(Data::Verdict)
    ]
}

fn reg() -> impl Strategy<Value = Reg> {
    any::<u32>().prop_map(Reg)
}

fn expr() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (any::<u32>(), reg()).prop_map(|(k, dreg)| Expr::Meta {
            key: MetaKey(k),
            dreg
        }),
        (any::<u32>(), reg()).prop_map(|(k, sreg)| Expr::MetaSet {
            key: MetaKey(k),
            sreg
        }),
        (any::<u32>(), any::<u32>(), any::<u32>(), reg()).prop_map(|(b, offset, len, dreg)| {
            Expr::Payload {
                base: PayloadBase(b),
                offset,
                len,
                dreg,
            }
        }),
        (reg(), any::<u32>(), bytes(64)).prop_map(|(sreg, op, data)| Expr::Cmp {
            sreg,
            op: CmpOp(op),
            data
        }),
        (
            reg(),
            reg(),
            proptest::collection::vec(any::<(u8, u8)>(), 0..16)
        )
            .prop_map(|(sreg, dreg, mx)| Expr::Bitwise {
                sreg,
                dreg,
                mask: mx.iter().map(|p| p.0).collect(),
                xor: mx.iter().map(|p| p.1).collect(),
            }),
        (reg(), data()).prop_map(|(dreg, data)| Expr::Immediate { dreg, data }),
        (name(), reg(), proptest::option::of(reg()), any::<bool>()).prop_map(
            |(set, sreg, dreg, invert)| Expr::Lookup {
                set,
                sreg,
                dreg,
                invert
            }
        ),
        (any::<u32>(), reg(), proptest::option::of(any::<u8>())).prop_map(
            |(k, dreg, direction)| {
                Expr::Ct {
                    key: CtKey(k),
                    dreg,
                    direction,
                }
            }
        ),
        (reg(), any::<u32>(), bytes(16), bytes(16)).prop_map(|(sreg, op, from, to)| Expr::Range {
            sreg,
            op: RangeOp(op),
            from,
            to
        }),
        Just(Expr::Counter),
        (proptest::option::of(name()), any::<u32>())
            .prop_map(|(prefix, level)| Expr::Log { prefix, level }),
        ("x-[a-z]{1,8}", bytes(48)).prop_map(|(name, data)| Expr::Other { name, data }),
    ]
}

fn table() -> impl Strategy<Value = Table> {
    (
        name(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(bytes(32)),
    )
        .prop_map(|(name, flags, handle, use_count, userdata)| Table {
            name,
            flags,
            handle,
            use_count,
            userdata,
        })
}

fn chain() -> impl Strategy<Value = Chain> {
    let hook = (any::<u32>(), any::<i32>(), proptest::option::of(name())).prop_map(
        |(hooknum, priority, device)| ChainHook {
            hooknum,
            priority,
            device,
        },
    );
    (
        (name(), name(), proptest::option::of(any::<u64>())),
        proptest::option::of(hook),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(name()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(bytes(32)),
        ),
    )
        .prop_map(
            |((table, name, handle), hook, (policy, chain_type, flags, use_count, userdata))| {
                Chain {
                    table,
                    name,
                    handle,
                    hook,
                    policy,
                    chain_type,
                    flags,
                    use_count,
                    userdata,
                }
            },
        )
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        name(),
        name(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(expr(), 0..8),
        proptest::option::of(bytes(64)),
    )
        .prop_map(|(table, chain, handle, position, exprs, userdata)| Rule {
            table,
            chain,
            handle,
            position,
            exprs: exprs.into(),
            userdata,
        })
}

fn set() -> impl Strategy<Value = Set> {
    let o32 = || proptest::option::of(any::<u32>());
    (
        (name(), name(), proptest::option::of(any::<u64>())),
        (o32(), o32(), o32(), o32(), o32(), o32(), o32()),
        (
            proptest::collection::vec(any::<u32>(), 0..5),
            o32(),
            proptest::option::of(bytes(32)),
        ),
    )
        .prop_map(
            |(
                (table, name, handle),
                (flags, key_type, key_len, data_type, data_len, policy, desc_size),
                (concat, id, userdata),
            )| Set {
                table,
                name,
                handle,
                flags,
                key_type,
                key_len,
                data_type,
                data_len,
                policy,
                desc_size,
                concat,
                id,
                userdata,
            },
        )
}

fn set_elems() -> impl Strategy<Value = SetElems> {
    let elem = (
        proptest::option::of(bytes(20)),
        proptest::option::of(bytes(20)),
        proptest::option::of(any::<u32>()),
        proptest::option::of(data()),
    )
        .prop_map(|(key, key_end, flags, data)| SetElem {
            key,
            key_end,
            flags,
            data,
        });
    (name(), name(), proptest::collection::vec(elem, 0..6)).prop_map(|(table, set, elements)| {
        SetElems {
            table,
            set,
            elements,
        }
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        table().prop_map(Body::NewTable),
        table().prop_map(Body::GetTable),
        table().prop_map(Body::DelTable),
        chain().prop_map(Body::NewChain),
        chain().prop_map(Body::GetChain),
        chain().prop_map(Body::DelChain),
        rule().prop_map(Body::NewRule),
        rule().prop_map(Body::GetRule),
        rule().prop_map(Body::DelRule),
        set().prop_map(Body::NewSet),
        set().prop_map(Body::GetSet),
        set().prop_map(Body::DelSet),
        set_elems().prop_map(Body::NewSetElem),
        set_elems().prop_map(Body::GetSetElem),
        set_elems().prop_map(Body::DelSetElem),
        (
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(name())
        )
            .prop_map(|(id, proc_pid, proc_name)| Body::NewGen(Gen {
                id,
                proc_pid,
                proc_name
            })),
        Just(Body::GetGen),
    ]
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::Unspec),
        Just(Family::Inet),
        Just(Family::Ip),
        Just(Family::Ip6),
        Just(Family::Arp),
        Just(Family::Bridge),
        Just(Family::Netdev),
    ]
}

fn message() -> impl Strategy<Value = NftMessage> {
    (
        family(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        body(),
    )
        .prop_map(|(family, flags, seq, port_id, res_id, body)| NftMessage {
            family,
            flags,
            seq,
            port_id,
            res_id,
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(m in message()) {
        let bytes = m.to_bytes().expect("small messages encode");
        let frames = msg::decode_frames(&bytes);
        prop_assert_eq!(frames, vec![Ok(Frame::Nft(m))]);
    }

    #[test]
    fn several_messages_in_one_datagram_round_trip(ms in proptest::collection::vec(message(), 1..5)) {
        let mut buf = Vec::new();
        for m in &ms {
            m.encode(&mut buf).expect("small messages encode");
        }
        let want: Vec<_> = ms.into_iter().map(|m| Ok(Frame::Nft(m))).collect();
        prop_assert_eq!(msg::decode_frames(&buf), want);
    }

    #[test]
    fn the_decoder_never_panics_on_arbitrary_bytes(b in bytes(512)) {
        let _ = msg::decode_frames(&b);
    }

    #[test]
    fn the_decoder_never_panics_on_corrupted_messages(
        m in message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = m.to_bytes().expect("small messages encode");
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let _ = msg::decode_frames(&bytes);
        let end = cut.index(bytes.len() + 1);
        let _ = msg::decode_frames(&bytes[..end]);
    }
}
