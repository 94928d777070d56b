//! The transport: one `NETLINK_NETFILTER` socket in the network namespace
//! of the thread that opened it, speaking nf_tables (`nfnetlink.h`,
//! `nf_tables.h`).
//!
//! A change is one batch (`NFNL_MSG_BATCH_BEGIN` .. `NFNL_MSG_BATCH_END`)
//! sent in one `send` call: the kernel runs the whole batch as one
//! transaction, all or nothing, and only a batch that arrives in one
//! datagram is one transaction — so the socket's send buffer is raised
//! (`SO_SNDBUFFORCE`) to fit the batch instead of splitting it.
//!
//! Replies: the kernel processes the batch synchronously inside `send`,
//! queues an error for every failing message (`NLMSG_ERROR` carrying that
//! message's sequence number; we number messages consecutively so the
//! number is the message's index) and an ACK only where `NLM_F_ACK` asked
//! for one. We ask only on the last message, so a committed batch costs
//! one ACK whatever its size; a commit-time failure is reported against
//! the batch-begin message. Replies are then drained without blocking:
//! by the time `send` returns they are all queued.
//!
//! Hard cases: a receive-buffer overflow (`ENOBUFS`) loses replies, so
//! whether the batch committed is unknown — reported as
//! [`TransportError::RepliesLost`] for the caller to resync, never
//! guessed; `NETLINK_CAP_ACK` keeps error replies small (no copy of the
//! request) and `NETLINK_EXT_ACK` adds the kernel's reason; a dump that
//! raced a ruleset change comes back with `NLM_F_DUMP_INTR` and is
//! reported as [`TransportError::DumpInterrupted`] for the caller to retry;
//! stale replies with foreign sequence numbers are ignored; a reply that
//! never comes is a timeout error after 30 s, never a hang.

use std::io;

use netlink_sys::Socket;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use tracing::{debug, trace};

use super::attr::{DecodeError, EncodeError};
use super::msg::{self, Body, Family, Frame, NftMessage, NlError};
use super::sys::*;

/// Receive buffer per `recv`; nf_tables dump datagrams are far smaller.
const RECV_BUF: usize = 1 << 20;
/// Socket receive buffer for error replies of large failing batches.
const SO_RCVBUF_BYTES: usize = 8 << 20;
/// A dump that stalls this long is an error, not a hang.
const RECV_TIMEOUT_SECS: i64 = 30;

/// Why talking to the kernel failed (as opposed to the kernel refusing a
/// change, which is a [`MessageError`]).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("netlink {op}: {source}")]
    Io { op: &'static str, source: io::Error },
    #[error("cannot encode an nf_tables message: {0}")]
    Encode(#[from] EncodeError),
    #[error("cannot decode the kernel's reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("replies to a batch were lost (receive buffer overflow); its outcome is unknown")]
    RepliesLost,
    #[error("the kernel sent no reply to a batch of {messages} messages")]
    NoReply { messages: usize },
    #[error("a {datagram} byte reply did not fit the {RECV_BUF} byte receive buffer")]
    Truncated { datagram: usize },
    #[error("{request} failed: {}{}", io::Error::from_raw_os_error(*errno), message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        request: &'static str,
        errno: i32,
        message: Option<String>,
    },
    #[error("a dump was interrupted by a concurrent ruleset change")]
    DumpInterrupted,
}

impl TransportError {
    /// The errno of a refused request, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            TransportError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// The kernel's refusal of one message of a batch (or, with `index`
/// `None`, of the batch as a whole, e.g. at commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    pub index: Option<usize>,
    pub errno: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.errno))?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Empty when the batch committed.
    pub errors: Vec<MessageError>,
    /// Bytes sent (the whole batch, one datagram).
    pub bytes: usize,
}

impl BatchOutcome {
    pub fn committed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// An nf_tables netlink socket.
pub struct NftSocket {
    sock: Socket,
    next_seq: u32,
    sndbuf: usize,
    rx: Vec<u8>,
}

impl std::fmt::Debug for NftSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSocket")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> TransportError {
    move |source| TransportError::Io { op, source }
}

impl NftSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<NftSocket, TransportError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(io_err("socket"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        sock.set_ext_ack(true).map_err(io_err("NETLINK_EXT_ACK"))?;
        sock.set_cap_ack(true).map_err(io_err("NETLINK_CAP_ACK"))?;
        if setsockopt(&sock, sockopt::RcvBufForce, &SO_RCVBUF_BYTES).is_err() {
            // Without CAP_NET_ADMIN: as large as rmem_max allows.
            setsockopt(&sock, sockopt::RcvBuf, &SO_RCVBUF_BYTES)
                .map_err(|e| io_err("SO_RCVBUF")(e.into()))?;
        }
        setsockopt(
            &sock,
            sockopt::ReceiveTimeout,
            &TimeVal::new(RECV_TIMEOUT_SECS, 0),
        )
        .map_err(|e| io_err("SO_RCVTIMEO")(e.into()))?;
        Ok(NftSocket {
            sock,
            next_seq: 1,
            sndbuf: 0,
            rx: Vec::with_capacity(RECV_BUF),
        })
    }

    fn seqs(&mut self, n: usize) -> u32 {
        let first = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(n as u32);
        first
    }

    /// Sends `messages` as one transaction. Their `seq` is replaced;
    /// `NLM_F_REQUEST` is added to their flags, `NLM_F_ACK` to the last.
    pub fn transact(&mut self, messages: &[NftMessage]) -> Result<BatchOutcome, TransportError> {
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let begin = self.seqs(messages.len() + 2);
        let last = begin.wrapping_add(messages.len() as u32);
        let mut buf = Vec::new();
        msg::encode_batch_marker(&mut buf, true, begin);
        for (i, m) in messages.iter().enumerate() {
            let mut flags = m.flags | NLM_F_REQUEST;
            if i + 1 == messages.len() {
                flags |= NLM_F_ACK;
            }
            m.encode_as(&mut buf, flags, begin.wrapping_add(1 + i as u32))?;
        }
        msg::encode_batch_marker(&mut buf, false, last.wrapping_add(1));
        self.fit_send_buffer(buf.len())?;
        debug!(
            messages = messages.len(),
            bytes = buf.len(),
            "sending nf_tables batch"
        );
        trace!(bytes = ?buf, "batch");
        self.sock.send(&buf, 0).map_err(io_err("send"))?;
        let errors = self.batch_replies(begin, last, messages.len())?;
        Ok(BatchOutcome {
            errors,
            bytes: buf.len(),
        })
    }

    fn fit_send_buffer(&mut self, len: usize) -> Result<(), TransportError> {
        // The kernel refuses a datagram longer than the send buffer
        // (minus a little); it doubles the value we set.
        if len + 4096 <= self.sndbuf {
            return Ok(());
        }
        let want = len + 64 * 1024;
        if setsockopt(&self.sock, sockopt::SndBufForce, &want).is_err() {
            setsockopt(&self.sock, sockopt::SndBuf, &want)
                .map_err(|e| io_err("SO_SNDBUF")(e.into()))?;
        }
        self.sndbuf = want;
        Ok(())
    }

    /// Reads the replies to a batch whose begin marker had `begin` and
    /// whose last message had `last`.
    fn batch_replies(
        &mut self,
        begin: u32,
        last: u32,
        messages: usize,
    ) -> Result<Vec<MessageError>, TransportError> {
        let mut errors = Vec::new();
        let mut lost = false;
        loop {
            match self.recv(libc::MSG_DONTWAIT) {
                Ok(()) => {}
                Err(TransportError::Io { source, .. })
                    if source.kind() == io::ErrorKind::WouldBlock =>
                {
                    break;
                }
                Err(TransportError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    lost = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut done = false;
            for frame in msg::decode_frames(&self.rx) {
                let Frame::Error(e) = frame? else { continue };
                let offset = e.seq.wrapping_sub(begin);
                if offset as usize > messages {
                    continue; // not ours: a stale reply
                }
                if e.errno != 0 {
                    errors.push(MessageError {
                        index: (offset > 0).then(|| offset as usize - 1),
                        errno: e.errno,
                        message: e.message,
                    });
                }
                if e.seq == last {
                    done = true;
                }
            }
            if done {
                return Ok(errors);
            }
        }
        if lost {
            return Err(TransportError::RepliesLost);
        }
        if errors.is_empty() {
            return Err(TransportError::NoReply { messages });
        }
        Ok(errors)
    }

    fn recv(&mut self, flags: libc::c_int) -> Result<(), TransportError> {
        self.rx.clear();
        let n = self
            .sock
            .recv(&mut self.rx, flags | libc::MSG_TRUNC)
            .map_err(io_err("recv"))?;
        if n > RECV_BUF {
            return Err(TransportError::Truncated { datagram: n });
        }
        Ok(())
    }

    /// Sends one request (a GET, as a dump if `dump`) and returns the
    /// objects the kernel answers with.
    pub fn request(
        &mut self,
        family: Family,
        body: Body,
        dump: bool,
    ) -> Result<Vec<NftMessage>, TransportError> {
        let request = body.kind();
        let seq = self.seqs(1);
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let m = NftMessage {
            family,
            flags,
            seq,
            body,
            ..Default::default()
        };
        let bytes = m.to_bytes()?;
        self.sock.send(&bytes, 0).map_err(io_err("send"))?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv(0)?;
            for frame in msg::decode_frames(&self.rx) {
                match frame? {
                    Frame::Nft(m) if m.seq == seq => {
                        interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                        out.push(m);
                    }
                    Frame::Done {
                        seq: s,
                        flags,
                        errno,
                    } if s == seq => {
                        if errno != 0 {
                            return Err(TransportError::Kernel {
                                request,
                                errno,
                                message: None,
                            });
                        }
                        if interrupted || flags & NLM_F_DUMP_INTR != 0 {
                            return Err(TransportError::DumpInterrupted);
                        }
                        return Ok(out);
                    }
                    Frame::Error(NlError {
                        seq: s,
                        errno,
                        message,
                        ..
                    }) if s == seq => {
                        if errno != 0 {
                            return Err(TransportError::Kernel {
                                request,
                                errno,
                                message,
                            });
                        }
                        return Ok(out);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The ruleset generation id (`NFT_MSG_GETGEN`); every committed
    /// transaction in the namespace increments it.
    pub fn generation(&mut self) -> Result<u32, TransportError> {
        let replies = self.request(Family::Unspec, Body::GetGen, false)?;
        replies
            .into_iter()
            .find_map(|m| match m.body {
                Body::NewGen(g) => Some(g.id),
                _ => None,
            })
            .ok_or(TransportError::Kernel {
                request: "GETGEN",
                errno: libc::ENODATA,
                message: Some("no NEWGEN in the reply".into()),
            })
    }
}
