//! The syncer: "list, then watch, with an explicit in-sync marker" over one
//! or more key prefixes, on any backend (spec/datastore.md section 4).
//!
//! The consumer sees: an [`SyncEvent::Update`] per key of the initial
//! snapshot, ONE [`SyncEvent::InSync`] once every prefix has been listed,
//! then live updates. When a watch fails (including `Compacted`) the prefix
//! is re-listed and only the differences are sent, so a resync is
//! invisible except as a diff. Per key, revisions only increase and none is
//! sent twice; updates of one prefix arrive in revision order (different
//! prefixes are independent watches and may interleave arbitrarily).
//!
//! Status ([`Syncer::status`], for readiness): `WaitForDatastore` while the
//! datastore cannot be listed, `ResyncInProgress` while (re-)listing after
//! that, `InSync` once caught up. A re-list caused by a failed watch while
//! the datastore stays reachable does not leave `InSync`, so readiness does
//! not flap on routine compactions.
//!
//! Layout: [`cache`] holds the pure diff rules, [`driver`] the task.

mod cache;
mod driver;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::{Datastore, Revision};

/// What the syncer tells its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// A key's value (`None` = deleted) as of `revision` (the key's
    /// mod_revision, or for a deletion found by a re-list, the list's).
    Update {
        key: String,
        value: Option<Vec<u8>>,
        revision: Revision,
    },
    /// Sent once: everything before it was the initial snapshot of every
    /// prefix.
    InSync,
}

/// The syncer's connection state, for readiness reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncStatus {
    WaitForDatastore,
    ResyncInProgress,
    InSync,
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncStatus::WaitForDatastore => "wait-for-datastore",
            SyncStatus::ResyncInProgress => "resync-in-progress",
            SyncStatus::InSync => "in-sync",
        })
    }
}

/// What to sync and how patiently.
#[derive(Clone, Debug)]
pub struct SyncerConfig {
    /// Key prefixes; overlapping ones are merged (`/a/` covers `/a/b/`).
    pub prefixes: Vec<String>,
    /// Minimum time between two lists of one prefix, and the first retry
    /// delay when listing fails (spec: 500 ms).
    pub min_resync_interval: Duration,
    /// Retry delays double from `min_resync_interval` up to this.
    pub max_retry_interval: Duration,
    /// Capacity of the event channel to the consumer. Bounded so a slow
    /// consumer pushes back on the watches (which then catch up from the
    /// datastore's history, or re-list) instead of growing memory.
    pub channel_capacity: usize,
}

impl SyncerConfig {
    pub fn new<P: Into<String>>(prefixes: impl IntoIterator<Item = P>) -> SyncerConfig {
        SyncerConfig {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            min_resync_interval: Duration::from_millis(500),
            max_retry_interval: Duration::from_secs(5),
            channel_capacity: 1024,
        }
    }
}

/// A running syncer. Dropping it stops its task and watches.
#[derive(Debug)]
pub struct Syncer {
    events: mpsc::Receiver<SyncEvent>,
    status: watch::Receiver<SyncStatus>,
    driver: AbortHandle,
}

impl Syncer {
    /// Starts syncing in a new task (call from within a tokio runtime).
    pub fn start(datastore: Arc<dyn Datastore>, config: SyncerConfig) -> Syncer {
        let (event_sender, events) = mpsc::channel(config.channel_capacity.max(1));
        let (status_sender, status) = watch::channel(SyncStatus::WaitForDatastore);
        let driver = driver::Driver::new(datastore, config, event_sender, status_sender);
        let task = tokio::spawn(driver.run());
        Syncer {
            events,
            status,
            driver: task.abort_handle(),
        }
    }

    /// The next event. The syncer retries forever, so this only returns
    /// `None` if its task died.
    pub async fn next(&mut self) -> Option<SyncEvent> {
        self.events.recv().await
    }

    /// The current status and its changes.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
