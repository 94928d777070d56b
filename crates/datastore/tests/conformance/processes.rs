//! Cases with real OS processes sharing one store: compare-and-swap
//! increments that must never be lost, a watcher in yet another process
//! that must see every increment in order, and many processes using a
//! store for the first time at the same instant.
//!
//! Children are this test binary re-executed with `--exact
//! conformance_child_process` and a role in the environment. Every child
//! is waited for with a deadline and killed by PID if the case fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use tortie_datastore::{Datastore, DatastoreError, DatastoreSpec, EventKind};
use tortie_testkit::{TestChildren, print_child_result};

use super::Target;

/// The name of the test that runs a child role (see `conformance_tests!`).
const CHILD_TEST_NAME: &str = "conformance_child_process";
const ROLE: &str = "TORTIE_CONFORMANCE_ROLE";
const SPEC: &str = "TORTIE_CONFORMANCE_SPEC";
const KEY: &str = "TORTIE_CONFORMANCE_KEY";
const COUNT: &str = "TORTIE_CONFORMANCE_COUNT";
const START: &str = "TORTIE_CONFORMANCE_START";
const SHARED_KEY: &str = "TORTIE_CONFORMANCE_SHARED_KEY";
const RESULT: &str = "CONFORMANCE-RESULT ";

/// Upper bound for a whole multi-process case.
const CHILD_DEADLINE: Duration = Duration::from_secs(180);

const WORKERS: usize = 8;
const INCREMENTS: i64 = 200;
const FIRST_USERS: usize = 16;
const FIRST_USE_INCREMENTS: i64 = 5;

pub async fn cas_increments_across_processes(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("counter");
    let created = store.create(&key, b"0".to_vec()).await?;
    let total = WORKERS as i64 * INCREMENTS;
    let spec = t.spec.to_string();

    let mut children = TestChildren::new(CHILD_TEST_NAME, RESULT);
    children.spawn(
        "watcher",
        &[
            (ROLE, "watch".to_owned()),
            (SPEC, spec.clone()),
            (KEY, key.clone()),
            (COUNT, total.to_string()),
            (START, (created + 1).to_string()),
        ],
    )?;
    for worker in 0..WORKERS {
        children.spawn(
            &format!("cas-{worker}"),
            &[
                (ROLE, "cas".to_owned()),
                (SPEC, spec.clone()),
                (KEY, key.clone()),
                (COUNT, INCREMENTS.to_string()),
            ],
        )?;
    }
    let reports = children.wait_all(CHILD_DEADLINE).await?;
    for r in &reports {
        println!("{}: {}", r.name, r.result);
    }
    let watcher = reports
        .iter()
        .find(|r| r.name == "watcher")
        .context("watcher result")?;
    ensure!(
        watcher.result.contains(&format!("events={total} ")),
        "watcher saw {}",
        watcher.result
    );
    let counter = store.get(&key).await?.context("counter")?;
    assert_eq!(counter.value, total.to_string().into_bytes());
    assert_eq!(counter.version, total + 1);
    Ok(())
}

pub async fn concurrent_first_use_from_processes(t: &Target) -> Result<()> {
    // Nothing in this process touches the store first: every child opens it
    // for the first time at the same instant, creates its own key and
    // increments a shared counter a few times, like short-lived CNI
    // plugin invocations.
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        + Duration::from_millis(700);
    let mut children = TestChildren::new(CHILD_TEST_NAME, RESULT);
    for user in 0..FIRST_USERS {
        children.spawn(
            &format!("first-{user}"),
            &[
                (ROLE, "first-use".to_owned()),
                (SPEC, t.spec.to_string()),
                (KEY, t.key(&format!("first/{user}"))),
                (SHARED_KEY, t.key("first-counter")),
                (COUNT, FIRST_USE_INCREMENTS.to_string()),
                (START, at.as_millis().to_string()),
            ],
        )?;
    }
    children.wait_all(CHILD_DEADLINE).await?;
    let store = t.connect().await?;
    let list = store.list(&t.key("first/")).await?;
    assert_eq!(list.items.len(), FIRST_USERS);
    let counter = store
        .get(&t.key("first-counter"))
        .await?
        .context("counter")?;
    let expected = FIRST_USERS as i64 * FIRST_USE_INCREMENTS;
    assert_eq!(counter.value, expected.to_string().into_bytes());
    Ok(())
}

/// Runs a child role if this process was started as a child; otherwise
/// does nothing.
pub fn child_entry() -> Result<()> {
    let Ok(role) = std::env::var(ROLE) else {
        return Ok(());
    };
    let spec: DatastoreSpec = env(SPEC)?.parse()?;
    // The CLI and the CNI plugin use a current_thread runtime: so do we.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the child runtime")?;
    let result = runtime.block_on(async {
        match role.as_str() {
            "cas" => cas_worker(&spec, &env(KEY)?, env_i64(COUNT)?).await,
            "watch" => counter_watcher(&spec, &env(KEY)?, env_i64(START)?, env_i64(COUNT)?).await,
            "first-use" => {
                first_use(
                    &spec,
                    &env(KEY)?,
                    &env(SHARED_KEY)?,
                    env_i64(COUNT)?,
                    env_i64(START)?,
                )
                .await
            }
            other => bail!("unknown child role {other:?}"),
        }
    })?;
    print_child_result(RESULT, &result);
    Ok(())
}

async fn cas_worker(spec: &DatastoreSpec, key: &str, count: i64) -> Result<String> {
    let store = tortie_datastore::connect(spec).await?;
    let conflicts = increment(store.as_ref(), key, count).await?;
    Ok(format!("increments={count} conflicts={conflicts}"))
}

/// Adds `count` to a decimal counter by compare-and-swap; returns how many
/// conflicts it retried.
async fn increment(store: &dyn Datastore, key: &str, count: i64) -> Result<i64> {
    let (mut done, mut conflicts) = (0, 0);
    let max_attempts = count * 1_000;
    for _ in 0..max_attempts {
        if done == count {
            return Ok(conflicts);
        }
        let current = store.get(key).await?.context("the counter vanished")?;
        let value: i64 = std::str::from_utf8(&current.value)?.parse()?;
        let next = (value + 1).to_string().into_bytes();
        match store.update(key, next, current.mod_revision).await {
            Ok(_) => done += 1,
            Err(DatastoreError::Conflict { .. }) => conflicts += 1,
            Err(err) => return Err(err).context("increment"),
        }
    }
    bail!("only {done} of {count} increments after {max_attempts} attempts")
}

async fn counter_watcher(
    spec: &DatastoreSpec,
    key: &str,
    start: i64,
    count: i64,
) -> Result<String> {
    let store = tortie_datastore::connect(spec).await?;
    let mut watch = store.watch(key, start).await?;
    let deadline = tokio::time::Instant::now() + CHILD_DEADLINE;
    let mut last_revision = start - 1;
    for expected in 1..=count {
        let event = match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(Ok(event))) => event,
            other => bail!("waiting for value {expected}: {other:?}"),
        };
        ensure!(event.kind == EventKind::Put, "unexpected {event:?}");
        ensure!(
            event.mod_revision > last_revision,
            "out of order: {event:?}"
        );
        let value: i64 =
            std::str::from_utf8(event.value.as_deref().unwrap_or_default())?.parse()?;
        ensure!(
            value == expected,
            "expected value {expected}, got {value} at {}",
            event.mod_revision
        );
        last_revision = event.mod_revision;
    }
    Ok(format!("events={count} last_revision={last_revision}"))
}

async fn first_use(
    spec: &DatastoreSpec,
    key: &str,
    counter: &str,
    increments: i64,
    at_unix_ms: i64,
) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let wait = u64::try_from(i128::from(at_unix_ms) - now as i128).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait.min(5_000))).await;
    let store = tortie_datastore::connect(spec).await?;
    let revision = store.create(key, b"here".to_vec()).await?;
    match store.create(counter, b"0".to_vec()).await {
        Ok(_) | Err(DatastoreError::AlreadyExists { .. }) => {}
        Err(err) => return Err(err).context("creating the shared counter"),
    }
    let conflicts = increment(store.as_ref(), counter, increments).await?;
    Ok(format!("created={revision} conflicts={conflicts}"))
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("child variable {name}"))
}

fn env_i64(name: &str) -> Result<i64> {
    env(name)?
        .parse()
        .with_context(|| format!("child variable {name}"))
}
