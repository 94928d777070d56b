//! One task per watch: follows an etcd watch stream and re-establishes it
//! whenever it breaks, so a consumer sees one gap-free stream.
//!
//! Position: `next`, the first revision not yet delivered. A stream is
//! always created from `next` with `prev_kv`; `next` moves past a
//! response's revisions only once all its events are delivered. etcd sends
//! all events of one revision in one response (we never ask for
//! fragments), so resuming from `next` after any failure repeats nothing
//! and skips nothing, whichever member the new stream lands on (a member
//! behind the others simply waits until it reaches `next`). Events below
//! `next` are dropped should a server ever resend them.
//!
//! What ends the watch (the consumer then re-lists):
//! - compaction: the stream is cancelled with a `compact_revision`, at
//!   creation or later (a watcher catching up from history), or a new
//!   stream cannot start from `next` any more: `Compacted`;
//! - a broken stream (member killed or restarted, leader lost, connection
//!   reset) that cannot be re-established within `timeouts.overall`:
//!   `Unavailable`;
//! - an answer retrying cannot change (permission denied), or a stream
//!   that keeps breaking at the same revision for `timeouts.overall`;
//! - a response too large to decode (over 64 MiB: a huge transaction):
//!   resuming would fetch it again, while a re-list pages by size.
//!
//! Backpressure: the channel to the consumer is bounded. When it stays
//! full for [`STALL_GRACE`], the task drops its etcd stream instead of
//! leaving it unread: unread streams hold HTTP/2 flow-control window, and
//! since every stream shares one connection, a few stalled watches would
//! stall every request of the client. The task then waits for room and
//! re-creates the stream from `next`: etcd's history is the buffer, and a
//! consumer that falls behind the retained history gets `Compacted`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use etcd_client::{EventType, WatchOptions, WatchRequestSender, WatchResponseStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::Inner;
use super::retry::{Attempts, CallError, describe, is_too_large};
use crate::keys::KeyRange;
use crate::{DatastoreError, EventKind, Revision, WATCH_CHANNEL_CAPACITY, Watch, WatchEvent};

/// How long a full consumer channel may block the etcd stream before the
/// stream is dropped (and re-created once the consumer catches up).
const STALL_GRACE: Duration = Duration::from_millis(250);

type Events = mpsc::Sender<Result<WatchEvent, DatastoreError>>;

/// An open etcd watch stream. The request half must stay alive: closing it
/// makes etcd end the stream.
struct Stream {
    _requests: WatchRequestSender,
    responses: WatchResponseStream,
}

/// Why a stream stopped.
enum Stop {
    /// The consumer has gone.
    Consumer,
    /// The watch is over; the error has been sent.
    Ended,
    /// The stream broke; re-establish it from `next`.
    Broken(String),
    /// The consumer is slow; re-establish once it has read.
    Stalled,
}

/// Opens a watch: the first stream is created before returning, so an
/// unreachable cluster or a compacted start revision is this call's error.
pub(super) async fn start(
    inner: Arc<Inner>,
    prefix: &str,
    start_revision: Revision,
) -> Result<Watch, DatastoreError> {
    let range = Arc::new(StreamRange::new(prefix));
    let stream = establish(&inner, &range, start_revision, "watch").await?;
    let (sender, receiver) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
    let task = tokio::spawn(follow(inner, range, start_revision, stream, sender));
    Ok(Watch::new(receiver, task.abort_handle()))
}

/// The watched key range in etcd's terms.
struct StreamRange {
    prefix: String,
    key: Vec<u8>,
    end: Vec<u8>,
}

impl StreamRange {
    fn new(prefix: &str) -> StreamRange {
        let range = KeyRange::prefix(prefix);
        StreamRange {
            prefix: prefix.to_owned(),
            key: if range.start.is_empty() {
                vec![0]
            } else {
                range.start.into_bytes()
            },
            end: range.end.map_or_else(|| vec![0], String::into_bytes),
        }
    }
}

/// Creates a stream from `next`, retrying transient failures until the
/// overall deadline.
async fn establish(
    inner: &Inner,
    range: &StreamRange,
    next: Revision,
    operation: &'static str,
) -> Result<Stream, DatastoreError> {
    let mut attempts = Attempts::new(
        &inner.config.timeouts,
        &inner.target,
        operation,
        &range.prefix,
    );
    loop {
        match attempts.run(create_stream(inner, range, next)).await {
            Ok(stream) => return Ok(stream),
            Err(CallError::Fatal(err)) => return Err(err),
            Err(CallError::Transient(reason)) => attempts.failed(reason).await?,
        }
    }
}

async fn create_stream(
    inner: &Inner,
    range: &StreamRange,
    next: Revision,
) -> Result<Stream, CallError> {
    let options = WatchOptions::new()
        .with_range(range.end.clone())
        .with_start_revision(next)
        .with_prev_key();
    let (requests, mut responses) = inner
        .conn
        .watch()
        .await?
        .watch(range.key.clone(), Some(options))
        .await
        .map_err(|err| inner_error(inner, &err))?
        .split();
    // The first response confirms (or refuses) the creation.
    let created = responses
        .message()
        .await
        .map_err(|err| inner_error(inner, &err))?
        .ok_or_else(|| {
            CallError::Transient("the watch stream ended before it was created".to_owned())
        })?;
    if let Some(err) = cancellation(inner, range, &created, next) {
        return Err(err);
    }
    if !created.created() {
        // etcd holds events back until the creation is confirmed; anything
        // else first would mean events we cannot place. Start afresh.
        return Err(CallError::Transient(
            "the watch stream did not start with its creation".to_owned(),
        ));
    }
    Ok(Stream {
        _requests: requests,
        responses,
    })
}

fn inner_error(inner: &Inner, err: &etcd_client::Error) -> CallError {
    super::retry::classify(&inner.target, err)
}

/// What a cancelled response means, if it is one.
fn cancellation(
    inner: &Inner,
    range: &StreamRange,
    response: &etcd_client::WatchResponse,
    next: Revision,
) -> Option<CallError> {
    if response.compact_revision() > 0 {
        return Some(CallError::Fatal(DatastoreError::Compacted {
            requested: next,
            compacted: response.compact_revision(),
        }));
    }
    if !response.canceled() {
        return None;
    }
    let reason = response.cancel_reason();
    if reason.contains("permission denied") {
        return Some(CallError::Fatal(DatastoreError::Backend(format!(
            "{}: watch of {:?}: {reason}",
            inner.target, range.prefix
        ))));
    }
    Some(CallError::Transient(if reason.is_empty() {
        "etcd cancelled the watch".to_owned()
    } else {
        reason.to_owned()
    }))
}

async fn follow(
    inner: Arc<Inner>,
    range: Arc<StreamRange>,
    mut next: Revision,
    first: Stream,
    events: Events,
) {
    let mut stream = Some(first);
    // Since when, and at which position, the stream has been breaking
    // again and again: one that breaks right after every re-establishment
    // makes no progress and is given up like one that cannot be
    // re-established. A stream that delivered something, or lived longer
    // than the deadline, starts a fresh count when it breaks.
    let mut failing_since: Option<(Instant, Revision)> = None;
    let mut established = Instant::now();
    loop {
        if let Some((since, at)) = failing_since
            && at == next
            && since.elapsed() > inner.config.timeouts.overall
        {
            let _ = events
                .send(Err(DatastoreError::Unavailable {
                    endpoint: inner.target.clone(),
                    reason: format!(
                        "the watch of {:?} keeps breaking at revision {next}",
                        range.prefix
                    ),
                }))
                .await;
            return;
        }
        let current = match stream.take() {
            Some(current) => current,
            None => match establish(&inner, &range, next, "resume watch").await {
                Ok(resumed) => {
                    established = Instant::now();
                    tracing::info!(endpoint = %inner.target, prefix = %range.prefix, from = next, "watch resumed");
                    resumed
                }
                Err(err) => {
                    // The consumer may have gone already; nothing to do then.
                    let _ = events.send(Err(err)).await;
                    return;
                }
            },
        };
        match read_stream(&inner, &range, current, &mut next, &events).await {
            Stop::Consumer | Stop::Ended => return,
            Stop::Broken(reason) => {
                let fresh = match failing_since {
                    Some((_, at)) => {
                        at != next || established.elapsed() > inner.config.timeouts.overall
                    }
                    None => true,
                };
                if fresh {
                    failing_since = Some((Instant::now(), next));
                }
                tracing::warn!(
                    endpoint = %inner.target,
                    prefix = %range.prefix,
                    resume_from = next,
                    error = %reason,
                    "watch stream broke; re-establishing it"
                );
            }
            Stop::Stalled => {
                tracing::debug!(prefix = %range.prefix, resume_from = next, "slow watch consumer; stream dropped until it catches up");
            }
        }
    }
}

/// Delivers a stream's events until it stops (the stream is dropped then).
async fn read_stream(
    inner: &Inner,
    range: &StreamRange,
    stream: Stream,
    next: &mut Revision,
    events: &Events,
) -> Stop {
    let mut stream = Some(stream);
    loop {
        let Some(open) = stream.as_mut() else {
            return Stop::Stalled;
        };
        let response = match open.responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Stop::Broken("the watch stream ended".to_owned()),
            Err(err) if is_too_large(&err) => {
                // Resuming would fetch the same response again. Ending the
                // watch makes the consumer re-list (lists page by size)
                // and watch again from after it.
                let _ = events
                    .send(Err(DatastoreError::Backend(format!(
                        "{}: a watch response for {:?} after revision {} exceeds {} bytes; re-list",
                        inner.target,
                        range.prefix,
                        *next,
                        super::connection::MAX_RESPONSE_BYTES
                    ))))
                    .await;
                return Stop::Ended;
            }
            Err(err) => {
                return match inner_error(inner, &err) {
                    CallError::Transient(_) => Stop::Broken(describe(&err)),
                    CallError::Fatal(err) => {
                        let _ = events.send(Err(err)).await;
                        Stop::Ended
                    }
                };
            }
        };
        match cancellation(inner, range, &response, *next) {
            Some(CallError::Fatal(err)) => {
                let _ = events.send(Err(err)).await;
                return Stop::Ended;
            }
            Some(CallError::Transient(reason)) => return Stop::Broken(reason),
            None => {}
        }
        let mut last = None;
        for event in response.events() {
            let Some(event) = watch_event(inner, event) else {
                continue;
            };
            if event.mod_revision < *next {
                continue;
            }
            last = Some(event.mod_revision);
            let event = match stream {
                Some(_) => match offer(events, event).await {
                    Offer::Sent => continue,
                    Offer::Gone => return Stop::Consumer,
                    Offer::Stalled(event) => {
                        // Stop holding the connection's window; the rest of
                        // this response is delivered, then we start afresh.
                        stream = None;
                        event
                    }
                },
                None => event,
            };
            if events.send(Ok(event)).await.is_err() {
                return Stop::Consumer;
            }
        }
        if let Some(last) = last {
            *next = last + 1;
        }
    }
}

enum Offer {
    Sent,
    Gone,
    /// Still full after the grace period.
    Stalled(WatchEvent),
}

/// Sends one event if the consumer makes room within [`STALL_GRACE`].
async fn offer(events: &Events, event: WatchEvent) -> Offer {
    let event = match events.try_send(Ok(event)) {
        Ok(()) => return Offer::Sent,
        Err(TrySendError::Closed(_)) => return Offer::Gone,
        Err(TrySendError::Full(Ok(event))) => event,
        Err(TrySendError::Full(Err(_))) => return Offer::Gone,
    };
    match tokio::time::timeout(STALL_GRACE, events.reserve()).await {
        Ok(Ok(permit)) => {
            permit.send(Ok(event));
            Offer::Sent
        }
        Ok(Err(_)) => Offer::Gone,
        Err(_) => Offer::Stalled(event),
    }
}

/// Maps an etcd event; `None` for events about keys that are not UTF-8.
fn watch_event(inner: &Inner, event: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    let key = match std::str::from_utf8(kv.key()) {
        Ok(key) => key.to_owned(),
        Err(_) => {
            tracing::warn!(endpoint = %inner.target, key = %String::from_utf8_lossy(kv.key()), "ignoring a watch event for a key that is not UTF-8");
            return None;
        }
    };
    let prev = event.prev_kv();
    Some(match event.event_type() {
        EventType::Put => WatchEvent {
            kind: EventKind::Put,
            key,
            value: Some(kv.value().to_vec()),
            prev_value: prev.map(|prev| prev.value().to_vec()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        },
        EventType::Delete => WatchEvent {
            kind: EventKind::Delete,
            key,
            value: None,
            prev_value: prev.map(|prev| prev.value().to_vec()),
            // A delete event's kv carries only the key and the revision
            // of the delete; the creation revision comes from prev_kv.
            create_revision: prev.map_or(0, |prev| prev.create_revision()),
            mod_revision: kv.mod_revision(),
        },
    })
}
