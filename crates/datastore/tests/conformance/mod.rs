//! The datastore conformance suite: every backend must pass it unchanged.
//!
//! A backend's test file declares `#[macro_use] mod conformance;` at its
//! crate root and invokes `conformance_tests!(make_target)`, where
//! `make_target()` returns `anyhow::Result<(guard, Target)>`: a fresh store
//! reachable through `Target::spec` (from this process and from child
//! processes) and kept alive by `guard`. Every case writes only under
//! `Target::root`, but cases that count revisions assume no other writer
//! uses the store while they run.
//!
//! Layout: `cases` (CRUD, CAS, lists, watches, compaction), `processes`
//! (real OS processes contending on one store), `syncer` (the list/watch
//! syncer on top of the backend), `flaky` (a fault-injecting wrapper).

pub mod cases;
pub mod flaky;
pub mod processes;
pub mod syncer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tortie_datastore::{Datastore, DatastoreError, DatastoreSpec, Watch, WatchEvent};

pub use cases::*;
pub use processes::*;
pub use syncer::*;

/// How long any single expected event may take to arrive.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store a case runs against.
pub struct Target {
    pub spec: DatastoreSpec,
    /// Key prefix reserved for the case; ends with `/`.
    pub root: String,
}

impl Target {
    /// A new client of the case's store.
    pub async fn connect(&self) -> Result<Arc<dyn Datastore>> {
        tortie_datastore::connect(&self.spec)
            .await
            .with_context(|| format!("connecting to {}", self.spec))
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.root)
    }
}

/// The next watch event, failing on an error, an ended stream or a timeout.
pub async fn next_event(watch: &mut Watch) -> Result<WatchEvent> {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(err))) => bail!("watch failed: {err}"),
        Ok(None) => bail!("watch ended"),
        Err(_) => bail!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// Asserts that the watch delivers nothing for a short while.
pub async fn expect_quiet(watch: &mut Watch) -> Result<()> {
    match tokio::time::timeout(Duration::from_millis(150), watch.next()).await {
        Err(_) => Ok(()),
        Ok(item) => bail!("expected no more watch events, got {item:?}"),
    }
}

/// Asserts that watching from `start` fails with `Compacted`, whether the
/// backend reports it from `watch` itself or as the stream's first item.
pub async fn expect_compacted(
    store: &dyn Datastore,
    prefix: &str,
    start: i64,
) -> Result<DatastoreError> {
    let err = match store.watch(prefix, start).await {
        Err(err) => err,
        Ok(mut watch) => match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
            Ok(Some(Err(err))) => err,
            other => bail!("watch from compacted revision {start} gave {other:?}"),
        },
    };
    match err {
        DatastoreError::Compacted { .. } => Ok(err),
        other => bail!("expected Compacted from revision {start}, got {other:?}"),
    }
}

/// Generates one test per conformance case for a backend; see the module
/// comment. Must be invoked at the root of the test crate (child processes
/// re-run the test binary selecting `conformance_child_process` by name).
macro_rules! conformance_tests {
    ($make:path) => {
        conformance_tests!(@current_thread $make,
            crud,
            revisions_increment_by_one,
            create_requires_absence,
            compare_and_swap_conflicts_report_actual_revision,
            missing_keys_are_not_found,
            delete_with_and_without_precondition,
            list_by_prefix_is_sorted_and_bounded,
            empty_keys_are_rejected,
            values_are_opaque_bytes,
            watch_delivers_writes_in_order,
            watch_from_past_revision_replays_exactly,
            watch_from_future_revision_waits,
            watch_delete_carries_prev_value,
            concurrent_watchers_on_different_prefixes,
            watch_resume_has_no_gap_and_no_duplicate,
            slow_watcher_does_not_block_others,
            watch_sees_writes_of_other_clients,
            compaction_fails_older_watches,
            syncer_sends_snapshot_then_marker_then_live_updates
        );
        conformance_tests!(@multi_thread $make,
            cas_increments_across_processes,
            concurrent_first_use_from_processes,
            syncer_relist_after_compaction_sends_only_differences,
            syncer_reports_outage_and_resyncs_as_a_diff,
            syncer_spaces_out_relists
        );

        /// Does nothing unless started as a child by the process cases.
        #[test]
        fn conformance_child_process() -> anyhow::Result<()> {
            conformance::child_entry()
        }
    };
    (@current_thread $make:path, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() -> anyhow::Result<()> {
                let (_guard, target) = $make()?;
                conformance::$case(&target).await
            }
        )*
    };
    (@multi_thread $make:path, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                let (_guard, target) = $make()?;
                conformance::$case(&target).await
            }
        )*
    };
}
