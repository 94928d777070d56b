//! The etcd backend under the faults a long-running daemon meets, on a
//! three-member cluster of real etcd processes:
//! - a member (a follower, then the leader) is SIGKILLed and restarted
//!   while four OS processes run compare-and-swap increments and two
//!   watcher processes follow the counter: no increment may be lost or
//!   doubled, and each watcher must see every revision of the key in order
//!   (one writer and one watcher talk to the victim only, so their calls
//!   and their watch must ride out its absence);
//! - history is compacted past a running watcher and syncer while writes
//!   continue: the watcher reports `Compacted`, the syncer re-lists and
//!   ends up with exactly the store's contents;
//! - every member is stopped: a call fails with "cannot reach etcd at ..."
//!   within its deadline, and a running syncer picks up on its own once
//!   the members are back.
//!
//! Children are this test binary re-executed with `--exact
//! fault_child_process` and a role in the environment; every child and
//! every etcd process is killed by PID when a test ends, even on failure.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tortie_datastore::sync::{SyncEvent, SyncStatus, Syncer, SyncerConfig};
use tortie_datastore::{
    Datastore, DatastoreError, DatastoreSpec, EtcdTimeouts, EventKind, Revision,
};
use tortie_testkit::{ChildReport, EtcdCluster, TestChildren, print_child_result};

const CHILD_TEST_NAME: &str = "fault_child_process";
const ROLE: &str = "TORTIE_FAULT_ROLE";
const SPEC: &str = "TORTIE_FAULT_SPEC";
const KEY: &str = "TORTIE_FAULT_KEY";
const WORKER: &str = "TORTIE_FAULT_WORKER";
const START: &str = "TORTIE_FAULT_START";
const DIR: &str = "TORTIE_FAULT_DIR";
const RESULT: &str = "FAULT-RESULT ";

/// Bound for a whole case.
const CASE_DEADLINE: Duration = Duration::from_secs(120);
/// Increments made before the kill and after the restart (a third of it
/// while the victim is down).
const PHASE_INCREMENTS: i64 = 150;
/// How long the victim stays down (at least).
const VICTIM_DOWNTIME: Duration = Duration::from_secs(2);

/// Does nothing unless started as a child by a case below.
#[test]
fn fault_child_process() -> Result<()> {
    let Ok(role) = std::env::var(ROLE) else {
        return Ok(());
    };
    // The backend's warnings (retries, resumed watches) go to stderr: shown
    // when a child fails, counted by the case when it succeeds.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let spec: DatastoreSpec = env(SPEC)?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the child runtime")?;
    let dir = PathBuf::from(env(DIR)?);
    let result = runtime.block_on(async {
        match role.as_str() {
            "cas" => cas_worker(&spec, &env(KEY)?, &env(WORKER)?, &dir).await,
            "watch" => counter_watcher(&spec, &env(KEY)?, env(START)?.parse()?, &dir).await,
            other => bail!("unknown child role {other:?}"),
        }
    })?;
    print_child_result(RESULT, &result);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_follower_loses_and_doubles_nothing() -> Result<()> {
    kill_member_under_load(Victim::Follower).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_and_doubles_nothing() -> Result<()> {
    kill_member_under_load(Victim::Leader).await
}

#[derive(Clone, Copy, Debug)]
enum Victim {
    Follower,
    Leader,
}

async fn kill_member_under_load(which: Victim) -> Result<()> {
    let started = Instant::now();
    let cluster = Arc::new(EtcdCluster::start(3)?);
    let leader = cluster.leader()?;
    let victim = match which {
        Victim::Leader => leader,
        Victim::Follower => (leader + 1) % 3,
    };
    let store = tortie_datastore::connect(&cluster.spec()).await?;
    let key = "/faults/counter".to_owned();
    let created = store.create(&key, b"0 init".to_vec()).await?;
    let dir = tempfile::tempdir()?;

    let everyone = DatastoreSpec::Etcd(cluster.config()).to_string();
    let victim_only =
        DatastoreSpec::Etcd(cluster.config_for(&[cluster.endpoint(victim)])).to_string();
    let mut children = TestChildren::new(CHILD_TEST_NAME, RESULT);
    for worker in 0..4 {
        let spec = if worker == 0 { &victim_only } else { &everyone };
        children.spawn(
            &format!("cas-{worker}"),
            &[
                (ROLE, "cas".to_owned()),
                (SPEC, spec.clone()),
                (KEY, key.clone()),
                (WORKER, worker.to_string()),
                (DIR, dir.path().display().to_string()),
            ],
        )?;
    }
    for watcher in 0..2 {
        let spec = if watcher == 0 {
            &victim_only
        } else {
            &everyone
        };
        children.spawn(
            &format!("watcher-{watcher}"),
            &[
                (ROLE, "watch".to_owned()),
                (SPEC, spec.clone()),
                (KEY, key.clone()),
                (START, (created + 1).to_string()),
                (DIR, dir.path().display().to_string()),
            ],
        )?;
    }

    let first = wait_for_count(store.as_ref(), &key, PHASE_INCREMENTS, &mut children).await?;
    let cluster_for_kill = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || cluster_for_kill.kill(victim)).await??;
    let killed_at = Instant::now();
    println!("{which:?} m{victim} killed at count {first}");
    // Writes must go on without the victim; it stays down for a while
    // (well inside the clients' 15 s deadline, which the writer and the
    // watcher that talk to it alone must ride out).
    let during = wait_for_count(
        store.as_ref(),
        &key,
        first + PHASE_INCREMENTS / 3,
        &mut children,
    )
    .await?;
    tokio::time::sleep(VICTIM_DOWNTIME.saturating_sub(killed_at.elapsed())).await;
    let cluster_for_restart = Arc::clone(&cluster);
    let restarting = Instant::now();
    tokio::task::spawn_blocking(move || cluster_for_restart.restart(victim)).await??;
    println!(
        "m{victim} back after {:?} (the restart took {:?}); {} increments made meanwhile",
        killed_at.elapsed(),
        restarting.elapsed(),
        during - first
    );
    let after = wait_for_count(
        store.as_ref(),
        &key,
        during + PHASE_INCREMENTS,
        &mut children,
    )
    .await?;
    std::fs::write(dir.path().join("stop"), b"")?;
    let writers = with_backend_log(
        children
            .wait_for(|name| name.starts_with("cas-"), CASE_DEADLINE)
            .await?,
    );
    let counter = store.get(&key).await?.context("the counter vanished")?;
    let final_count = count_of(&counter.value)?;
    let increments: i64 = writers
        .iter()
        .map(|(name, result)| field(result, "increments=").with_context(|| name.clone()))
        .sum::<Result<i64>>()?;
    for (name, result) in &writers {
        println!("{name}: {result}");
    }
    assert_eq!(
        final_count, increments,
        "the counter disagrees with the increments the writers saw succeed"
    );
    assert_eq!(counter.version, final_count + 1, "one write per increment");
    ensure!(final_count >= after, "the counter went backwards");

    std::fs::write(dir.path().join("target"), final_count.to_string())?;
    let watchers = with_backend_log(children.wait_all(CASE_DEADLINE).await?);
    for (name, result) in &watchers {
        println!("{name}: {result}");
        assert_eq!(
            field(result, "events=")?,
            final_count,
            "{name} did not see every increment"
        );
    }
    // The clients that talk to the victim only must have ridden out its
    // absence: the writer by retrying, the watcher by resuming.
    let find = |results: &[(String, String)], wanted: &str| {
        results
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, result)| result.clone())
            .with_context(|| format!("no result from {wanted}"))
    };
    ensure!(
        field(&find(&writers, "cas-0")?, "retries=")? > 0,
        "cas-0 never retried"
    );
    ensure!(
        field(&find(&watchers, "watcher-0")?, "resumed=")? > 0,
        "watcher-0 never resumed its watch"
    );
    println!("case took {:?}", started.elapsed());
    Ok(())
}

/// Polls the counter until it reaches `count`; fails early if a child dies.
async fn wait_for_count(
    store: &dyn Datastore,
    key: &str,
    count: i64,
    children: &mut TestChildren,
) -> Result<i64> {
    let deadline = Instant::now() + CASE_DEADLINE;
    loop {
        children.check_running()?;
        let current = count_of(&store.get(key).await?.context("counter")?.value)?;
        if current >= count {
            return Ok(current);
        }
        ensure!(
            Instant::now() < deadline,
            "the counter is stuck at {current} (waiting for {count})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// "<count> <writer>-<sequence>": the count, then what makes the bytes of
/// every write unique.
fn count_of(value: &[u8]) -> Result<i64> {
    let text = std::str::from_utf8(value)?;
    let count = text.split(' ').next().unwrap_or_default();
    count
        .parse()
        .with_context(|| format!("not a counter value: {text:?}"))
}

async fn cas_worker(spec: &DatastoreSpec, key: &str, worker: &str, dir: &Path) -> Result<String> {
    let store = tortie_datastore::connect(spec).await?;
    let stop = dir.join("stop");
    let (mut increments, mut conflicts, mut attempts) = (0_i64, 0_i64, 0_u64);
    let deadline = Instant::now() + CASE_DEADLINE;
    while !stop.exists() {
        ensure!(Instant::now() < deadline, "never told to stop");
        attempts += 1;
        let current = store.get(key).await?.context("the counter vanished")?;
        let next = count_of(&current.value)? + 1;
        let value = format!("{next} {worker}-{attempts}").into_bytes();
        match store.update(key, value, current.mod_revision).await {
            Ok(_) => increments += 1,
            Err(DatastoreError::Conflict { .. }) => conflicts += 1,
            Err(err) => return Err(err).context("incrementing"),
        }
    }
    Ok(format!(
        "increments={increments} conflicts={conflicts} attempts={attempts}"
    ))
}

async fn counter_watcher(
    spec: &DatastoreSpec,
    key: &str,
    start: Revision,
    dir: &Path,
) -> Result<String> {
    let store = tortie_datastore::connect(spec).await?;
    let mut watch = store.watch(key, start).await?;
    let target_file = dir.join("target");
    let deadline = Instant::now() + CASE_DEADLINE;
    let (mut last_count, mut last_revision, mut events) = (0, start - 1, 0);
    loop {
        if let Ok(target) = std::fs::read_to_string(&target_file)
            && target.trim().parse::<i64>().ok() == Some(last_count)
        {
            return Ok(format!("events={events} last_revision={last_revision}"));
        }
        ensure!(Instant::now() < deadline, "stuck at count {last_count}");
        let event = match tokio::time::timeout(Duration::from_millis(100), watch.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(event))) => event,
            Ok(other) => bail!("the watch failed after count {last_count}: {other:?}"),
        };
        ensure!(event.kind == EventKind::Put, "unexpected {event:?}");
        let count = count_of(event.value.as_deref().unwrap_or_default())?;
        ensure!(
            count == last_count + 1 && event.mod_revision > last_revision,
            "after count {last_count} at revision {last_revision} came count {count} at {}",
            event.mod_revision
        );
        (last_count, last_revision) = (count, event.mod_revision);
        events += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_under_a_watcher_and_a_syncer() -> Result<()> {
    let cluster = EtcdCluster::start(3)?;
    let store = tortie_datastore::connect(&cluster.spec()).await?;
    let prefix = "/compaction/".to_owned();
    for i in 0..50 {
        store
            .put(&format!("{prefix}static/{i}"), b"s".to_vec())
            .await?;
    }
    for i in 0..5 {
        store
            .put(&format!("{prefix}doomed/{i}"), b"d".to_vec())
            .await?;
    }
    let mut config = SyncerConfig::new([prefix.clone()]);
    config.channel_capacity = 8;
    config.min_resync_interval = Duration::from_millis(50);
    config.max_retry_interval = Duration::from_millis(200);
    let mut syncer = Syncer::start(Arc::clone(&store), config);
    let mut view = View::default();
    while view.in_sync_markers == 0 {
        view.apply(next_sync(&mut syncer).await?)?;
    }
    let watch_from = store.revision().await? + 1;
    let mut watch = store.watch(&prefix, watch_from).await?;

    // Neither the watcher nor the syncer's consumer reads while thousands
    // of writes land; then history is compacted past both.
    for i in 0..2_000 {
        store
            .put(
                &format!("{prefix}hot/{}", i % 10),
                i.to_string().into_bytes(),
            )
            .await?;
    }
    for i in 0..5 {
        store.delete(&format!("{prefix}doomed/{i}"), None).await?;
        store
            .create(&format!("{prefix}born/{i}"), b"b".to_vec())
            .await?;
    }
    let compacted_to = store.revision().await?;
    store.compact(compacted_to).await?;

    // Writes continue while both recover.
    let writer_store = Arc::clone(&store);
    let writer_prefix = prefix.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            writer_store
                .put(
                    &format!("{writer_prefix}hot/{}", i % 10),
                    format!("late-{i}").into_bytes(),
                )
                .await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::Ok(())
    });

    // The watcher: a gap-free prefix of the history, then Compacted.
    let mut expected = watch_from;
    let compacted = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(event))) => {
                assert_eq!(event.mod_revision, expected, "a gap or a repeat");
                expected += 1;
            }
            Ok(Some(Err(err))) => break err,
            other => bail!("the watch neither failed nor went on: {other:?}"),
        }
    };
    match compacted {
        DatastoreError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, expected);
            assert_eq!(compacted, compacted_to);
        }
        other => bail!("expected Compacted, got {other:?}"),
    }
    assert!(watch.next().await.is_none(), "the watch ended");
    println!(
        "the watcher got {} events, then Compacted at {expected}",
        expected - watch_from
    );

    // The syncer: re-lists and converges on exactly the store's contents.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if writer.is_finished() && view.matches(store.as_ref(), &prefix).await? {
            break;
        }
        ensure!(Instant::now() < deadline, "the syncer never caught up");
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(50), syncer.next()).await {
            view.apply(event.context("the syncer stopped")?)?;
        }
    }
    writer.await??;
    // A deletion found by a re-list carries the list's revision; the
    // deletes themselves happened before the compaction.
    ensure!(
        view.deletions
            .iter()
            .any(|(key, revision)| key.contains("/doomed/") && *revision >= compacted_to),
        "the syncer converged without a re-list: the compaction went unnoticed ({:?})",
        view.deletions
    );
    assert_eq!(*syncer.status().borrow(), SyncStatus::InSync);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_down_then_back() -> Result<()> {
    let cluster = Arc::new(EtcdCluster::start(3)?);
    let mut config = cluster.config();
    config.timeouts = EtcdTimeouts {
        dial: Duration::from_millis(500),
        request: Duration::from_secs(1),
        overall: Duration::from_secs(3),
        ..EtcdTimeouts::default()
    };
    let store = tortie_datastore::connect(&DatastoreSpec::Etcd(config.clone())).await?;
    let prefix = "/outage/".to_owned();
    for i in 0..10 {
        store
            .put(&format!("{prefix}{i}"), b"before".to_vec())
            .await?;
    }
    let mut sync_config = SyncerConfig::new([prefix.clone()]);
    sync_config.min_resync_interval = Duration::from_millis(100);
    sync_config.max_retry_interval = Duration::from_millis(500);
    let mut syncer = Syncer::start(Arc::clone(&store), sync_config);
    let mut status = syncer.status();
    let mut view = View::default();
    while view.in_sync_markers == 0 {
        view.apply(next_sync(&mut syncer).await?)?;
    }

    let stopper = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || stopper.stop_all()).await??;
    let started = Instant::now();
    let err = store
        .get(&format!("{prefix}0"))
        .await
        .err()
        .context("a get succeeded with every member down")?;
    let took = started.elapsed();
    println!("with every member down a get failed after {took:?}: {err}");
    let message = err.to_string();
    let endpoints = cluster.endpoints().join(",");
    ensure!(
        message.starts_with(&format!("cannot reach etcd at {endpoints}: ")),
        "{message}"
    );
    ensure!(
        took <= config.timeouts.overall + Duration::from_millis(500),
        "failing took {took:?}, the deadline is {:?}",
        config.timeouts.overall
    );

    // The syncer notices: its watch gives up, its re-lists fail.
    tokio::time::timeout(
        Duration::from_secs(15),
        status.wait_for(|status| *status == SyncStatus::WaitForDatastore),
    )
    .await
    .context("the syncer never reported the outage")??;

    let starter = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || starter.start_all()).await??;
    let changed = store.put(&format!("{prefix}0"), b"after".to_vec()).await?;
    store.delete(&format!("{prefix}1"), None).await?;
    store
        .create(&format!("{prefix}new"), b"new".to_vec())
        .await?;

    let deadline = Instant::now() + Duration::from_secs(30);
    while !view.matches(store.as_ref(), &prefix).await? {
        ensure!(Instant::now() < deadline, "the syncer never caught up");
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(50), syncer.next()).await {
            view.apply(event.context("the syncer stopped")?)?;
        }
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|status| *status == SyncStatus::InSync),
    )
    .await
    .context("the syncer never got back in sync")??;
    assert_eq!(
        view.values.get(&format!("{prefix}0")),
        Some(&(b"after".to_vec(), changed))
    );
    // And it keeps following live writes.
    let live = store
        .put(&format!("{prefix}live"), b"live".to_vec())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while view.values.get(&format!("{prefix}live")) != Some(&(b"live".to_vec(), live)) {
        ensure!(Instant::now() < deadline, "a live write never arrived");
        view.apply(next_sync(&mut syncer).await?)?;
    }
    Ok(())
}

/// What a syncer's consumer has been told, checked as it is told.
#[derive(Default)]
struct View {
    values: BTreeMap<String, (Vec<u8>, Revision)>,
    last_revision: HashMap<String, Revision>,
    in_sync_markers: usize,
    /// Every deletion with the revision it carried.
    deletions: Vec<(String, Revision)>,
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
                match value {
                    Some(value) => {
                        self.values.insert(key, (value, revision));
                    }
                    None => {
                        self.values.remove(&key);
                        self.deletions.push((key, revision));
                    }
                }
            }
        }
        Ok(())
    }

    async fn matches(&self, store: &dyn Datastore, prefix: &str) -> Result<bool> {
        let expected: BTreeMap<String, (Vec<u8>, Revision)> = store
            .list(prefix)
            .await?
            .items
            .into_iter()
            .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
            .collect();
        Ok(expected == self.values)
    }
}

async fn next_sync(syncer: &mut Syncer) -> Result<SyncEvent> {
    tokio::time::timeout(Duration::from_secs(10), syncer.next())
        .await
        .context("no syncer event in time")?
        .context("the syncer stopped")
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("child variable {name}"))
}

/// The number after `name` in a child's result line.
fn field(result: &str, name: &str) -> Result<i64> {
    result
        .split_whitespace()
        .find_map(|part| part.strip_prefix(name))
        .with_context(|| format!("no {name} in {result:?}"))?
        .parse()
        .with_context(|| format!("{name} in {result:?}"))
}

/// The children's results, each followed by what the backend logged to
/// its stderr: how often it retried a call and resumed a watch.
fn with_backend_log(reports: Vec<ChildReport>) -> Vec<(String, String)> {
    reports
        .into_iter()
        .map(|r| {
            let count = |what: &str| r.stderr.lines().filter(|l| l.contains(what)).count();
            let result = format!(
                "{} retries={} resumed={}",
                r.result,
                count("retrying"),
                count("watch resumed")
            );
            (r.name, result)
        })
        .collect()
}
