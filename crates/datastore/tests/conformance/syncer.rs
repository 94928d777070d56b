//! The syncer on top of a backend: snapshot, one in-sync marker, live
//! updates; re-lists that surface only as differences (after a compaction
//! past the syncer's position while writes continue, and after an outage);
//! status transitions; spacing of retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::sync::watch;
use tortie_datastore::sync::{SyncEvent, SyncStatus, Syncer, SyncerConfig};
use tortie_datastore::{Datastore, Revision};

use super::flaky::Flaky;
use super::{EVENT_TIMEOUT, Target};

/// What a consumer has been told, checked as it is told.
#[derive(Default)]
struct View {
    values: BTreeMap<String, (Vec<u8>, Revision)>,
    last_revision: HashMap<String, Revision>,
    updates: usize,
    in_sync_markers: usize,
}

impl View {
    fn apply(&mut self, event: SyncEvent) -> Result<()> {
        match event {
            SyncEvent::InSync => {
                self.in_sync_markers += 1;
                ensure!(self.in_sync_markers == 1, "a second InSync marker");
            }
            SyncEvent::Update {
                key,
                value,
                revision,
            } => {
                if let Some(last) = self.last_revision.get(&key) {
                    ensure!(
                        revision > *last,
                        "{key}: revision {revision} after {last} (duplicate or out of order)"
                    );
                }
                self.last_revision.insert(key.clone(), revision);
                self.updates += 1;
                match value {
                    Some(value) => {
                        self.values.insert(key, (value, revision));
                    }
                    None => {
                        self.values.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the view holds exactly the store's keys under `prefixes`.
    async fn matches(&self, store: &dyn Datastore, prefixes: &[String]) -> Result<bool> {
        let mut expected = BTreeMap::new();
        for prefix in prefixes {
            for kv in store.list(prefix).await?.items {
                expected.insert(kv.key, (kv.value, kv.mod_revision));
            }
        }
        Ok(expected == self.values)
    }
}

async fn next_sync(syncer: &mut Syncer) -> Result<SyncEvent> {
    tokio::time::timeout(EVENT_TIMEOUT, syncer.next())
        .await
        .context("no syncer event in time")?
        .context("the syncer stopped")
}

async fn until_in_sync(syncer: &mut Syncer, view: &mut View) -> Result<()> {
    while view.in_sync_markers == 0 {
        view.apply(next_sync(syncer).await?)?;
    }
    Ok(())
}

async fn expect_no_sync_event(syncer: &mut Syncer) -> Result<()> {
    match tokio::time::timeout(Duration::from_millis(200), syncer.next()).await {
        Err(_) => Ok(()),
        Ok(event) => bail!("expected no syncer event, got {event:?}"),
    }
}

async fn wait_status(status: &mut watch::Receiver<SyncStatus>, wanted: SyncStatus) -> Result<()> {
    tokio::time::timeout(EVENT_TIMEOUT, status.wait_for(|current| *current == wanted))
        .await
        .with_context(|| format!("status never became {wanted}"))?
        .context("syncer gone")?;
    Ok(())
}

fn config(prefixes: &[String]) -> SyncerConfig {
    let mut config = SyncerConfig::new(prefixes.iter().cloned());
    config.min_resync_interval = Duration::from_millis(50);
    config.max_retry_interval = Duration::from_millis(200);
    config
}

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

pub async fn syncer_sends_snapshot_then_marker_then_live_updates(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let prefixes = [t.key("sa/"), t.key("sb/")];
    for i in 0..5 {
        for prefix in &prefixes {
            store
                .put(&format!("{prefix}{i}"), bytes(&i.to_string()))
                .await?;
        }
    }
    store.put(&t.key("sc/outside"), bytes("x")).await?;

    let mut syncer = Syncer::start(Arc::clone(&store), config(&prefixes));
    let mut status = syncer.status();
    let mut view = View::default();
    until_in_sync(&mut syncer, &mut view).await?;
    assert_eq!(view.updates, 10, "each snapshot key exactly once");
    ensure!(
        view.matches(store.as_ref(), &prefixes).await?,
        "snapshot differs from the store"
    );
    wait_status(&mut status, SyncStatus::InSync).await?;

    let (a, b) = (&prefixes[0], &prefixes[1]);
    let changed = store.put(&format!("{a}0"), bytes("changed")).await?;
    store.delete(&format!("{b}1"), None).await?;
    let created = store.create(&format!("{a}new"), bytes("new")).await?;
    store.put(&t.key("sc/outside"), bytes("ignored")).await?;
    let rewritten = store.put(&format!("{b}2"), bytes("rewritten")).await?;

    let mut seen: Vec<(String, Option<Vec<u8>>, Revision)> = Vec::new();
    for _ in 0..4 {
        let event = next_sync(&mut syncer).await?;
        if let SyncEvent::Update {
            key,
            value,
            revision,
        } = &event
        {
            seen.push((key.clone(), value.clone(), *revision));
        }
        view.apply(event)?;
    }
    seen.sort_by_key(|(_, _, revision)| *revision);
    assert_eq!(
        seen,
        vec![
            (format!("{a}0"), Some(bytes("changed")), changed),
            (format!("{b}1"), None, changed + 1),
            (format!("{a}new"), Some(bytes("new")), created),
            (format!("{b}2"), Some(bytes("rewritten")), rewritten),
        ]
    );
    ensure!(
        view.matches(store.as_ref(), &prefixes).await?,
        "live view differs"
    );
    expect_no_sync_event(&mut syncer).await
}

pub async fn syncer_relist_after_compaction_sends_only_differences(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let prefix = t.key("hot/");
    let prefixes = [prefix.clone()];
    for i in 0..20 {
        store
            .put(&format!("{prefix}static/{i}"), bytes("s"))
            .await?;
    }
    for i in 0..10 {
        store.put(&format!("{prefix}h/{i}"), bytes("0")).await?;
    }
    for i in 0..3 {
        store
            .put(&format!("{prefix}doomed/{i}"), bytes("d"))
            .await?;
    }
    let mut config = config(&prefixes);
    config.channel_capacity = 8;
    let mut syncer = Syncer::start(Arc::clone(&store), config);
    let mut view = View::default();
    until_in_sync(&mut syncer, &mut view).await?;
    let snapshot_updates = view.updates;

    // The consumer stalls while thousands of writes land, far more than the
    // syncer and watch channels can hold; then history is compacted past
    // the syncer's position.
    let mut writes = 0;
    for i in 0..3_000 {
        store
            .put(&format!("{prefix}h/{}", i % 10), bytes(&i.to_string()))
            .await?;
        writes += 1;
    }
    for i in 0..3 {
        store.delete(&format!("{prefix}doomed/{i}"), None).await?;
        store
            .create(&format!("{prefix}born/{i}"), bytes("b"))
            .await?;
        writes += 2;
    }
    store.compact(store.revision().await?).await?;

    // Writes continue while the syncer recovers.
    let writer_store = Arc::clone(&store);
    let writer_prefix = prefix.clone();
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            writer_store
                .put(
                    &format!("{writer_prefix}h/{}", i % 10),
                    bytes(&format!("late-{i}")),
                )
                .await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::Ok(200)
    });
    while !writer.is_finished() {
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(20), syncer.next()).await {
            view.apply(event.context("the syncer stopped")?)?;
        }
    }
    writes += writer.await??;

    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !view.matches(store.as_ref(), &prefixes).await? {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the syncer never caught up"
        );
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(50), syncer.next()).await {
            view.apply(event.context("the syncer stopped")?)?;
        }
    }
    let live_updates = view.updates - snapshot_updates;
    println!("{writes} writes reached the consumer as {live_updates} updates");
    ensure!(
        live_updates < writes,
        "every write was delivered ({live_updates}): the compaction caused no re-list"
    );
    for i in 0..20 {
        let key = format!("{prefix}static/{i}");
        let (_, revision) = view.values.get(&key).context("static key")?;
        assert_eq!(view.last_revision.get(&key), Some(revision));
    }
    // Unchanged keys were sent once: in the snapshot.
    let static_updates = view
        .last_revision
        .keys()
        .filter(|key| key.contains("/static/"))
        .count();
    assert_eq!(static_updates, 20);
    expect_no_sync_event(&mut syncer).await
}

pub async fn syncer_reports_outage_and_resyncs_as_a_diff(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let prefix = t.key("outage/");
    let prefixes = [prefix.clone()];
    for i in 0..10 {
        store.put(&format!("{prefix}{i}"), bytes("v")).await?;
    }
    let flaky = Flaky::new(Arc::clone(&store));
    flaky.set_down(true);
    let mut config = config(&prefixes);
    config.channel_capacity = 1;
    let mut syncer = Syncer::start(flaky.clone(), config);
    let mut status = syncer.status();

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(*status.borrow(), SyncStatus::WaitForDatastore);
    expect_no_sync_event(&mut syncer).await?;

    flaky.set_down(false);
    // The snapshot cannot drain into a one-slot channel until we read it,
    // so the intermediate status is observable.
    wait_status(&mut status, SyncStatus::ResyncInProgress).await?;
    let mut view = View::default();
    until_in_sync(&mut syncer, &mut view).await?;
    wait_status(&mut status, SyncStatus::InSync).await?;
    assert_eq!(view.updates, 10);

    flaky.set_down(true);
    wait_status(&mut status, SyncStatus::WaitForDatastore).await?;
    let changed = store.put(&format!("{prefix}0"), bytes("changed")).await?;
    store.delete(&format!("{prefix}1"), None).await?;
    let created = store.create(&format!("{prefix}new"), bytes("new")).await?;
    flaky.set_down(false);

    let mut diff = Vec::new();
    for _ in 0..3 {
        let event = next_sync(&mut syncer).await?;
        diff.push(event.clone());
        view.apply(event)?;
    }
    wait_status(&mut status, SyncStatus::InSync).await?;
    let listed = store.list(&prefix).await?.revision;
    assert_eq!(
        diff,
        vec![
            SyncEvent::Update {
                key: format!("{prefix}0"),
                value: Some(bytes("changed")),
                revision: changed,
            },
            SyncEvent::Update {
                key: format!("{prefix}new"),
                value: Some(bytes("new")),
                revision: created,
            },
            SyncEvent::Update {
                key: format!("{prefix}1"),
                value: None,
                revision: listed,
            },
        ]
    );
    ensure!(
        view.matches(store.as_ref(), &prefixes).await?,
        "view differs after the outage"
    );
    expect_no_sync_event(&mut syncer).await
}

pub async fn syncer_spaces_out_relists(t: &Target) -> Result<()> {
    assert_eq!(
        SyncerConfig::new(["/x/"]).min_resync_interval,
        Duration::from_millis(500),
        "the spec's minimum interval between resyncs"
    );
    let store = t.connect().await?;
    let flaky = Flaky::new(store);
    flaky.set_down(true);
    let mut config = SyncerConfig::new([t.key("spaced/")]);
    config.min_resync_interval = Duration::from_millis(100);
    config.max_retry_interval = Duration::from_millis(400);
    let syncer = Syncer::start(flaky.clone(), config);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    drop(syncer);

    let attempts = flaky.list_attempts();
    ensure!(
        (3..=6).contains(&attempts.len()),
        "{} list attempts in 1.3 s",
        attempts.len()
    );
    let floors = [100, 200, 400, 400, 400];
    for (gap, floor) in attempts.windows(2).map(|w| w[1] - w[0]).zip(floors) {
        ensure!(
            gap >= Duration::from_millis(floor),
            "retry after {gap:?}, expected at least {floor} ms"
        );
    }
    Ok(())
}
