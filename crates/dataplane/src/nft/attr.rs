//! Netlink framing shared by every nf_tables message (`linux/netlink.h`):
//! the 16-byte `nlmsghdr`, the 4-byte `nfgenmsg` (`nfnetlink.h`) and the
//! type-length-value attributes inside, padded to 4 bytes, nested by
//! containing attributes (the `NLA_F_NESTED` flag is ignored on read and,
//! like the kernel's own nf_tables dumps, not set on write).
//!
//! Hard cases: nf_tables integers are big-endian while the netlink header
//! is host order; an attribute's length field is 16 bits, so one nest
//! (a rule's expressions, a batch of set elements) cannot exceed 64 KiB —
//! [`AttrWriter::nest_end`] reports that instead of writing a wrapped
//! length; the reader never trusts a length (truncated, short or
//! oversized attributes are decode errors, not panics).

use super::sys::NLA_TYPE_MASK;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("attribute {attr} of {what} has length {len}, expected {expected}")]
    BadLength {
        what: &'static str,
        attr: u16,
        len: usize,
        expected: usize,
    },
    #[error("{what} lacks attribute {attr}")]
    Missing { what: &'static str, attr: u16 },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {attr} is {len} bytes, more than a netlink attribute holds (65535)")]
    TooLong { attr: u16, len: usize },
}

const ALIGN: usize = 4;

pub(crate) fn align(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

/// Appends attributes to a buffer.
#[derive(Debug)]
pub(crate) struct AttrWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// The first attribute too long for its 16-bit length, if any.
    overflow: Option<EncodeError>,
}

/// A nest opened by [`AttrWriter::nest_start`].
#[must_use]
pub(crate) struct Nest {
    at: usize,
    ty: u16,
}

impl<'a> AttrWriter<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> AttrWriter<'a> {
        AttrWriter {
            buf,
            overflow: None,
        }
    }

    pub(crate) fn bytes(&mut self, ty: u16, value: &[u8]) {
        let len = 4 + value.len();
        let Ok(len16) = u16::try_from(len) else {
            self.overflow
                .get_or_insert(EncodeError::TooLong { attr: ty, len });
            return;
        };
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    pub(crate) fn u8(&mut self, ty: u16, v: u8) {
        self.bytes(ty, &[v]);
    }

    pub(crate) fn be32(&mut self, ty: u16, v: u32) {
        self.bytes(ty, &v.to_be_bytes());
    }

    pub(crate) fn be64(&mut self, ty: u16, v: u64) {
        self.bytes(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string, as the kernel's `nla_put_string` writes.
    pub(crate) fn string(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.bytes(ty, &v);
    }

    /// Bytes copied as they are (already-encoded attributes).
    pub(crate) fn raw(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }

    pub(crate) fn nest_start(&mut self, ty: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        Nest { at, ty }
    }

    pub(crate) fn nest_end(&mut self, nest: Nest) {
        let len = self.buf.len() - nest.at;
        match u16::try_from(len) {
            Ok(len16) => {
                self.buf[nest.at..nest.at + 2].copy_from_slice(&len16.to_ne_bytes());
                // Without NLA_F_NESTED, as the kernel's nf_tables dumps
                // and libnftnl write nests; nf_tables accepts both.
                self.buf[nest.at + 2..nest.at + 4].copy_from_slice(&nest.ty.to_ne_bytes());
                self.pad();
            }
            Err(_) => {
                self.overflow
                    .get_or_insert(EncodeError::TooLong { attr: nest.ty, len });
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), EncodeError> {
        match self.overflow {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// One attribute: its type (flags masked off) and value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub ty: u16,
    pub value: &'a [u8],
}

/// Splits a buffer into attributes.
pub(crate) fn parse<'a>(
    what: &'static str,
    mut buf: &'a [u8],
) -> Result<Vec<Attr<'a>>, DecodeError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 4 {
            return Err(DecodeError::Truncated {
                what,
                need: 4,
                have: buf.len(),
            });
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return Err(DecodeError::Truncated {
                what,
                need: len.max(4),
                have: buf.len(),
            });
        }
        out.push(Attr {
            ty,
            value: &buf[4..len],
        });
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

impl<'a> Attr<'a> {
    pub(crate) fn be32(&self, what: &'static str) -> Result<u32, DecodeError> {
        let b: [u8; 4] = self.value.try_into().map_err(|_| self.bad_len(what, 4))?;
        Ok(u32::from_be_bytes(b))
    }

    pub(crate) fn be64(&self, what: &'static str) -> Result<u64, DecodeError> {
        let b: [u8; 8] = self.value.try_into().map_err(|_| self.bad_len(what, 8))?;
        Ok(u64::from_be_bytes(b))
    }

    pub(crate) fn u8(&self, what: &'static str) -> Result<u8, DecodeError> {
        match self.value {
            [b] => Ok(*b),
            _ => Err(self.bad_len(what, 1)),
        }
    }

    /// A string, with the trailing NUL (if any) removed.
    pub(crate) fn string(&self, what: &'static str) -> Result<String, DecodeError> {
        let raw = match self.value.iter().position(|&b| b == 0) {
            Some(end) => &self.value[..end],
            None => self.value,
        };
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Invalid {
            what,
            reason: format!("attribute {} is not UTF-8", self.ty),
        })
    }

    pub(crate) fn nested(&self, what: &'static str) -> Result<Vec<Attr<'a>>, DecodeError> {
        parse(what, self.value)
    }

    fn bad_len(&self, what: &'static str, expected: usize) -> DecodeError {
        DecodeError::BadLength {
            what,
            attr: self.ty,
            len: self.value.len(),
            expected,
        }
    }
}

/// Finds the first attribute of a type.
pub(crate) fn find<'a, 'b>(attrs: &'b [Attr<'a>], ty: u16) -> Option<&'b Attr<'a>> {
    attrs.iter().find(|a| a.ty == ty)
}

/// Finds a required attribute.
pub(crate) fn require<'a, 'b>(
    what: &'static str,
    attrs: &'b [Attr<'a>],
    ty: u16,
) -> Result<&'b Attr<'a>, DecodeError> {
    find(attrs, ty).ok_or(DecodeError::Missing { what, attr: ty })
}

/// Reads a native-endian u16 / u32 at `at` (netlink header fields).
pub(crate) fn ne_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn ne_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip_with_padding() {
        let mut buf = Vec::new();
        let mut w = AttrWriter::new(&mut buf);
        w.string(1, "abc");
        let n = w.nest_start(2);
        w.be32(1, 7);
        w.u8(2, 9);
        w.nest_end(n);
        w.finish().expect("small");
        // "abc\0" fits in 4 bytes: 8; nest header 4 + be32 8 + u8 padded 8.
        assert_eq!(buf.len(), 8 + 4 + 8 + 8);
        let attrs = parse("t", &buf).expect("parses");
        assert_eq!(attrs[0].string("t").expect("str"), "abc");
        let inner = attrs[1].nested("t").expect("nest");
        assert_eq!(inner[0].be32("t").expect("u32"), 7);
        assert_eq!(inner[1].u8("t").expect("u8"), 9);
    }

    #[test]
    fn oversized_nest_is_an_error_not_a_wrapped_length() {
        let mut buf = Vec::new();
        let mut w = AttrWriter::new(&mut buf);
        let n = w.nest_start(3);
        for _ in 0..20_000 {
            w.be32(1, 0);
        }
        w.nest_end(n);
        assert!(matches!(
            w.finish(),
            Err(EncodeError::TooLong { attr: 3, .. })
        ));
    }

    #[test]
    fn short_and_overlong_lengths_are_errors() {
        assert!(parse("t", &[3, 0, 1, 0]).is_err());
        assert!(parse("t", &[9, 0, 1, 0, 0]).is_err());
        assert!(parse("t", &[1, 0]).is_err());
    }
}
