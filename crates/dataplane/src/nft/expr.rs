//! nf_tables expressions: the instructions of a rule (`nf_tables.h`:
//! `enum nft_expr_attributes` and the per-expression attribute enums).
//! A rule is a list of expressions run in order over 16 32-bit registers
//! (`NFT_REG32_00` = 8 .. `NFT_REG32_15` = 23) plus the verdict register
//! 0. Loads (`meta`, `payload`, `ct`, `immediate`) fill registers; `cmp`,
//! `range` and `lookup` end the rule early when they do not match;
//! `immediate` into register 0 sets the verdict.
//!
//! Concatenated set keys are built by filling consecutive 32-bit
//! registers (a 4-byte selector id by `immediate`, then an address by
//! `payload` into the next register) and pointing `lookup` at the first.
//!
//! Hard cases: rules read back from the kernel must compare equal to the
//! rules we sent, so registers are written in the kernel's canonical
//! numbering ([`Reg::r32`]), every attribute the kernel dumps for a modelled
//! expression is always encoded (`lookup` flags, `log` level, `bitwise`
//! op), and a known expression carrying attributes we do not model (a
//! `payload` write, a `ct` set, a `log` to a netlink group) decodes as
//! [`Expr::Other`] with its raw bytes, so it is never misread as a
//! narrower expression and re-encodes byte for byte. Counter values are
//! dropped on decode: they change under traffic and are not identity.

use super::attr::{self, Attr, AttrWriter, DecodeError};
use super::sys::*;

/// A register number (`enum nft_registers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(pub u32);

impl Reg {
    /// The verdict register.
    pub const VERDICT: Reg = Reg(0);

    /// The 32-bit register `NFT_REG32_<n>` (n in 0..16), in the
    /// kernel's canonical numbering: one that starts a 16-byte register
    /// is named as that register (`NFT_REG32_04` is `NFT_REG_2`), which
    /// is how the kernel dumps it (`nft_dump_register`).
    pub const fn r32(n: u32) -> Reg {
        if n.is_multiple_of(4) {
            Reg(1 + n / 4)
        } else {
            Reg(8 + n)
        }
    }
}

/// A verdict (`enum nft_verdicts` and `NF_ACCEPT` / `NF_DROP`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
    /// Any other code (queue, break, ...), kept as the kernel sent it.
    Other(i32),
}

impl Verdict {
    /// The chain a jump or goto names.
    pub fn target(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
}

/// Data of an immediate, a cmp operand, a set key or a map value
/// (`enum nft_data_attributes`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

macro_rules! code_newtype {
    ($(#[$m:meta])* $name:ident { $($(#[$cm:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*
        }
    };
}

code_newtype!(
    /// `enum nft_meta_keys` (the ones tortie uses are named).
    MetaKey {
        MARK = 3, IIFNAME = 6, OIFNAME = 7, NFPROTO = 15, L4PROTO = 16,
    }
);
code_newtype!(
    /// `enum nft_ct_keys`.
    CtKey { STATE = 0, MARK = 3 }
);
code_newtype!(
    /// `enum nft_payload_bases`.
    PayloadBase { LINK = 0, NETWORK = 1, TRANSPORT = 2 }
);
code_newtype!(
    /// `enum nft_cmp_ops`.
    CmpOp { EQ = 0, NEQ = 1, LT = 2, LTE = 3, GT = 4, GTE = 5 }
);
code_newtype!(
    /// `enum nft_range_ops`.
    RangeOp { EQ = 0, NEQ = 1 }
);

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `meta`: load packet metadata into `dreg`.
    Meta { key: MetaKey, dreg: Reg },
    /// `meta`: set packet metadata (e.g. the mark) from `sreg`.
    MetaSet { key: MetaKey, sreg: Reg },
    /// `payload`: load `len` bytes at `offset` from a header into `dreg`.
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    /// `cmp`: continue only if `sreg` `op` `data`.
    Cmp { sreg: Reg, op: CmpOp, data: Vec<u8> },
    /// `bitwise` (mask-and-xor): `dreg = (sreg & mask) ^ xor`, over
    /// `mask.len()` bytes; `xor` has the same length.
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `immediate`: load data into a register, or set the verdict.
    Immediate { dreg: Reg, data: Data },
    /// `lookup`: continue only if the key at `sreg` is (not, with
    /// `invert`) in `set`; for a map, its value goes to `dreg` (the
    /// verdict register for a verdict map).
    Lookup {
        set: String,
        sreg: Reg,
        dreg: Option<Reg>,
        invert: bool,
    },
    /// `ct`: load conntrack data into `dreg`.
    Ct {
        key: CtKey,
        dreg: Reg,
        direction: Option<u8>,
    },
    /// `range`: continue only if `from <= sreg <= to` (or not).
    Range {
        sreg: Reg,
        op: RangeOp,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// `counter` (its values are not part of the rule's identity).
    Counter,
    /// `log` to the kernel log.
    Log { prefix: Option<String>, level: u32 },
    /// Any other expression, or a known one with attributes not modelled
    /// here: its name and the raw attributes inside `NFTA_EXPR_DATA`.
    Other { name: String, data: Vec<u8> },
}

/// The kernel's default log level (`NFT_LOGLEVEL_WARNING`).
pub const LOG_LEVEL_WARNING: u32 = 4;

pub(crate) fn encode_data(w: &mut AttrWriter, ty: u16, data: &Data) {
    let n = w.nest_start(ty);
    match data {
        Data::Value(v) => w.bytes(NFTA_DATA_VALUE, v),
        Data::Verdict(v) => encode_verdict(w, v),
    }
    w.nest_end(n);
}

fn encode_verdict(w: &mut AttrWriter, v: &Verdict) {
    let n = w.nest_start(NFTA_DATA_VERDICT);
    let (code, chain) = match v {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Continue => (NFT_CONTINUE, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (NFT_GOTO, Some(c)),
        Verdict::Other(code) => (*code, None),
    };
    w.be32(NFTA_VERDICT_CODE, code as u32);
    if let Some(c) = chain {
        w.string(NFTA_VERDICT_CHAIN, c);
    }
    w.nest_end(n);
}

pub(crate) fn decode_data(a: &Attr<'_>) -> Result<Data, DecodeError> {
    const WHAT: &str = "data";
    let inner = a.nested(WHAT)?;
    if let Some(v) = attr::find(&inner, NFTA_DATA_VALUE) {
        return Ok(Data::Value(v.value.to_vec()));
    }
    let v = attr::require(WHAT, &inner, NFTA_DATA_VERDICT)?;
    let va = v.nested("verdict")?;
    let code = attr::require("verdict", &va, NFTA_VERDICT_CODE)?.be32("verdict code")? as i32;
    let chain = attr::find(&va, NFTA_VERDICT_CHAIN)
        .map(|c| c.string("verdict chain"))
        .transpose()?;
    let verdict = match (code, chain) {
        (NF_ACCEPT, None) => Verdict::Accept,
        (NF_DROP, None) => Verdict::Drop,
        (NFT_CONTINUE, None) => Verdict::Continue,
        (NFT_RETURN, None) => Verdict::Return,
        (NFT_JUMP, Some(c)) => Verdict::Jump(c),
        (NFT_GOTO, Some(c)) => Verdict::Goto(c),
        (NFT_JUMP | NFT_GOTO, None) => {
            return Err(DecodeError::Invalid {
                what: "verdict",
                reason: "jump or goto without a chain".into(),
            });
        }
        (code, _) => Verdict::Other(code),
    };
    Ok(Data::Verdict(verdict))
}

fn data_value(a: &Attr<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    Ok(match decode_data(a)? {
        Data::Value(v) => Some(v),
        Data::Verdict(_) => None,
    })
}

/// Writes a rule's `NFTA_RULE_EXPRESSIONS` list.
pub(crate) fn encode_list(w: &mut AttrWriter, ty: u16, exprs: &[Expr]) {
    let list = w.nest_start(ty);
    for e in exprs {
        let elem = w.nest_start(NFTA_LIST_ELEM);
        encode(w, e);
        w.nest_end(elem);
    }
    w.nest_end(list);
}

fn encode(w: &mut AttrWriter, e: &Expr) {
    let name = match e {
        Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
        Expr::Payload { .. } => "payload",
        Expr::Cmp { .. } => "cmp",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Immediate { .. } => "immediate",
        Expr::Lookup { .. } => "lookup",
        Expr::Ct { .. } => "ct",
        Expr::Range { .. } => "range",
        Expr::Counter => "counter",
        Expr::Log { .. } => "log",
        Expr::Other { name, .. } => name,
    };
    w.string(NFTA_EXPR_NAME, name);
    if matches!(e, Expr::Counter) {
        return;
    }
    let d = w.nest_start(NFTA_EXPR_DATA);
    match e {
        Expr::Meta { key, dreg } => {
            w.be32(NFTA_META_KEY, key.0);
            w.be32(NFTA_META_DREG, dreg.0);
        }
        Expr::MetaSet { key, sreg } => {
            w.be32(NFTA_META_KEY, key.0);
            w.be32(NFTA_META_SREG, sreg.0);
        }
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            w.be32(NFTA_PAYLOAD_DREG, dreg.0);
            w.be32(NFTA_PAYLOAD_BASE, base.0);
            w.be32(NFTA_PAYLOAD_OFFSET, *offset);
            w.be32(NFTA_PAYLOAD_LEN, *len);
        }
        Expr::Cmp { sreg, op, data } => {
            w.be32(NFTA_CMP_SREG, sreg.0);
            w.be32(NFTA_CMP_OP, op.0);
            encode_data(w, NFTA_CMP_DATA, &Data::Value(data.clone()));
        }
        Expr::Bitwise {
            sreg,
            dreg,
            mask,
            xor,
        } => {
            w.be32(NFTA_BITWISE_SREG, sreg.0);
            w.be32(NFTA_BITWISE_DREG, dreg.0);
            w.be32(NFTA_BITWISE_LEN, mask.len() as u32);
            w.be32(NFTA_BITWISE_OP, NFT_BITWISE_MASK_XOR);
            encode_data(w, NFTA_BITWISE_MASK, &Data::Value(mask.clone()));
            encode_data(w, NFTA_BITWISE_XOR, &Data::Value(xor.clone()));
        }
        Expr::Immediate { dreg, data } => {
            w.be32(NFTA_IMMEDIATE_DREG, dreg.0);
            encode_data(w, NFTA_IMMEDIATE_DATA, data);
        }
        Expr::Lookup {
            set,
            sreg,
            dreg,
            invert,
        } => {
            w.string(NFTA_LOOKUP_SET, set);
            w.be32(NFTA_LOOKUP_SREG, sreg.0);
            if let Some(d) = dreg {
                w.be32(NFTA_LOOKUP_DREG, d.0);
            }
            w.be32(
                NFTA_LOOKUP_FLAGS,
                if *invert { NFT_LOOKUP_F_INV } else { 0 },
            );
        }
        Expr::Ct {
            key,
            dreg,
            direction,
        } => {
            w.be32(NFTA_CT_DREG, dreg.0);
            w.be32(NFTA_CT_KEY, key.0);
            if let Some(d) = direction {
                w.u8(NFTA_CT_DIRECTION, *d);
            }
        }
        Expr::Range { sreg, op, from, to } => {
            w.be32(NFTA_RANGE_SREG, sreg.0);
            w.be32(NFTA_RANGE_OP, op.0);
            encode_data(w, NFTA_RANGE_FROM_DATA, &Data::Value(from.clone()));
            encode_data(w, NFTA_RANGE_TO_DATA, &Data::Value(to.clone()));
        }
        Expr::Log { prefix, level } => {
            if let Some(p) = prefix {
                w.string(NFTA_LOG_PREFIX, p);
            }
            w.be32(NFTA_LOG_LEVEL, *level);
        }
        // Raw attributes, copied back verbatim.
        Expr::Other { data, .. } => w.raw(data),
        Expr::Counter => {}
    }
    w.nest_end(d);
}

/// Reads a rule's expression list.
pub(crate) fn decode_list(a: &Attr<'_>) -> Result<Vec<Expr>, DecodeError> {
    let mut out = Vec::new();
    for elem in a.nested("expressions")? {
        if elem.ty != NFTA_LIST_ELEM {
            continue;
        }
        let ea = elem.nested("expression")?;
        let name = attr::require("expression", &ea, NFTA_EXPR_NAME)?.string("expression name")?;
        let data = attr::find(&ea, NFTA_EXPR_DATA)
            .map(|d| d.value)
            .unwrap_or(&[]);
        out.push(decode(name, data)?);
    }
    Ok(out)
}

fn decode(name: String, data: &[u8]) -> Result<Expr, DecodeError> {
    const KNOWN: [&str; 10] = [
        "meta",
        "payload",
        "cmp",
        "bitwise",
        "immediate",
        "lookup",
        "ct",
        "range",
        "counter",
        "log",
    ];
    if !KNOWN.contains(&name.as_str()) {
        return Ok(Expr::Other {
            name,
            data: data.to_vec(),
        });
    }
    let attrs = attr::parse("expression data", data)?;
    let known = match name.as_str() {
        "meta" => decode_meta(&attrs)?,
        "payload" => decode_payload(&attrs)?,
        "cmp" => decode_cmp(&attrs)?,
        "bitwise" => decode_bitwise(&attrs)?,
        "immediate" => decode_immediate(&attrs)?,
        "lookup" => decode_lookup(&attrs)?,
        "ct" => decode_ct(&attrs)?,
        "range" => decode_range(&attrs)?,
        "counter" => Some(Expr::Counter),
        "log" => decode_log(&attrs)?,
        _ => None,
    };
    Ok(known.unwrap_or_else(|| Expr::Other {
        name,
        data: data.to_vec(),
    }))
}

/// The attributes present, if all are among `allowed`; else None (the
/// expression is then kept raw as [`Expr::Other`]).
fn only<'a, 'b>(attrs: &'b [Attr<'a>], allowed: &[u16]) -> Option<&'b [Attr<'a>]> {
    attrs
        .iter()
        .all(|a| allowed.contains(&a.ty))
        .then_some(attrs)
}

fn reg(attrs: &[Attr<'_>], ty: u16) -> Result<Option<Reg>, DecodeError> {
    attr::find(attrs, ty)
        .map(|a| a.be32("register").map(Reg))
        .transpose()
}

fn be32(attrs: &[Attr<'_>], ty: u16) -> Result<Option<u32>, DecodeError> {
    attr::find(attrs, ty)
        .map(|a| a.be32("expression"))
        .transpose()
}

fn decode_meta(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let Some(attrs) = only(attrs, &[NFTA_META_KEY, NFTA_META_DREG, NFTA_META_SREG]) else {
        return Ok(None);
    };
    let key = be32(attrs, NFTA_META_KEY)?.map(MetaKey);
    Ok(
        match (
            key,
            reg(attrs, NFTA_META_DREG)?,
            reg(attrs, NFTA_META_SREG)?,
        ) {
            (Some(key), Some(dreg), None) => Some(Expr::Meta { key, dreg }),
            (Some(key), None, Some(sreg)) => Some(Expr::MetaSet { key, sreg }),
            _ => None,
        },
    )
}

fn decode_payload(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let allowed = [
        NFTA_PAYLOAD_DREG,
        NFTA_PAYLOAD_BASE,
        NFTA_PAYLOAD_OFFSET,
        NFTA_PAYLOAD_LEN,
    ];
    let Some(attrs) = only(attrs, &allowed) else {
        return Ok(None);
    };
    Ok(
        match (
            reg(attrs, NFTA_PAYLOAD_DREG)?,
            be32(attrs, NFTA_PAYLOAD_BASE)?,
            be32(attrs, NFTA_PAYLOAD_OFFSET)?,
            be32(attrs, NFTA_PAYLOAD_LEN)?,
        ) {
            (Some(dreg), Some(base), Some(offset), Some(len)) => Some(Expr::Payload {
                base: PayloadBase(base),
                offset,
                len,
                dreg,
            }),
            _ => None,
        },
    )
}

fn decode_cmp(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let Some(attrs) = only(attrs, &[NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA]) else {
        return Ok(None);
    };
    let data = attr::find(attrs, NFTA_CMP_DATA)
        .map(data_value)
        .transpose()?
        .flatten();
    Ok(
        match (reg(attrs, NFTA_CMP_SREG)?, be32(attrs, NFTA_CMP_OP)?, data) {
            (Some(sreg), Some(op), Some(data)) => Some(Expr::Cmp {
                sreg,
                op: CmpOp(op),
                data,
            }),
            _ => None,
        },
    )
}

fn decode_bitwise(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let allowed = [
        NFTA_BITWISE_SREG,
        NFTA_BITWISE_DREG,
        NFTA_BITWISE_LEN,
        NFTA_BITWISE_OP,
        NFTA_BITWISE_MASK,
        NFTA_BITWISE_XOR,
    ];
    let Some(attrs) = only(attrs, &allowed) else {
        return Ok(None);
    };
    if be32(attrs, NFTA_BITWISE_OP)?.unwrap_or(NFT_BITWISE_MASK_XOR) != NFT_BITWISE_MASK_XOR {
        return Ok(None);
    }
    let mask = attr::find(attrs, NFTA_BITWISE_MASK)
        .map(data_value)
        .transpose()?
        .flatten();
    let xor = attr::find(attrs, NFTA_BITWISE_XOR)
        .map(data_value)
        .transpose()?
        .flatten();
    Ok(
        match (
            reg(attrs, NFTA_BITWISE_SREG)?,
            reg(attrs, NFTA_BITWISE_DREG)?,
            be32(attrs, NFTA_BITWISE_LEN)?,
            mask,
            xor,
        ) {
            (Some(sreg), Some(dreg), Some(len), Some(mask), Some(xor))
                if mask.len() == len as usize && xor.len() == len as usize =>
            {
                Some(Expr::Bitwise {
                    sreg,
                    dreg,
                    mask,
                    xor,
                })
            }
            _ => None,
        },
    )
}

fn decode_immediate(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let Some(attrs) = only(attrs, &[NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA]) else {
        return Ok(None);
    };
    let data = attr::find(attrs, NFTA_IMMEDIATE_DATA)
        .map(decode_data)
        .transpose()?;
    Ok(match (reg(attrs, NFTA_IMMEDIATE_DREG)?, data) {
        (Some(dreg), Some(data)) => Some(Expr::Immediate { dreg, data }),
        _ => None,
    })
}

fn decode_lookup(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let allowed = [
        NFTA_LOOKUP_SET,
        NFTA_LOOKUP_SREG,
        NFTA_LOOKUP_DREG,
        NFTA_LOOKUP_FLAGS,
    ];
    let Some(attrs) = only(attrs, &allowed) else {
        return Ok(None);
    };
    let set = attr::find(attrs, NFTA_LOOKUP_SET)
        .map(|a| a.string("lookup set"))
        .transpose()?;
    let flags = be32(attrs, NFTA_LOOKUP_FLAGS)?.unwrap_or(0);
    if flags & !NFT_LOOKUP_F_INV != 0 {
        return Ok(None);
    }
    Ok(match (set, reg(attrs, NFTA_LOOKUP_SREG)?) {
        (Some(set), Some(sreg)) => Some(Expr::Lookup {
            set,
            sreg,
            dreg: reg(attrs, NFTA_LOOKUP_DREG)?,
            invert: flags & NFT_LOOKUP_F_INV != 0,
        }),
        _ => None,
    })
}

fn decode_ct(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let Some(attrs) = only(attrs, &[NFTA_CT_DREG, NFTA_CT_KEY, NFTA_CT_DIRECTION]) else {
        return Ok(None);
    };
    let direction = attr::find(attrs, NFTA_CT_DIRECTION)
        .map(|a| a.u8("ct direction"))
        .transpose()?;
    Ok(
        match (reg(attrs, NFTA_CT_DREG)?, be32(attrs, NFTA_CT_KEY)?) {
            (Some(dreg), Some(key)) => Some(Expr::Ct {
                key: CtKey(key),
                dreg,
                direction,
            }),
            _ => None,
        },
    )
}

fn decode_range(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let allowed = [
        NFTA_RANGE_SREG,
        NFTA_RANGE_OP,
        NFTA_RANGE_FROM_DATA,
        NFTA_RANGE_TO_DATA,
    ];
    let Some(attrs) = only(attrs, &allowed) else {
        return Ok(None);
    };
    let from = attr::find(attrs, NFTA_RANGE_FROM_DATA)
        .map(data_value)
        .transpose()?
        .flatten();
    let to = attr::find(attrs, NFTA_RANGE_TO_DATA)
        .map(data_value)
        .transpose()?
        .flatten();
    Ok(
        match (
            reg(attrs, NFTA_RANGE_SREG)?,
            be32(attrs, NFTA_RANGE_OP)?,
            from,
            to,
        ) {
            (Some(sreg), Some(op), Some(from), Some(to)) => Some(Expr::Range {
                sreg,
                op: RangeOp(op),
                from,
                to,
            }),
            _ => None,
        },
    )
}

fn decode_log(attrs: &[Attr<'_>]) -> Result<Option<Expr>, DecodeError> {
    let Some(attrs) = only(attrs, &[NFTA_LOG_PREFIX, NFTA_LOG_LEVEL]) else {
        return Ok(None);
    };
    let prefix = attr::find(attrs, NFTA_LOG_PREFIX)
        .map(|a| a.string("log prefix"))
        .transpose()?;
    let level = be32(attrs, NFTA_LOG_LEVEL)?.unwrap_or(LOG_LEVEL_WARNING);
    Ok(Some(Expr::Log { prefix, level }))
}
