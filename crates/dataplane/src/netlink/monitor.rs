//! A socket subscribed to rtnetlink multicast groups (link, address,
//! neighbour... notifications), in the namespace of the thread that opened
//! it.
//!
//! Hard case: when notifications arrive faster than they are read the
//! kernel drops them and reports ENOBUFS once; that is returned as
//! [`NetlinkError::Overrun`] so the caller replaces what it knows with a
//! full dump — notifications are hints, the dump is the truth.

use nix::errno::Errno;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, TokioSocket};

use super::{NetlinkError, RECV_BUFFER, enlarge_receive_buffer, frame};

/// A multicast subscription.
pub struct Monitor {
    socket: TokioSocket,
    input: Vec<u8>,
}

impl Monitor {
    /// Subscribes to `groups`; must run inside a tokio runtime.
    pub fn open(groups: &[MulticastGroup]) -> Result<Monitor, NetlinkError> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        let inner = socket.socket_mut();
        inner.bind_auto().map_err(NetlinkError::Open)?;
        for group in groups {
            inner
                .add_membership(*group as u32)
                .map_err(NetlinkError::Open)?;
        }
        enlarge_receive_buffer(inner);
        Ok(Monitor {
            socket,
            input: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Waits for the next datagram of notifications and decodes it
    /// (undecodable entries are skipped: the next full scan covers them).
    pub async fn next(&mut self) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let op = "read netlink notifications";
        self.input.clear();
        if let Err(source) = self.socket.recv(&mut self.input).await {
            return Err(if source.raw_os_error() == Some(Errno::ENOBUFS as i32) {
                NetlinkError::Overrun { op: op.to_string() }
            } else {
                NetlinkError::Io {
                    op: op.to_string(),
                    source,
                }
            });
        }
        let mut out = Vec::new();
        for frame in frame::frames(&self.input) {
            let frame = frame.map_err(|source| NetlinkError::Frame {
                op: op.to_string(),
                source,
            })?;
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame.bytes) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(m),
                    ..
                }) => out.push(m),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "undecodable notification skipped"),
            }
        }
        Ok(out)
    }
}
