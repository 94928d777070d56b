//! The consumer's end of a watch: a bounded channel of events fed by a
//! backend task, which is stopped when the handle is dropped.
//!
//! Why bounded: the backend's own history (the SQLite event log, etcd's
//! MVCC store) is the real buffer. The channel only decouples the producer
//! task from the consumer, so a slow consumer holds at most
//! [`WATCH_CHANNEL_CAPACITY`] events in memory and pushes back on its own
//! producer task, never on other watches or on writers. If it falls behind
//! the retained history it gets `Compacted` and re-lists.
//!
//! Hard case: "any error is terminal". The handle enforces it whatever the
//! backend does: after yielding an error it only yields `None`.

use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::{DatastoreError, WatchEvent};

/// Capacity of a watch channel (events, not bytes).
pub const WATCH_CHANNEL_CAPACITY: usize = 256;

/// A stream of [`WatchEvent`]s in revision order. See [`crate::Datastore::watch`].
#[derive(Debug)]
pub struct Watch {
    events: mpsc::Receiver<Result<WatchEvent, DatastoreError>>,
    producer: AbortHandle,
    finished: bool,
}

impl Watch {
    /// Wraps the receiving end of a backend's channel (create it with
    /// [`WATCH_CHANNEL_CAPACITY`]) and the task feeding it, which is aborted
    /// when the handle is dropped.
    pub fn new(
        events: mpsc::Receiver<Result<WatchEvent, DatastoreError>>,
        producer: AbortHandle,
    ) -> Watch {
        Watch {
            events,
            producer,
            finished: false,
        }
    }

    /// The next event; `None` once the stream has ended (after an error, or
    /// if the backend stopped).
    pub async fn next(&mut self) -> Option<Result<WatchEvent, DatastoreError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Poll form of [`Watch::next`], for selecting over several watches.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<WatchEvent, DatastoreError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.events.poll_recv(cx));
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
            self.producer.abort();
        }
        Poll::Ready(item)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.producer.abort();
    }
}
