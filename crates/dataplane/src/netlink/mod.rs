//! rtnetlink I/O shared by the reconcilers: one socket per reconciler, in
//! the network namespace of the thread that opened it, with
//!
//! * **pipelined writes** ([`RtSocket::pipeline`]): many NEWROUTE/DELROUTE
//!   (or any rtnetlink change) messages serialised into one datagram of up
//!   to [`DEFAULT_BATCH`] messages, none asking for an acknowledgement but
//!   the last, which is the synchronisation point: the kernel handles a
//!   datagram's messages in order inside `sendmsg`, reports every failure
//!   with the failed message's sequence number whether or not it asked for
//!   an ACK, so once the last message's ACK (or error) is read every
//!   message before it without an error reply has succeeded. Measured on
//!   this project's machine this installs 100,000 routes several times
//!   faster than `ip -batch` (see `benches/routes.rs`);
//! * **dumps** ([`RtSocket::dump`]), retried when the kernel flags them as
//!   interrupted by a concurrent change (NLM_F_DUMP_INTR);
//! * **multicast monitoring** ([`Monitor`]).
//!
//! Hard cases: errors are mapped back to requests by sequence number (the
//! window of the current batch; replies to older, abandoned batches are
//! ignored); the socket asks for capped, extended ACKs so an error reply
//! is small and carries the kernel's explanation; if the receive buffer
//! still overflows (ENOBUFS) the replies of that batch are unknowable and
//! are reported as [`Outcome::Lost`] — the caller must re-read the kernel
//! state, which every reconciler's resync does anyway; every receive is
//! bounded by a timeout (`NetlinkTimeoutSecs`, 10 s by default).

mod frame;
mod monitor;

use std::io;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, setsockopt, sockopt};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, Socket, SocketAddr, TokioSocket};

pub use frame::{FrameError, KernelError};
pub use monitor::Monitor;

/// Messages per pipelined datagram: large enough that the per-datagram
/// cost vanishes, small enough that the error replies of a fully failing
/// batch fit the receive buffer.
pub const DEFAULT_BATCH: usize = 1000;
/// Bound of one receive (Felix's `NetlinkTimeoutSecs`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A datagram may not exceed the socket's send buffer (212,992 bytes by
/// default, minus overhead); stay well below it.
const MAX_BATCH_BYTES: usize = 128 * 1024;
/// Kernel replies (dump parts included) are far smaller than this.
const RECV_BUFFER: usize = 256 * 1024;
/// Receive buffer asked for (root may exceed `rmem_max`); each error
/// reply costs about a kilobyte of buffer accounting.
const SOCKET_RECV_BUFFER: usize = 8 << 20;
/// Attempts at a dump the kernel keeps flagging as interrupted.
const DUMP_ATTEMPTS: usize = 5;

/// Which messages of a pipelined batch ask for an acknowledgement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckMode {
    /// Only the last message of each datagram (the fast path).
    #[default]
    ErrorsOnly,
    /// Every message: the same results, one reply per message; slower,
    /// kept for diagnosis and as the benchmark baseline.
    EveryMessage,
}

/// What became of one request of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(KernelError),
    /// The reply may have been dropped (receive buffer overrun): the
    /// request may or may not have taken effect.
    Lost,
}

/// One change to send: the message and its `NLM_F_*` flags beyond
/// NLM_F_REQUEST (e.g. NLM_F_CREATE | NLM_F_REPLACE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub message: RouteNetlinkMessage,
    pub flags: u16,
}

/// A failed netlink exchange.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("{op}: netlink socket error: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: no reply from the kernel within {timeout:?}")]
    Timeout { op: String, timeout: Duration },
    #[error("{op}: replies were lost to a receive buffer overrun; kernel state must be re-read")]
    Overrun { op: String },
    #[error("{op}: {source}")]
    Kernel {
        op: String,
        #[source]
        source: KernelError,
    },
    #[error("{op}: {source}")]
    Frame {
        op: String,
        #[source]
        source: FrameError,
    },
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { source, .. } => Some(source.errno),
            _ => None,
        }
    }
}

/// Raises a netlink socket's receive buffer, by force when privileged.
pub(crate) fn enlarge_receive_buffer(socket: &Socket) {
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_RECV_BUFFER).is_err()
        && let Err(e) = socket.set_rx_buf_sz(SOCKET_RECV_BUFFER)
    {
        tracing::debug!(error = %e, "netlink receive buffer left at its default");
    }
}

/// What a receive produced.
enum Received {
    Data,
    Overrun,
}

/// A request/response rtnetlink socket.
pub struct RtSocket {
    socket: TokioSocket,
    seq: u32,
    /// Receive buffer.
    input: Vec<u8>,
    /// Serialised batch.
    output: Vec<u8>,
    timeout: Duration,
    batch: usize,
}

impl RtSocket {
    /// Opens a socket in the calling thread's network namespace; must run
    /// inside a tokio runtime with I/O enabled.
    pub fn open() -> Result<RtSocket, NetlinkError> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        let inner = socket.socket_mut();
        inner.bind_auto().map_err(NetlinkError::Open)?;
        // Error replies without the echoed request, with the kernel's text.
        inner.set_cap_ack(true).map_err(NetlinkError::Open)?;
        inner.set_ext_ack(true).map_err(NetlinkError::Open)?;
        enlarge_receive_buffer(inner);
        Ok(RtSocket {
            socket,
            seq: 0,
            input: Vec::with_capacity(RECV_BUFFER),
            output: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            batch: DEFAULT_BATCH,
        })
    }

    /// Bound of each receive.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Messages per datagram (at least 1).
    pub fn set_batch(&mut self, batch: usize) {
        self.batch = batch.max(1);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    async fn receive(&mut self, op: &str) -> Result<Received, NetlinkError> {
        self.input.clear();
        match tokio::time::timeout(self.timeout, self.socket.recv(&mut self.input)).await {
            Err(_) => Err(NetlinkError::Timeout {
                op: op.to_string(),
                timeout: self.timeout,
            }),
            Ok(Err(e)) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => Ok(Received::Overrun),
            Ok(Err(source)) => Err(NetlinkError::Io {
                op: op.to_string(),
                source,
            }),
            Ok(Ok(())) => Ok(Received::Data),
        }
    }

    /// Reads what is already queued without waiting; `false` once empty.
    fn receive_queued(&mut self) -> bool {
        self.input.clear();
        self.socket
            .socket_ref()
            .recv(&mut self.input, MsgFlags::MSG_DONTWAIT.bits())
            .is_ok()
    }

    /// Serialises one message at the end of the output buffer.
    fn push(&mut self, message: RouteNetlinkMessage, flags: u16, seq: u32) {
        let mut msg = NetlinkMessage::from(message);
        msg.header.flags = NLM_F_REQUEST | flags;
        msg.header.sequence_number = seq;
        msg.finalize();
        let start = self.output.len();
        self.output.resize(start + msg.buffer_len(), 0);
        msg.serialize(&mut self.output[start..]);
    }

    async fn send(&mut self, op: &str) -> Result<(), NetlinkError> {
        let kernel = SocketAddr::new(0, 0);
        self.socket
            .send_to(&self.output, &kernel)
            .await
            .map(|_| ())
            .map_err(|source| NetlinkError::Io {
                op: op.to_string(),
                source,
            })
    }

    /// Sends `requests` pipelined and returns one outcome per request, in
    /// order. An `Err` means the exchange itself failed (socket error,
    /// timeout); the kernel's refusals are [`Outcome::Failed`].
    pub async fn pipeline(
        &mut self,
        op: &str,
        requests: Vec<Request>,
        ack: AckMode,
    ) -> Result<Vec<Outcome>, NetlinkError> {
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut pending = requests.into_iter().peekable();
        while pending.peek().is_some() {
            self.output.clear();
            let first = self.seq.wrapping_add(1);
            let mut count = 0usize;
            let mut last_start = 0;
            while let Some(request) = pending.next_if(|_| count < self.batch) {
                let seq = self.next_seq();
                let flags = match ack {
                    AckMode::EveryMessage => request.flags | NLM_F_ACK,
                    AckMode::ErrorsOnly => request.flags,
                };
                last_start = self.output.len();
                self.push(request.message, flags, seq);
                count += 1;
                if self.output.len() >= MAX_BATCH_BYTES {
                    break;
                }
            }
            // The last message of the datagram is the synchronisation point.
            let flags_at = last_start + 6;
            let flags = u16::from_ne_bytes([self.output[flags_at], self.output[flags_at + 1]]);
            self.output[flags_at..flags_at + 2].copy_from_slice(&(flags | NLM_F_ACK).to_ne_bytes());
            self.send(op).await?;
            let batch = self.collect(op, first, count).await?;
            outcomes.extend(batch);
        }
        Ok(outcomes)
    }

    /// Reads the replies of one datagram of `count` messages from `first`.
    async fn collect(
        &mut self,
        op: &str,
        first: u32,
        count: usize,
    ) -> Result<Vec<Outcome>, NetlinkError> {
        let mut replies: Vec<Option<Outcome>> = vec![None; count];
        let mut finished = false;
        let mut overrun = false;
        while !finished {
            match self.receive(op).await? {
                Received::Data => {}
                Received::Overrun => {
                    // Everything this batch will ever produce is already
                    // queued (the kernel answered inside sendmsg): take it.
                    overrun = true;
                    let mut budget = count + 16;
                    while budget > 0 && !finished && self.receive_queued() {
                        budget -= 1;
                        finished = self.record_replies(op, first, &mut replies)?;
                    }
                    break;
                }
            }
            finished = self.record_replies(op, first, &mut replies)?;
        }
        let lost = if overrun {
            Outcome::Lost
        } else {
            Outcome::Done
        };
        let failed = replies
            .iter()
            .filter(|r| matches!(r, Some(Outcome::Failed(_))))
            .count();
        tracing::debug!(op, messages = count, failed, overrun, "netlink batch");
        Ok(replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| lost.clone()))
            .collect())
    }

    /// Records the error/ACK replies in the input buffer; `true` once the
    /// batch's last message has been answered.
    fn record_replies(
        &self,
        op: &str,
        first: u32,
        replies: &mut [Option<Outcome>],
    ) -> Result<bool, NetlinkError> {
        let mut finished = false;
        for frame in frame::frames(&self.input) {
            let frame = frame.map_err(|source| NetlinkError::Frame {
                op: op.to_string(),
                source,
            })?;
            let index = frame.seq.wrapping_sub(first) as usize;
            let (Some(slot), Some(reply)) = (replies.get_mut(index), frame::error_reply(&frame))
            else {
                continue;
            };
            *slot = Some(match reply {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Failed(e),
            });
            finished |= index + 1 == replies.len();
        }
        Ok(finished)
    }

    /// Sends one request and waits for its acknowledgement.
    pub async fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let request = Request { message, flags };
        let outcome = self
            .pipeline(op, vec![request], AckMode::EveryMessage)
            .await?
            .pop();
        match outcome {
            Some(Outcome::Done) => Ok(()),
            Some(Outcome::Failed(source)) => Err(NetlinkError::Kernel {
                op: op.to_string(),
                source,
            }),
            Some(Outcome::Lost) | None => Err(NetlinkError::Overrun { op: op.to_string() }),
        }
    }

    /// Dumps the objects `request` (a GET message) selects.
    pub async fn dump(
        &mut self,
        op: &str,
        request: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut attempt = 1;
        loop {
            match self.dump_once(op, request.clone()).await? {
                DumpResult::Complete(messages) => return Ok(messages),
                DumpResult::Interrupted(messages) if attempt >= DUMP_ATTEMPTS => {
                    tracing::warn!(
                        op,
                        attempts = attempt,
                        "the kernel kept changing during the dump; using the last one"
                    );
                    return Ok(messages);
                }
                DumpResult::Overrun if attempt >= DUMP_ATTEMPTS => {
                    return Err(NetlinkError::Overrun { op: op.to_string() });
                }
                DumpResult::Interrupted(_) | DumpResult::Overrun => {
                    tracing::debug!(op, attempt, "dump interrupted; retrying");
                    attempt += 1;
                }
            }
        }
    }

    async fn dump_once(
        &mut self,
        op: &str,
        request: RouteNetlinkMessage,
    ) -> Result<DumpResult, NetlinkError> {
        let seq = self.next_seq();
        self.output.clear();
        self.push(request, NLM_F_DUMP, seq);
        self.send(op).await?;
        let mut messages = Vec::new();
        let mut interrupted = false;
        let mut undecodable = 0usize;
        loop {
            if let Received::Overrun = self.receive(op).await? {
                return Ok(DumpResult::Overrun);
            }
            for frame in frame::frames(&self.input) {
                let frame = frame.map_err(|source| NetlinkError::Frame {
                    op: op.to_string(),
                    source,
                })?;
                if frame.seq != seq {
                    continue;
                }
                interrupted |= frame.flags & NLM_F_DUMP_INTR != 0;
                if let Some(code) = frame::done_code(&frame) {
                    if code < 0 {
                        return Err(NetlinkError::Kernel {
                            op: op.to_string(),
                            source: KernelError {
                                errno: Errno::from_raw(code.saturating_abs()),
                                message: None,
                            },
                        });
                    }
                    if undecodable > 0 {
                        tracing::warn!(op, undecodable, "skipped undecodable dump entries");
                    }
                    return Ok(if interrupted {
                        DumpResult::Interrupted(messages)
                    } else {
                        DumpResult::Complete(messages)
                    });
                }
                if let Some(reply) = frame::error_reply(&frame) {
                    return match reply {
                        Ok(()) => Ok(DumpResult::Complete(messages)),
                        Err(source) => Err(NetlinkError::Kernel {
                            op: op.to_string(),
                            source,
                        }),
                    };
                }
                match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame.bytes) {
                    Ok(NetlinkMessage {
                        payload: NetlinkPayload::InnerMessage(m),
                        ..
                    }) => messages.push(m),
                    Ok(_) => {}
                    Err(e) => {
                        undecodable += 1;
                        tracing::debug!(op, error = %e, "undecodable dump entry");
                    }
                }
            }
        }
    }
}

enum DumpResult {
    Complete(Vec<RouteNetlinkMessage>),
    Interrupted(Vec<RouteNetlinkMessage>),
    Overrun,
}
