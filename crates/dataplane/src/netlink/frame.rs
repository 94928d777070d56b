//! The framing of netlink replies, read straight from the receive buffer:
//! split a datagram into messages, and read the two control messages the
//! pipelined writer cares about (NLMSG_ERROR, which is also the ACK, and
//! NLMSG_DONE) without decoding the route/link payloads of everything else.
//!
//! Layout (include/uapi/linux/netlink.h), all integers in host order:
//!
//! ```text
//! nlmsghdr:  u32 len | u16 type | u16 flags | u32 seq | u32 port
//! NLMSG_ERROR payload: i32 error | original nlmsghdr [+ its payload unless
//!            NLM_F_CAPPED] | TLVs when NLM_F_ACK_TLVS (extended ack)
//! NLMSG_DONE payload:  i32 error (may be absent on old kernels)
//! ```
//!
//! Hard cases: a truncated or lying length ends the walk with an error
//! instead of reading past the buffer; the extended-ack message is a
//! NUL-terminated string inside a TLV whose length may include padding.

use nix::errno::Errno;

pub(crate) const HEADER_LEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// An error the kernel returned for one request: the errno and, when the
/// socket asked for extended acks, the kernel's own explanation
/// ("Nexthop device is not up").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", errno.desc(), message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
pub struct KernelError {
    pub errno: Errno,
    pub message: Option<String>,
}

/// One message of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

/// A datagram whose framing does not add up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink message at byte {offset}: {reason}")]
pub struct FrameError {
    pub offset: usize,
    pub reason: &'static str,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a received datagram into its messages.
pub(crate) fn frames(buf: &[u8]) -> Frames<'_> {
    Frames { buf, offset: 0 }
}

pub(crate) struct Frames<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.offset..)?;
        if rest.len() < HEADER_LEN {
            return None;
        }
        let at = self.offset;
        let header = (
            u32_at(rest, 0).map(|l| l as usize),
            u16_at(rest, 4),
            u16_at(rest, 6),
            u32_at(rest, 8),
        );
        let (Some(len), Some(kind), Some(flags), Some(seq)) = header else {
            self.offset = self.buf.len();
            return Some(Err(FrameError {
                offset: at,
                reason: "short header",
            }));
        };
        if len < HEADER_LEN || len > rest.len() {
            // Nothing after a bad length can be trusted.
            self.offset = self.buf.len();
            return Some(Err(FrameError {
                offset: at,
                reason: "length outside the datagram",
            }));
        }
        self.offset += align4(len);
        Some(Ok(Frame {
            kind,
            flags,
            seq,
            bytes: &rest[..len],
        }))
    }
}

/// For an NLMSG_ERROR message: `Ok(())` for an ACK, the error otherwise.
/// `None` for any other message type.
pub(crate) fn error_reply(frame: &Frame<'_>) -> Option<Result<(), KernelError>> {
    if frame.kind != NLMSG_ERROR {
        return None;
    }
    let code = i32_at(frame.bytes, HEADER_LEN).unwrap_or(0);
    if code == 0 {
        return Some(Ok(()));
    }
    Some(Err(KernelError {
        errno: Errno::from_raw(code.saturating_abs()),
        message: ext_ack_message(frame),
    }))
}

/// For an NLMSG_DONE message: the error code it carries (0 = complete).
pub(crate) fn done_code(frame: &Frame<'_>) -> Option<i32> {
    (frame.kind == NLMSG_DONE).then(|| i32_at(frame.bytes, HEADER_LEN).unwrap_or(0))
}

fn ext_ack_message(frame: &Frame<'_>) -> Option<String> {
    if frame.flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let original = HEADER_LEN + 4;
    let original_len = if frame.flags & NLM_F_CAPPED != 0 {
        HEADER_LEN
    } else {
        align4(u32_at(frame.bytes, original)? as usize)
    };
    let mut at = original + original_len;
    while at + 4 <= frame.bytes.len() {
        let len = u16_at(frame.bytes, at)? as usize;
        let kind = u16_at(frame.bytes, at + 2)? & NLA_TYPE_MASK;
        if len < 4 || at + len > frame.bytes.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &frame.bytes[at + 4..at + len];
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += align4(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, kind: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&4242u32.to_ne_bytes());
        b
    }

    /// A capped error reply as the kernel builds it in netlink_ack(): the
    /// error, the request's header, then an NLMSGERR_ATTR_MSG TLV.
    fn capped_error(seq: u32, errno: i32, msg: &str) -> Vec<u8> {
        let mut tlv = Vec::new();
        let text_len = msg.len() + 1;
        tlv.extend_from_slice(&((4 + text_len) as u16).to_ne_bytes());
        tlv.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        tlv.extend_from_slice(msg.as_bytes());
        tlv.push(0);
        while tlv.len() % 4 != 0 {
            tlv.push(0);
        }
        let len = (HEADER_LEN + 4 + HEADER_LEN + tlv.len()) as u32;
        let mut b = header(len, NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, seq);
        b.extend_from_slice(&(-errno).to_ne_bytes());
        b.extend_from_slice(&header(60, 24, 0x405, seq));
        b.extend_from_slice(&tlv);
        b
    }

    #[test]
    fn splits_a_datagram_and_reads_acks_and_errors() {
        let mut ack = header(36, NLMSG_ERROR, NLM_F_CAPPED, 7);
        ack.extend_from_slice(&0i32.to_ne_bytes());
        ack.extend_from_slice(&header(60, 24, 0x405, 7));
        let mut buf = capped_error(6, 19, "Nexthop device is not up");
        buf.extend_from_slice(&ack);

        let got: Vec<_> = frames(&buf).collect::<Result<_, _>>().expect("well formed");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[1].seq), (6, 7));
        assert_eq!(
            error_reply(&got[0]),
            Some(Err(KernelError {
                errno: Errno::ENODEV,
                message: Some("Nexthop device is not up".to_string()),
            }))
        );
        assert_eq!(error_reply(&got[1]), Some(Ok(())));
        assert_eq!(
            error_reply(&got[0])
                .and_then(Result::err)
                .map(|e| e.to_string()),
            Some("No such device (Nexthop device is not up)".to_string())
        );
    }

    #[test]
    fn uncapped_errors_skip_the_echoed_request() {
        // Without NETLINK_CAP_ACK the whole request (here 28 bytes) is echoed.
        let mut b = header(0, NLMSG_ERROR, NLM_F_ACK_TLVS, 9);
        b.extend_from_slice(&(-17i32).to_ne_bytes());
        b.extend_from_slice(&header(28, 24, 0x405, 9));
        b.extend_from_slice(&[0xaa; 12]);
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        b.extend_from_slice(b"bad\0");
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        let frame = frames(&b).next().expect("one").expect("well formed");
        let err = error_reply(&frame).expect("error").expect_err("nack");
        assert_eq!(err.errno, Errno::EEXIST);
        assert_eq!(err.message.as_deref(), Some("bad"));
    }

    #[test]
    fn done_carries_a_code_and_other_types_are_not_replies() {
        let mut done = header(20, NLMSG_DONE, 2, 3);
        done.extend_from_slice(&(-4i32).to_ne_bytes());
        let route = header(16, 24, 2, 3);
        let mut buf = route.clone();
        buf.extend_from_slice(&done);
        let got: Vec<_> = frames(&buf).collect::<Result<_, _>>().expect("well formed");
        assert_eq!(error_reply(&got[0]), None);
        assert_eq!(done_code(&got[0]), None);
        assert_eq!(done_code(&got[1]), Some(-4));
        // An old-style empty DONE means success.
        let empty = header(16, NLMSG_DONE, 2, 3);
        let frame = frames(&empty).next().expect("one").expect("ok");
        assert_eq!(done_code(&frame), Some(0));
    }

    #[test]
    fn lying_lengths_stop_the_walk() {
        let mut buf = header(400, 24, 0, 1);
        buf.extend_from_slice(&[0; 8]);
        let mut walk = frames(&buf);
        assert!(walk.next().expect("one item").is_err());
        assert!(walk.next().is_none());
        let tiny = header(4, 24, 0, 1);
        assert!(frames(&tiny).next().expect("one item").is_err());
        // Trailing bytes shorter than a header are ignored.
        assert!(frames(&[0u8; 7]).next().is_none());
    }
}
