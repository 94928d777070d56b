//! One task per watch: reads its own slice of the event log and feeds the
//! watch channel.
//!
//! Why a task per watch rather than one fan-out task: each watcher reads
//! from its own position, so a slow consumer only blocks its own task on
//! its own bounded channel; it never delays other watchers and never needs
//! an unbounded buffer. The event log is the shared buffer, and a watcher
//! that falls behind the retained history gets `Compacted` from the same
//! read. The cost, one small indexed query per watcher per commit, is
//! negligible at control-plane write rates.
//!
//! Ordering: the task keeps `next`, the first revision it has not examined,
//! reads `next..=latest` in batches ordered by revision, and only moves
//! `next` past what it has read, so events are never skipped or repeated.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Shared, ops};
use crate::keys::KeyRange;
use crate::{DatastoreError, Revision, WatchEvent};

/// Events read per query; bounds the memory a lagging watcher holds.
const BATCH: usize = 256;

pub(super) async fn run(
    shared: Arc<Shared>,
    range: KeyRange,
    mut next: Revision,
    events: mpsc::Sender<Result<WatchEvent, DatastoreError>>,
    mut committed: watch::Receiver<Revision>,
) {
    loop {
        let latest = *committed.borrow_and_update();
        while next <= latest {
            let batch_range = range.clone();
            let from = next;
            let read = Shared::run_blocking(&shared, move |shared| {
                shared.with_reader(|conn| ops::read_events(conn, &batch_range, from, latest, BATCH))
            })
            .await;
            match read {
                Ok(batch) => {
                    for event in batch.events {
                        if events.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    next = batch.next;
                }
                Err(err) => {
                    // Terminal: the consumer re-lists. Nothing else to do if
                    // it has already gone.
                    let _ = events.send(Err(err)).await;
                    return;
                }
            }
        }
        if committed.changed().await.is_err() {
            return;
        }
    }
}
