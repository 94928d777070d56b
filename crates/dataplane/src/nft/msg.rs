//! nf_tables messages (`nf_tables.h`: `enum nf_tables_msg_types` and the
//! table, chain, rule, set, set element and generation attribute enums)
//! framed as nfnetlink messages (`nfnetlink.h`: subsystem
//! `NFNL_SUBSYS_NFTABLES` in the high byte of the type, `struct nfgenmsg`
//! after the netlink header), plus the netlink control frames a reply
//! stream carries (`NLMSG_ERROR` with extended ACK attributes,
//! `NLMSG_DONE`) and the batch delimiters.
//!
//! Each message body is a struct with an `Option` per optional attribute,
//! so what was decoded re-encodes to the same bytes and
//! `decode(encode(m)) == m` holds for every message; attributes this codec
//! does not model are skipped on decode.
//!
//! Hard cases: a reply stream mixes nf_tables objects, ACKs, errors and
//! dump terminators in one datagram; a frame whose length field lies is
//! reported as an error for the rest of the datagram rather than read past;
//! errors carry the offending request's sequence number, which is how the
//! transport maps a kernel error back to one message of a batch.

use std::sync::Arc;

use super::attr::{self, Attr, AttrWriter, DecodeError, EncodeError};
use super::expr::{self, Data, Expr};
use super::sys::*;

/// An nf_tables address family (`enum nfproto` values in `nfgenmsg`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    #[default]
    Unspec,
    Inet,
    Ip,
    Arp,
    Netdev,
    Bridge,
    Ip6,
}

impl Family {
    pub fn number(self) -> u8 {
        match self {
            Family::Unspec => 0,
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Arp => 3,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }

    pub fn from_number(n: u8) -> Option<Family> {
        Some(match n {
            0 => Family::Unspec,
            1 => Family::Inet,
            2 => Family::Ip,
            3 => Family::Arp,
            5 => Family::Netdev,
            7 => Family::Bridge,
            10 => Family::Ip6,
            _ => return None,
        })
    }

    /// The name `nft` uses (`inet`, `ip`, `ip6`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Family::Unspec => "unspec",
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Arp => "arp",
            Family::Netdev => "netdev",
            Family::Bridge => "bridge",
            Family::Ip6 => "ip6",
        }
    }
}

/// `NFT_MSG_*TABLE` body (`enum nft_table_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub flags: Option<u32>,
    pub handle: Option<u64>,
    pub use_count: Option<u32>,
    pub userdata: Option<Vec<u8>>,
}

/// A base chain's hook (`enum nft_hook_attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHook {
    pub hooknum: u32,
    pub priority: i32,
    pub device: Option<String>,
}

/// `NFT_MSG_*CHAIN` body (`enum nft_chain_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub table: String,
    pub name: String,
    pub handle: Option<u64>,
    pub hook: Option<ChainHook>,
    pub policy: Option<u32>,
    pub chain_type: Option<String>,
    pub flags: Option<u32>,
    pub use_count: Option<u32>,
    pub userdata: Option<Vec<u8>>,
}

/// `NFT_MSG_*RULE` body (`enum nft_rule_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub handle: Option<u64>,
    /// NEWRULE: the rule to insert before (or after, with
    /// `NLM_F_APPEND`); dumps: the previous rule.
    pub position: Option<u64>,
    /// Shared with the model's rule the message was made from.
    pub exprs: Arc<[Expr]>,
    pub userdata: Option<Vec<u8>>,
}

/// `NFT_MSG_*SET` body (`enum nft_set_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    pub table: String,
    pub name: String,
    pub handle: Option<u64>,
    pub flags: Option<u32>,
    pub key_type: Option<u32>,
    pub key_len: Option<u32>,
    pub data_type: Option<u32>,
    pub data_len: Option<u32>,
    pub policy: Option<u32>,
    pub desc_size: Option<u32>,
    /// Field lengths in bytes of a concatenated key (`NFTA_SET_DESC_CONCAT`).
    pub concat: Vec<u32>,
    /// Transaction-local id; NEWSET requires one.
    pub id: Option<u32>,
    pub userdata: Option<Vec<u8>>,
}

/// One set element (`enum nft_set_elem_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetElem {
    pub key: Option<Vec<u8>>,
    /// Inclusive end of a range in a concatenated interval set.
    pub key_end: Option<Vec<u8>>,
    pub flags: Option<u32>,
    pub data: Option<Data>,
}

/// `NFT_MSG_*SETELEM` body (`enum nft_set_elem_list_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetElems {
    pub table: String,
    pub set: String,
    pub elements: Vec<SetElem>,
}

/// `NFT_MSG_NEWGEN` body (`enum nft_gen_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gen {
    pub id: u32,
    pub proc_pid: Option<u32>,
    pub proc_name: Option<String>,
}

/// An nf_tables message: one variant per `NFT_MSG_*` type used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Body {
    NewTable(Table),
    GetTable(Table),
    DelTable(Table),
    NewChain(Chain),
    GetChain(Chain),
    DelChain(Chain),
    NewRule(Rule),
    GetRule(Rule),
    DelRule(Rule),
    NewSet(Set),
    GetSet(Set),
    DelSet(Set),
    NewSetElem(SetElems),
    GetSetElem(SetElems),
    DelSetElem(SetElems),
    NewGen(Gen),
    #[default]
    GetGen,
}

impl Body {
    fn msg_type(&self) -> u8 {
        match self {
            Body::NewTable(_) => NFT_MSG_NEWTABLE,
            Body::GetTable(_) => NFT_MSG_GETTABLE,
            Body::DelTable(_) => NFT_MSG_DELTABLE,
            Body::NewChain(_) => NFT_MSG_NEWCHAIN,
            Body::GetChain(_) => NFT_MSG_GETCHAIN,
            Body::DelChain(_) => NFT_MSG_DELCHAIN,
            Body::NewRule(_) => NFT_MSG_NEWRULE,
            Body::GetRule(_) => NFT_MSG_GETRULE,
            Body::DelRule(_) => NFT_MSG_DELRULE,
            Body::NewSet(_) => NFT_MSG_NEWSET,
            Body::GetSet(_) => NFT_MSG_GETSET,
            Body::DelSet(_) => NFT_MSG_DELSET,
            Body::NewSetElem(_) => NFT_MSG_NEWSETELEM,
            Body::GetSetElem(_) => NFT_MSG_GETSETELEM,
            Body::DelSetElem(_) => NFT_MSG_DELSETELEM,
            Body::NewGen(_) => NFT_MSG_NEWGEN,
            Body::GetGen => NFT_MSG_GETGEN,
        }
    }

    /// A short name for logs and errors (`NEWRULE`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Body::NewTable(_) => "NEWTABLE",
            Body::GetTable(_) => "GETTABLE",
            Body::DelTable(_) => "DELTABLE",
            Body::NewChain(_) => "NEWCHAIN",
            Body::GetChain(_) => "GETCHAIN",
            Body::DelChain(_) => "DELCHAIN",
            Body::NewRule(_) => "NEWRULE",
            Body::GetRule(_) => "GETRULE",
            Body::DelRule(_) => "DELRULE",
            Body::NewSet(_) => "NEWSET",
            Body::GetSet(_) => "GETSET",
            Body::DelSet(_) => "DELSET",
            Body::NewSetElem(_) => "NEWSETELEM",
            Body::GetSetElem(_) => "GETSETELEM",
            Body::DelSetElem(_) => "DELSETELEM",
            Body::NewGen(_) => "NEWGEN",
            Body::GetGen => "GETGEN",
        }
    }
}

/// One nf_tables message with its netlink header fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftMessage {
    pub family: Family,
    /// `NLM_F_*` flags (`NLM_F_REQUEST` is added on encode for requests
    /// only if given here).
    pub flags: u16,
    pub seq: u32,
    /// The sender's netlink port id: 0 in requests (the kernel fills it
    /// in), the recipient's in the kernel's replies.
    pub port_id: u32,
    /// `nfgenmsg.res_id`: 0 in requests; in dumps, the low 16 bits of the
    /// ruleset generation.
    pub res_id: u16,
    pub body: Body,
}

/// A netlink error or ACK (`errno` 0) for the request with `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub seq: u32,
    /// 0 for an ACK, else a positive errno.
    pub errno: i32,
    /// The kernel's extended ACK message, if it sent one.
    pub message: Option<String>,
    /// Offset of the offending attribute in the request, if sent.
    pub offset: Option<u32>,
}

/// One frame of a netlink datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Nft(NftMessage),
    Error(NlError),
    /// End of a dump; `errno` non-zero if the dump failed.
    Done {
        seq: u32,
        flags: u16,
        errno: i32,
    },
    BatchBegin {
        seq: u32,
    },
    BatchEnd {
        seq: u32,
    },
    /// Anything else (another subsystem, NOOP, OVERRUN), skipped.
    Other {
        ty: u16,
        seq: u32,
    },
}

struct Header {
    ty: u16,
    flags: u16,
    seq: u32,
    port_id: u32,
    family: u8,
    res_id: u16,
}

fn header(buf: &mut Vec<u8>, h: Header) -> usize {
    let Header {
        ty,
        flags,
        seq,
        port_id,
        family,
        res_id,
    } = h;
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&port_id.to_ne_bytes());
    buf.push(family);
    buf.push(NFNETLINK_V0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    at
}

fn patch_len(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends a batch delimiter (`NFNL_MSG_BATCH_BEGIN` / `_END`) for the
/// nf_tables subsystem.
pub(crate) fn encode_batch_marker(buf: &mut Vec<u8>, begin: bool, seq: u32) {
    let ty = if begin {
        NFNL_MSG_BATCH_BEGIN
    } else {
        NFNL_MSG_BATCH_END
    };
    let at = header(
        buf,
        Header {
            ty,
            flags: NLM_F_REQUEST,
            seq,
            port_id: 0,
            family: 0,
            res_id: NFNL_SUBSYS_NFTABLES,
        },
    );
    patch_len(buf, at);
}

impl NftMessage {
    /// Appends this message to `buf`. On error `buf` is left as it was.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_as(buf, self.flags, self.seq)
    }

    /// Appends this message with other flags and sequence number.
    pub(crate) fn encode_as(
        &self,
        buf: &mut Vec<u8>,
        flags: u16,
        seq: u32,
    ) -> Result<(), EncodeError> {
        let start = buf.len();
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | u16::from(self.body.msg_type());
        header(
            buf,
            Header {
                ty,
                flags,
                seq,
                port_id: self.port_id,
                family: self.family.number(),
                res_id: self.res_id,
            },
        );
        let mut w = AttrWriter::new(buf);
        encode_body(&mut w, &self.body);
        match w.finish() {
            Ok(()) => {
                patch_len(buf, start);
                Ok(())
            }
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::new();
        self.encode(&mut buf)?;
        Ok(buf)
    }
}

fn opt_be32(w: &mut AttrWriter, ty: u16, v: Option<u32>) {
    if let Some(v) = v {
        w.be32(ty, v);
    }
}

fn opt_be64(w: &mut AttrWriter, ty: u16, v: Option<u64>) {
    if let Some(v) = v {
        w.be64(ty, v);
    }
}

fn opt_bytes(w: &mut AttrWriter, ty: u16, v: &Option<Vec<u8>>) {
    if let Some(v) = v {
        w.bytes(ty, v);
    }
}

fn nonempty_string(w: &mut AttrWriter, ty: u16, s: &str) {
    if !s.is_empty() {
        w.string(ty, s);
    }
}

fn encode_body(w: &mut AttrWriter, body: &Body) {
    match body {
        Body::NewTable(t) | Body::GetTable(t) | Body::DelTable(t) => {
            nonempty_string(w, NFTA_TABLE_NAME, &t.name);
            opt_be32(w, NFTA_TABLE_FLAGS, t.flags);
            opt_be32(w, NFTA_TABLE_USE, t.use_count);
            opt_be64(w, NFTA_TABLE_HANDLE, t.handle);
            opt_bytes(w, NFTA_TABLE_USERDATA, &t.userdata);
        }
        Body::NewChain(c) | Body::GetChain(c) | Body::DelChain(c) => encode_chain(w, c),
        Body::NewRule(r) | Body::GetRule(r) | Body::DelRule(r) => {
            nonempty_string(w, NFTA_RULE_TABLE, &r.table);
            nonempty_string(w, NFTA_RULE_CHAIN, &r.chain);
            opt_be64(w, NFTA_RULE_HANDLE, r.handle);
            opt_be64(w, NFTA_RULE_POSITION, r.position);
            if !r.exprs.is_empty() {
                expr::encode_list(w, NFTA_RULE_EXPRESSIONS, &r.exprs);
            }
            opt_bytes(w, NFTA_RULE_USERDATA, &r.userdata);
        }
        Body::NewSet(s) | Body::GetSet(s) | Body::DelSet(s) => encode_set(w, s),
        Body::NewSetElem(e) | Body::GetSetElem(e) | Body::DelSetElem(e) => {
            nonempty_string(w, NFTA_SET_ELEM_LIST_TABLE, &e.table);
            nonempty_string(w, NFTA_SET_ELEM_LIST_SET, &e.set);
            if !e.elements.is_empty() {
                let list = w.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
                for el in &e.elements {
                    encode_elem(w, el);
                }
                w.nest_end(list);
            }
        }
        Body::NewGen(g) => {
            w.be32(NFTA_GEN_ID, g.id);
            opt_be32(w, NFTA_GEN_PROC_PID, g.proc_pid);
            if let Some(n) = &g.proc_name {
                w.string(NFTA_GEN_PROC_NAME, n);
            }
        }
        Body::GetGen => {}
    }
}

fn encode_chain(w: &mut AttrWriter, c: &Chain) {
    nonempty_string(w, NFTA_CHAIN_TABLE, &c.table);
    nonempty_string(w, NFTA_CHAIN_NAME, &c.name);
    opt_be64(w, NFTA_CHAIN_HANDLE, c.handle);
    if let Some(h) = &c.hook {
        let n = w.nest_start(NFTA_CHAIN_HOOK);
        w.be32(NFTA_HOOK_HOOKNUM, h.hooknum);
        w.be32(NFTA_HOOK_PRIORITY, h.priority as u32);
        if let Some(d) = &h.device {
            w.string(NFTA_HOOK_DEV, d);
        }
        w.nest_end(n);
    }
    opt_be32(w, NFTA_CHAIN_POLICY, c.policy);
    if let Some(t) = &c.chain_type {
        w.string(NFTA_CHAIN_TYPE, t);
    }
    opt_be32(w, NFTA_CHAIN_FLAGS, c.flags);
    opt_be32(w, NFTA_CHAIN_USE, c.use_count);
    opt_bytes(w, NFTA_CHAIN_USERDATA, &c.userdata);
}

fn encode_set(w: &mut AttrWriter, s: &Set) {
    nonempty_string(w, NFTA_SET_TABLE, &s.table);
    nonempty_string(w, NFTA_SET_NAME, &s.name);
    opt_be64(w, NFTA_SET_HANDLE, s.handle);
    opt_be32(w, NFTA_SET_FLAGS, s.flags);
    opt_be32(w, NFTA_SET_KEY_TYPE, s.key_type);
    opt_be32(w, NFTA_SET_KEY_LEN, s.key_len);
    opt_be32(w, NFTA_SET_DATA_TYPE, s.data_type);
    opt_be32(w, NFTA_SET_DATA_LEN, s.data_len);
    opt_be32(w, NFTA_SET_POLICY, s.policy);
    if s.desc_size.is_some() || !s.concat.is_empty() {
        let desc = w.nest_start(NFTA_SET_DESC);
        opt_be32(w, NFTA_SET_DESC_SIZE, s.desc_size);
        if !s.concat.is_empty() {
            let c = w.nest_start(NFTA_SET_DESC_CONCAT);
            for len in &s.concat {
                let f = w.nest_start(NFTA_LIST_ELEM);
                w.be32(NFTA_SET_FIELD_LEN, *len);
                w.nest_end(f);
            }
            w.nest_end(c);
        }
        w.nest_end(desc);
    }
    opt_be32(w, NFTA_SET_ID, s.id);
    opt_bytes(w, NFTA_SET_USERDATA, &s.userdata);
}

fn encode_elem(w: &mut AttrWriter, el: &SetElem) {
    let n = w.nest_start(NFTA_LIST_ELEM);
    if let Some(k) = &el.key {
        expr::encode_data(w, NFTA_SET_ELEM_KEY, &Data::Value(k.clone()));
    }
    if let Some(k) = &el.key_end {
        expr::encode_data(w, NFTA_SET_ELEM_KEY_END, &Data::Value(k.clone()));
    }
    opt_be32(w, NFTA_SET_ELEM_FLAGS, el.flags);
    if let Some(d) = &el.data {
        expr::encode_data(w, NFTA_SET_ELEM_DATA, d);
    }
    w.nest_end(n);
}

/// Decodes every frame of a datagram. A frame that cannot be decoded is
/// an `Err` in its place; a frame whose length is impossible ends the
/// datagram with an `Err`.
pub fn decode_frames(mut buf: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < NLMSG_HDRLEN {
            out.push(Err(DecodeError::Truncated {
                what: "netlink header",
                need: NLMSG_HDRLEN,
                have: buf.len(),
            }));
            break;
        }
        let len = attr::ne_u32(buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            out.push(Err(DecodeError::Truncated {
                what: "netlink message",
                need: len.max(NLMSG_HDRLEN),
                have: buf.len(),
            }));
            break;
        }
        out.push(decode_frame(&buf[..len]));
        buf = &buf[attr::align(len).min(buf.len())..];
    }
    out
}

fn decode_frame(m: &[u8]) -> Result<Frame, DecodeError> {
    let ty = attr::ne_u16(m, 4);
    let flags = attr::ne_u16(m, 6);
    let seq = attr::ne_u32(m, 8);
    let port_id = attr::ne_u32(m, 12);
    let payload = &m[NLMSG_HDRLEN..];
    match ty {
        NLMSG_ERROR => decode_error(seq, flags, payload).map(Frame::Error),
        NLMSG_DONE => Ok(Frame::Done {
            seq,
            flags,
            errno: match payload {
                [a, b, c, d, ..] => i32::from_ne_bytes([*a, *b, *c, *d]).saturating_neg(),
                _ => 0,
            },
        }),
        NFNL_MSG_BATCH_BEGIN => Ok(Frame::BatchBegin { seq }),
        NFNL_MSG_BATCH_END => Ok(Frame::BatchEnd { seq }),
        _ if ty >> 8 == NFNL_SUBSYS_NFTABLES => {
            decode_nft(ty as u8, flags, seq, payload).map(|mut m| {
                m.port_id = port_id;
                Frame::Nft(m)
            })
        }
        _ => Ok(Frame::Other { ty, seq }),
    }
}

fn decode_error(seq: u32, flags: u16, p: &[u8]) -> Result<NlError, DecodeError> {
    // struct nlmsgerr: int error; struct nlmsghdr msg; then (unless
    // NLM_F_CAPPED) the request's payload; then, with NLM_F_ACK_TLVS,
    // enum nlmsgerr_attrs.
    let need = 4 + NLMSG_HDRLEN;
    if p.len() < need {
        return Err(DecodeError::Truncated {
            what: "netlink error",
            need,
            have: p.len(),
        });
    }
    let error = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    let mut err = NlError {
        seq,
        errno: error.saturating_neg(),
        message: None,
        offset: None,
    };
    if flags & NLM_F_ACK_TLVS == 0 {
        return Ok(err);
    }
    let tlv_at = if flags & NLM_F_CAPPED != 0 {
        need
    } else {
        let orig_len = attr::ne_u32(p, 4) as usize;
        4 + attr::align(orig_len)
    };
    let Some(tlvs) = p.get(tlv_at..) else {
        return Ok(err);
    };
    for a in attr::parse("extended ack", tlvs)? {
        match a.ty {
            NLMSGERR_ATTR_MSG => err.message = Some(a.string("extended ack message")?),
            NLMSGERR_ATTR_OFFS => {
                let b: [u8; 4] = a.value.try_into().map_err(|_| DecodeError::BadLength {
                    what: "extended ack offset",
                    attr: a.ty,
                    len: a.value.len(),
                    expected: 4,
                })?;
                err.offset = Some(u32::from_ne_bytes(b));
            }
            _ => {}
        }
    }
    Ok(err)
}

fn decode_nft(op: u8, flags: u16, seq: u32, p: &[u8]) -> Result<NftMessage, DecodeError> {
    if p.len() < NFGENMSG_LEN {
        return Err(DecodeError::Truncated {
            what: "nfgenmsg",
            need: NFGENMSG_LEN,
            have: p.len(),
        });
    }
    let family = Family::from_number(p[0]).ok_or_else(|| DecodeError::Invalid {
        what: "nfgenmsg",
        reason: format!("unknown family {}", p[0]),
    })?;
    let attrs = attr::parse("nf_tables message", &p[NFGENMSG_LEN..])?;
    let body = match op {
        NFT_MSG_NEWTABLE => Body::NewTable(decode_table(&attrs)?),
        NFT_MSG_GETTABLE => Body::GetTable(decode_table(&attrs)?),
        NFT_MSG_DELTABLE => Body::DelTable(decode_table(&attrs)?),
        NFT_MSG_NEWCHAIN => Body::NewChain(decode_chain(&attrs)?),
        NFT_MSG_GETCHAIN => Body::GetChain(decode_chain(&attrs)?),
        NFT_MSG_DELCHAIN => Body::DelChain(decode_chain(&attrs)?),
        NFT_MSG_NEWRULE => Body::NewRule(decode_rule(&attrs)?),
        NFT_MSG_GETRULE => Body::GetRule(decode_rule(&attrs)?),
        NFT_MSG_DELRULE => Body::DelRule(decode_rule(&attrs)?),
        NFT_MSG_NEWSET => Body::NewSet(decode_set(&attrs)?),
        NFT_MSG_GETSET => Body::GetSet(decode_set(&attrs)?),
        NFT_MSG_DELSET => Body::DelSet(decode_set(&attrs)?),
        NFT_MSG_NEWSETELEM => Body::NewSetElem(decode_elems(&attrs)?),
        NFT_MSG_GETSETELEM => Body::GetSetElem(decode_elems(&attrs)?),
        NFT_MSG_DELSETELEM => Body::DelSetElem(decode_elems(&attrs)?),
        NFT_MSG_NEWGEN => Body::NewGen(decode_gen(&attrs)?),
        NFT_MSG_GETGEN => Body::GetGen,
        other => {
            return Err(DecodeError::Invalid {
                what: "nf_tables message",
                reason: format!("unsupported message type {other}"),
            });
        }
    };
    Ok(NftMessage {
        family,
        flags,
        seq,
        port_id: 0,
        res_id: u16::from_be_bytes([p[2], p[3]]),
        body,
    })
}

fn s(attrs: &[Attr<'_>], ty: u16, what: &'static str) -> Result<Option<String>, DecodeError> {
    attr::find(attrs, ty).map(|a| a.string(what)).transpose()
}

fn u32_of(attrs: &[Attr<'_>], ty: u16, what: &'static str) -> Result<Option<u32>, DecodeError> {
    attr::find(attrs, ty).map(|a| a.be32(what)).transpose()
}

fn u64_of(attrs: &[Attr<'_>], ty: u16, what: &'static str) -> Result<Option<u64>, DecodeError> {
    attr::find(attrs, ty).map(|a| a.be64(what)).transpose()
}

fn bytes_of(attrs: &[Attr<'_>], ty: u16) -> Option<Vec<u8>> {
    attr::find(attrs, ty).map(|a| a.value.to_vec())
}

fn decode_table(a: &[Attr<'_>]) -> Result<Table, DecodeError> {
    const W: &str = "table";
    Ok(Table {
        name: s(a, NFTA_TABLE_NAME, W)?.unwrap_or_default(),
        flags: u32_of(a, NFTA_TABLE_FLAGS, W)?,
        handle: u64_of(a, NFTA_TABLE_HANDLE, W)?,
        use_count: u32_of(a, NFTA_TABLE_USE, W)?,
        userdata: bytes_of(a, NFTA_TABLE_USERDATA),
    })
}

fn decode_chain(a: &[Attr<'_>]) -> Result<Chain, DecodeError> {
    const W: &str = "chain";
    let hook = match attr::find(a, NFTA_CHAIN_HOOK) {
        None => None,
        Some(h) => {
            let ha = h.nested("chain hook")?;
            Some(ChainHook {
                hooknum: attr::require(W, &ha, NFTA_HOOK_HOOKNUM)?.be32(W)?,
                priority: attr::require(W, &ha, NFTA_HOOK_PRIORITY)?.be32(W)? as i32,
                device: s(&ha, NFTA_HOOK_DEV, W)?,
            })
        }
    };
    Ok(Chain {
        table: s(a, NFTA_CHAIN_TABLE, W)?.unwrap_or_default(),
        name: s(a, NFTA_CHAIN_NAME, W)?.unwrap_or_default(),
        handle: u64_of(a, NFTA_CHAIN_HANDLE, W)?,
        hook,
        policy: u32_of(a, NFTA_CHAIN_POLICY, W)?,
        chain_type: s(a, NFTA_CHAIN_TYPE, W)?,
        flags: u32_of(a, NFTA_CHAIN_FLAGS, W)?,
        use_count: u32_of(a, NFTA_CHAIN_USE, W)?,
        userdata: bytes_of(a, NFTA_CHAIN_USERDATA),
    })
}

fn decode_rule(a: &[Attr<'_>]) -> Result<Rule, DecodeError> {
    const W: &str = "rule";
    Ok(Rule {
        table: s(a, NFTA_RULE_TABLE, W)?.unwrap_or_default(),
        chain: s(a, NFTA_RULE_CHAIN, W)?.unwrap_or_default(),
        handle: u64_of(a, NFTA_RULE_HANDLE, W)?,
        position: u64_of(a, NFTA_RULE_POSITION, W)?,
        exprs: match attr::find(a, NFTA_RULE_EXPRESSIONS) {
            Some(e) => expr::decode_list(e)?.into(),
            None => Arc::from([]),
        },
        userdata: bytes_of(a, NFTA_RULE_USERDATA),
    })
}

fn decode_set(a: &[Attr<'_>]) -> Result<Set, DecodeError> {
    const W: &str = "set";
    let mut desc_size = None;
    let mut concat = Vec::new();
    if let Some(d) = attr::find(a, NFTA_SET_DESC) {
        let da = d.nested("set desc")?;
        desc_size = u32_of(&da, NFTA_SET_DESC_SIZE, W)?;
        if let Some(c) = attr::find(&da, NFTA_SET_DESC_CONCAT) {
            for f in c.nested("set concat")? {
                let fa = f.nested("set field")?;
                concat.push(attr::require(W, &fa, NFTA_SET_FIELD_LEN)?.be32(W)?);
            }
        }
    }
    Ok(Set {
        table: s(a, NFTA_SET_TABLE, W)?.unwrap_or_default(),
        name: s(a, NFTA_SET_NAME, W)?.unwrap_or_default(),
        handle: u64_of(a, NFTA_SET_HANDLE, W)?,
        flags: u32_of(a, NFTA_SET_FLAGS, W)?,
        key_type: u32_of(a, NFTA_SET_KEY_TYPE, W)?,
        key_len: u32_of(a, NFTA_SET_KEY_LEN, W)?,
        data_type: u32_of(a, NFTA_SET_DATA_TYPE, W)?,
        data_len: u32_of(a, NFTA_SET_DATA_LEN, W)?,
        policy: u32_of(a, NFTA_SET_POLICY, W)?,
        desc_size,
        concat,
        id: u32_of(a, NFTA_SET_ID, W)?,
        userdata: bytes_of(a, NFTA_SET_USERDATA),
    })
}

fn value_of(a: &Attr<'_>) -> Result<Vec<u8>, DecodeError> {
    match expr::decode_data(a)? {
        Data::Value(v) => Ok(v),
        Data::Verdict(_) => Err(DecodeError::Invalid {
            what: "set element key",
            reason: "a verdict where a value belongs".into(),
        }),
    }
}

fn decode_elems(a: &[Attr<'_>]) -> Result<SetElems, DecodeError> {
    const W: &str = "set elements";
    let mut elements = Vec::new();
    if let Some(list) = attr::find(a, NFTA_SET_ELEM_LIST_ELEMENTS) {
        for e in list.nested(W)? {
            let ea = e.nested("set element")?;
            elements.push(SetElem {
                key: attr::find(&ea, NFTA_SET_ELEM_KEY)
                    .map(value_of)
                    .transpose()?,
                key_end: attr::find(&ea, NFTA_SET_ELEM_KEY_END)
                    .map(value_of)
                    .transpose()?,
                flags: u32_of(&ea, NFTA_SET_ELEM_FLAGS, W)?,
                data: attr::find(&ea, NFTA_SET_ELEM_DATA)
                    .map(expr::decode_data)
                    .transpose()?,
            });
        }
    }
    Ok(SetElems {
        table: s(a, NFTA_SET_ELEM_LIST_TABLE, W)?.unwrap_or_default(),
        set: s(a, NFTA_SET_ELEM_LIST_SET, W)?.unwrap_or_default(),
        elements,
    })
}

fn decode_gen(a: &[Attr<'_>]) -> Result<Gen, DecodeError> {
    const W: &str = "generation";
    Ok(Gen {
        id: attr::require(W, a, NFTA_GEN_ID)?.be32(W)?,
        proc_pid: u32_of(a, NFTA_GEN_PROC_PID, W)?,
        proc_name: s(a, NFTA_GEN_PROC_NAME, W)?,
    })
}
