//! Noticing new commits: the newest committed revision, published on a
//! `tokio::sync::watch` channel that every watcher of this datastore
//! instance subscribes to.
//!
//! Two sources feed it. Writes made through this instance publish their
//! revision right after commit (no latency). Writes by other processes, or
//! other instances in this process, are noticed by ONE poller thread per
//! instance that checks `PRAGMA data_version` on a dedicated connection
//! when inotify reports a write to the WAL (`wake`), and every
//! `poll_interval` (5 ms by default) whatever happens; the pragma is a
//! cheap read of the WAL index that changes whenever another connection
//! commits, and only then is the meta row read.
//!
//! Why a thread and not a tokio task: the poll must not occupy a runtime
//! worker (or the only worker of a current_thread runtime) when SQLite
//! blocks, and a sleeping thread costs less than a `spawn_blocking` per
//! tick. The thread starts with the first watch and exits at the first tick
//! with no watcher left, so processes that never watch (the CNI plugin)
//! never poll.
//!
//! Hard case: missing a commit between the poller's start and its first
//! check. The poller samples `data_version` BEFORE reading the revision it
//! publishes, so any later commit changes the version it compares against.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::wake::CommitWake;
use super::{EmbeddedOptions, StoreError, ops, schema};
use crate::{DatastoreError, Revision};

/// How often the poller looks again after a wake-up that showed no commit
/// yet, and for how many steps (a commit on a slow disk waits for fsync).
const CHASE_STEP: Duration = Duration::from_millis(1);
const CHASE_STEPS: u32 = 20;
/// Polls between attempts to set the wake-up up while it is not (the WAL
/// was missing, or inotify refused).
const REARM_EVERY: u32 = 1000;

pub(super) struct RevisionFeed {
    latest: watch::Sender<Revision>,
    /// Whether a poller thread is running; guards its start and exit.
    poller_running: Mutex<bool>,
    path: PathBuf,
    options: EmbeddedOptions,
}

impl RevisionFeed {
    pub fn new(path: PathBuf, options: EmbeddedOptions, revision: Revision) -> Arc<RevisionFeed> {
        let (latest, _) = watch::channel(revision);
        Arc::new(RevisionFeed {
            latest,
            poller_running: Mutex::new(false),
            path,
            options,
        })
    }

    /// Records that `revision` is committed (revisions only move forward).
    pub fn publish(&self, revision: Revision) {
        self.latest.send_if_modified(|latest| {
            if revision > *latest {
                *latest = revision;
                true
            } else {
                false
            }
        });
    }

    /// A receiver of committed revisions; starts the poller if needed.
    /// Blocking (may open a connection): call off the async workers.
    pub fn subscribe(self: &Arc<Self>) -> Result<watch::Receiver<Revision>, DatastoreError> {
        let mut running = self
            .poller_running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let receiver = self.latest.subscribe();
        if !*running {
            let endpoint = format!("embedded:{}", self.path.display());
            let conn = schema::open_connection(&self.path, &self.options).map_err(|err| {
                DatastoreError::Unavailable {
                    endpoint: endpoint.clone(),
                    reason: err.to_string(),
                }
            })?;
            let feed = Arc::clone(self);
            thread::Builder::new()
                .name("tortie-ds-poll".to_owned())
                .spawn(move || feed.poll(conn))
                .map_err(|err| {
                    DatastoreError::Backend(format!(
                        "{endpoint}: cannot start the watch poller thread: {err}"
                    ))
                })?;
            *running = true;
        }
        Ok(receiver)
    }

    fn poll(&self, conn: Connection) {
        let path = self.path.display().to_string();
        tracing::debug!(%path, "watch poller started");
        let mut seen_version = None;
        let mut failing = false;
        let mut wake: Option<CommitWake> = None;
        // Quick re-checks left after a wake-up that has not shown a commit.
        let mut chase = 0;
        let mut polls: u32 = 0;
        loop {
            let changed = match self.check(&conn, &mut seen_version) {
                Ok(changed) => {
                    if failing {
                        failing = false;
                        tracing::info!(%path, "watch poller recovered");
                    }
                    changed
                }
                Err(err) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(%path, error = %err, "watch poller cannot read the datastore; retrying");
                    }
                    false
                }
            };
            polls = polls.wrapping_add(1);
            let rearm = wake
                .as_ref()
                .is_some_and(|w| !w.active() && polls.is_multiple_of(REARM_EVERY));
            let Some(wake) = wake.as_ref().filter(|_| !rearm) else {
                // The WAL exists once the check has read the store. A
                // commit that slipped in before the watch on it was set
                // is caught by checking once more, at once.
                let created = CommitWake::new(&self.path);
                tracing::debug!(%path, inotify = created.active(), "watch poller waits for commits");
                wake = Some(created);
                continue;
            };
            // A write to the WAL comes before the commit is visible (the
            // WAL index, in shared memory, changes last and wakes no one):
            // after a wake-up, look again every CHASE_STEP until the
            // commit shows or CHASE_STEPS pass.
            if changed {
                chase = 0;
            }
            let timeout = if chase > 0 {
                chase -= 1;
                CHASE_STEP.min(self.options.poll_interval)
            } else {
                self.options.poll_interval
            };
            if wake.wait(timeout) {
                chase = CHASE_STEPS;
            }
            let mut running = self
                .poller_running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.latest.receiver_count() == 0 {
                *running = false;
                tracing::debug!(%path, "watch poller stopped: no watchers left");
                return;
            }
        }
    }

    /// Publishes the newest revision if another connection committed since
    /// the last check; returns whether one did.
    fn check(&self, conn: &Connection, seen_version: &mut Option<i64>) -> Result<bool, StoreError> {
        let version: i64 = conn.pragma_query_value(None, "data_version", |row| row.get(0))?;
        if *seen_version == Some(version) {
            return Ok(false);
        }
        *seen_version = Some(version);
        self.publish(ops::meta(conn)?.revision);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::Datastore;
    use crate::embedded::{EmbeddedDatastore, EmbeddedOptions};

    /// Poller threads of this process (no other unit test watches).
    fn pollers() -> usize {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .filter(|name| name.trim() == "tortie-ds-poll")
            .count()
    }

    #[tokio::test]
    async fn poller_runs_only_while_someone_watches() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let store = EmbeddedDatastore::open(dir.path().join("ds.db"), EmbeddedOptions::default())
            .await
            .expect("opening the store");
        store.put("/k", b"v".to_vec()).await.expect("writing");
        assert_eq!(pollers(), 0, "no poller before the first watch");

        let first = store.watch("/", 1).await.expect("watching");
        let second = store.watch("/", 1).await.expect("watching");
        // A thread names itself once running, so wait for it to show.
        wait_for_pollers(1).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            pollers(),
            1,
            "one poller per instance, kept for the watcher left"
        );

        drop(second);
        wait_for_pollers(0).await;
    }

    async fn wait_for_pollers(wanted: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while pollers() != wanted {
            assert!(
                Instant::now() < deadline,
                "{} pollers running, expected {wanted}",
                pollers()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
