//! The syncer task: lists every prefix, announces `InSync`, then follows
//! one watch per prefix, re-listing a prefix whose watch fails.
//!
//! One task owns all state (the caches, the watches, the status); the
//! watches are polled together with `Watch::poll_next`, round-robin so a
//! busy prefix cannot starve a quiet one. While a prefix is re-listed the
//! other watches wait (bounded channels push back), which keeps the code
//! sequential and the per-prefix order trivially right.
//!
//! Hard cases: a watch that cannot even be created (the start revision was
//! compacted between list and watch, or the datastore went away) leads to
//! another re-list, no sooner than `min_resync_interval` after the previous
//! one; list failures back off exponentially up to `max_retry_interval`.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::cache::{PrefixCache, normalize_prefixes};
use super::{SyncEvent, SyncStatus, SyncerConfig};
use crate::{Datastore, DatastoreError, Watch, WatchEvent};

/// The consumer dropped the syncer; the task ends.
struct Stopped;

pub(super) struct Driver {
    datastore: Arc<dyn Datastore>,
    min_resync_interval: Duration,
    max_retry_interval: Duration,
    caches: Vec<PrefixCache>,
    watches: Vec<Option<Watch>>,
    last_list: Vec<Option<Instant>>,
    events: mpsc::Sender<SyncEvent>,
    status: watch::Sender<SyncStatus>,
    /// Whether the initial snapshot of every prefix has been sent.
    synced: bool,
    /// Where the next round-robin poll of the watches starts.
    poll_from: usize,
}

impl Driver {
    pub fn new(
        datastore: Arc<dyn Datastore>,
        config: SyncerConfig,
        events: mpsc::Sender<SyncEvent>,
        status: watch::Sender<SyncStatus>,
    ) -> Driver {
        let caches: Vec<PrefixCache> = normalize_prefixes(&config.prefixes)
            .into_iter()
            .map(PrefixCache::new)
            .collect();
        let count = caches.len();
        Driver {
            datastore,
            min_resync_interval: config.min_resync_interval,
            max_retry_interval: config.max_retry_interval.max(config.min_resync_interval),
            caches,
            watches: (0..count).map(|_| None).collect(),
            last_list: vec![None; count],
            events,
            status,
            synced: false,
            poll_from: 0,
        }
    }

    pub async fn run(mut self) {
        let datastore = self.datastore.describe();
        tracing::info!(%datastore, prefixes = self.caches.len(), "syncer starting");
        if self.sync().await.is_err() {
            tracing::debug!(%datastore, "syncer stopped: its consumer has gone");
        }
    }

    async fn sync(&mut self) -> Result<(), Stopped> {
        for index in 0..self.caches.len() {
            self.relist(index).await?;
        }
        self.synced = true;
        self.set_status(SyncStatus::InSync);
        self.emit(SyncEvent::InSync).await?;
        for index in 0..self.caches.len() {
            self.connect_watch(index).await?;
        }
        loop {
            let (index, item) = self.next_watch_item().await;
            let failure = match item {
                Some(Ok(event)) => {
                    if let Some(update) = self.caches[index].apply_event(event) {
                        self.emit(update).await?;
                    }
                    continue;
                }
                Some(Err(err)) => err.to_string(),
                None => "the watch ended".to_owned(),
            };
            tracing::warn!(
                prefix = %self.caches[index].prefix(),
                error = %failure,
                "watch failed; re-listing"
            );
            self.watches[index] = None;
            self.relist(index).await?;
            self.connect_watch(index).await?;
        }
    }

    /// Lists one prefix (retrying until it works) and sends the differences.
    async fn relist(&mut self, index: usize) -> Result<(), Stopped> {
        let mut retry_delay = self.min_resync_interval;
        loop {
            if let Some(last) = self.last_list[index] {
                tokio::time::sleep_until(last + self.min_resync_interval).await;
            }
            self.last_list[index] = Some(Instant::now());
            let prefix = self.caches[index].prefix().to_owned();
            match self.datastore.list(&prefix).await {
                Ok(list) => {
                    if *self.status.borrow() == SyncStatus::WaitForDatastore {
                        self.set_status(SyncStatus::ResyncInProgress);
                    }
                    let revision = list.revision;
                    let updates = self.caches[index].apply_list(list);
                    tracing::debug!(%prefix, revision, changes = updates.len(), "listed");
                    for update in updates {
                        self.emit(update).await?;
                    }
                    if self.synced {
                        self.set_status(SyncStatus::InSync);
                    }
                    return Ok(());
                }
                Err(err) => {
                    tracing::warn!(%prefix, error = %err, retry_in = ?retry_delay, "cannot list; retrying");
                    self.set_status(SyncStatus::WaitForDatastore);
                    tokio::time::sleep(retry_delay).await;
                    retry_delay = (retry_delay * 2).min(self.max_retry_interval);
                }
            }
        }
    }

    /// Starts the watch of one prefix from where its cache stands,
    /// re-listing until a watch can be created.
    async fn connect_watch(&mut self, index: usize) -> Result<(), Stopped> {
        loop {
            let prefix = self.caches[index].prefix().to_owned();
            let start = self.caches[index].revision() + 1;
            match self.datastore.watch(&prefix, start).await {
                Ok(watch) => {
                    self.watches[index] = Some(watch);
                    return Ok(());
                }
                Err(err) => {
                    tracing::warn!(%prefix, start, error = %err, "cannot start watch; re-listing");
                    self.relist(index).await?;
                }
            }
        }
    }

    /// The next item of any watch, polling them round-robin.
    async fn next_watch_item(&mut self) -> (usize, Option<Result<WatchEvent, DatastoreError>>) {
        std::future::poll_fn(|cx| {
            let count = self.watches.len();
            for offset in 0..count {
                let index = (self.poll_from + offset) % count;
                let Some(watch) = self.watches[index].as_mut() else {
                    continue;
                };
                if let Poll::Ready(item) = watch.poll_next(cx) {
                    self.poll_from = (index + 1) % count;
                    return Poll::Ready((index, item));
                }
            }
            Poll::Pending
        })
        .await
    }

    async fn emit(&self, event: SyncEvent) -> Result<(), Stopped> {
        self.events.send(event).await.map_err(|_| Stopped)
    }

    fn set_status(&self, status: SyncStatus) {
        let changed = self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
        if changed {
            tracing::info!(%status, datastore = %self.datastore.describe(), "sync status changed");
        }
    }
}
