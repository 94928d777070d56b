//! The few facts the fast path needs from the kernel's own type
//! information (`/sys/kernel/btf/vmlinux`, BTF): the ids of the kernel
//! functions it calls (kfuncs are called by BTF id), and the byte offsets
//! of the connection-tracking fields it reads, which differ between kernel
//! builds.
//!
//! BTF is a header, a type section and a string section. Types are
//! numbered from 1 in order; each is a 12-byte record (name, info, size or
//! type) followed by data whose length depends on its kind. Only what the
//! two lookups need is decoded; a malformed blob is an error, never a
//! panic. (A general BTF crate would bring an ELF stack for two lookups.)

use std::fmt;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// Why a BTF lookup failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("kernel type information is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel has no {0}")]
    Missing(String),
}

#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    info: u32,
    /// Size (structs, unions) or referenced type id.
    size_or_type: u32,
    /// Byte offset of the kind-specific data in the type section.
    data: usize,
}

impl Type {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
}

/// A field's place in its struct, in bytes; `size` is 0 for kinds whose
/// size is not recorded (pointers, arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// Decoded BTF: the type index over the original bytes.
pub struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// `index[id - 1]`; id 0 is `void`.
    index: Vec<Type>,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Btf({} types)", self.index.len())
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, BtfError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("record past the end of its section"))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_kernel() -> Result<Btf, BtfError> {
        let bytes = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|_| {
            BtfError::Missing("/sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)".into())
        })?;
        Btf::parse(&bytes)
    }

    /// Decodes a little-endian BTF blob.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        if bytes.len() < 24 || u16::from_le_bytes([bytes[0], bytes[1]]) != MAGIC {
            return Err(BtfError::Malformed("no BTF header"));
        }
        let hdr_len = u32_at(bytes, 4)? as usize;
        let type_off = u32_at(bytes, 8)? as usize;
        let type_len = u32_at(bytes, 12)? as usize;
        let str_off = u32_at(bytes, 16)? as usize;
        let str_len = u32_at(bytes, 20)? as usize;
        let section = |off: usize, len: usize| {
            hdr_len
                .checked_add(off)
                .and_then(|s| Some(s..s.checked_add(len)?))
                .and_then(|r| bytes.get(r))
                .ok_or(BtfError::Malformed("section past the end"))
        };
        let types = section(type_off, type_len)?.to_vec();
        let strings = section(str_off, str_len)?.to_vec();
        let mut index = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let t = Type {
                name_off: u32_at(&types, at)?,
                info: u32_at(&types, at + 4)?,
                size_or_type: u32_at(&types, at + 8)?,
                data: at + 12,
            };
            let extra = match t.kind() {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen(),
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen(),
                0..=19 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            at = t.data + extra;
            index.push(t);
        }
        Ok(Btf {
            types,
            strings,
            index,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn find(&self, kind: u32, name: &str) -> Option<(u32, Type)> {
        self.index
            .iter()
            .enumerate()
            .find(|(_, t)| t.kind() == kind && self.name(t.name_off) == name.as_bytes())
            .map(|(i, t)| (i as u32 + 1, *t))
    }

    fn get(&self, id: u32) -> Option<Type> {
        id.checked_sub(1)
            .and_then(|i| self.index.get(i as usize))
            .copied()
    }

    /// The BTF id of kernel function `name`.
    pub fn function_id(&self, name: &str) -> Result<u32, BtfError> {
        self.find(KIND_FUNC, name)
            .map(|(id, _)| id)
            .ok_or_else(|| BtfError::Missing(format!("kernel function {name}")))
    }

    /// The size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        self.find(KIND_STRUCT, name)
            .map(|(_, t)| t.size_or_type)
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
    }

    /// Where `path` (`["proto", "tcp", "state"]`) lies inside `struct
    /// name`, through nested structs and unions.
    pub fn field(&self, name: &str, path: &[&str]) -> Result<Field, BtfError> {
        let missing = || BtfError::Missing(format!("field {name}.{}", path.join(".")));
        let (_, mut current) = self.find(KIND_STRUCT, name).ok_or_else(missing)?;
        let mut bits = 0u32;
        for field in path {
            if !matches!(current.kind(), KIND_STRUCT | KIND_UNION) {
                return Err(missing());
            }
            let mut next = None;
            for m in 0..current.vlen() {
                let at = current.data + 12 * m;
                if self.name(u32_at(&self.types, at)?) == field.as_bytes() {
                    let raw = u32_at(&self.types, at + 8)?;
                    // With kind_flag set the top byte is a bitfield size.
                    let offset = if current.kind_flag() {
                        raw & 0xff_ffff
                    } else {
                        raw
                    };
                    next = Some((u32_at(&self.types, at + 4)?, offset));
                    break;
                }
            }
            let (type_id, offset) = next.ok_or_else(missing)?;
            bits = bits
                .checked_add(offset)
                .ok_or(BtfError::Malformed("field offset overflows"))?;
            current = self.resolve(type_id).ok_or_else(missing)?;
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Malformed("field is not byte-aligned"));
        }
        let size = match current.kind() {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => current.size_or_type,
            _ => 0,
        };
        Ok(Field {
            offset: bits / 8,
            size,
        })
    }

    /// Follows typedefs and qualifiers to the underlying type (bounded).
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..16 {
            let t = self.get(id)?;
            match t.kind() {
                // typedef, volatile, const, restrict, type_tag
                8..=11 | 18 => id = t.size_or_type,
                _ => return Some(t),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: int, struct inner { int a; int b; },
    /// union u { struct inner in; }, struct outer { int x; union u p; },
    /// and func f.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0in\0u\0x\0p\0outer\0f\0".to_vec();
        let off = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map(|p| p as u32 + 1)
                .expect("string")
        };
        let mut types = Vec::new();
        let mut rec = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int (4 bytes)
        rec(&[off("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner, 8 bytes, members a@0 b@32 bits
        rec(&[off("inner"), KIND_STRUCT << 24 | 2, 8]);
        rec(&[off("a"), 1, 0, off("b"), 1, 32]);
        // 3: union u { inner in; }
        rec(&[off("u"), KIND_UNION << 24 | 1, 8]);
        rec(&[off("in"), 2, 0]);
        // 4: struct outer { int x @0; union u p @64 bits }
        rec(&[off("outer"), KIND_STRUCT << 24 | 2, 16]);
        rec(&[off("x"), 1, 0, off("p"), 3, 64]);
        // 5: func f
        rec(&[off("f"), KIND_FUNC << 24, 0]);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_functions_sizes_and_nested_field_offsets() {
        let btf = Btf::parse(&blob()).expect("parse");
        assert_eq!(btf.function_id("f"), Ok(5));
        assert_eq!(btf.struct_size("outer"), Ok(16));
        let at = |path: &[&str]| btf.field("outer", path);
        assert_eq!(at(&["x"]), Ok(Field { offset: 0, size: 4 }));
        assert_eq!(
            at(&["p", "in", "b"]),
            Ok(Field {
                offset: 12,
                size: 4
            })
        );
        assert_eq!(at(&["p"]), Ok(Field { offset: 8, size: 8 }));
        assert!(matches!(at(&["p", "nope"]), Err(BtfError::Missing(_))));
        assert!(matches!(btf.function_id("g"), Err(BtfError::Missing(_))));
    }

    #[test]
    fn truncated_or_foreign_blobs_are_errors_not_panics() {
        let whole = blob();
        for len in 0..whole.len() {
            let _ = Btf::parse(&whole[..len]);
        }
        assert!(Btf::parse(b"not btf at all, long enough").is_err());
    }

    #[test]
    fn the_running_kernel_has_what_the_fast_path_needs() {
        let Ok(btf) = Btf::from_kernel() else {
            eprintln!("skipped: this kernel has no BTF");
            return;
        };
        assert!(btf.function_id("bpf_skb_ct_lookup").is_ok());
        let status = btf.field("nf_conn", &["status"]).expect("status");
        let state = btf
            .field("nf_conn", &["proto", "tcp", "state"])
            .expect("state");
        assert_eq!((status.size, state.size), (8, 1));
        assert!(state.offset > status.offset, "{status:?} {state:?}");
    }
}
