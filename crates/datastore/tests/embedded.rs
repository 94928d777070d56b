//! The conformance suite on the embedded backend (fresh files on /dev/shm
//! when available, or under `TORTIE_TEST_DIR`), plus what only the embedded
//! backend has: file and directory creation, schema versioning, automatic
//! compaction, many simultaneous first opens, and error messages naming
//! the file.

#[macro_use]
mod conformance;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;
use tortie_datastore::embedded::{EmbeddedDatastore, EmbeddedOptions};
use tortie_datastore::{Datastore, DatastoreError, DatastoreSpec};

use conformance::Target;

/// A scratch directory under `TORTIE_TEST_DIR` if set (e.g. a disk-backed
/// directory, to run with real fsyncs), else /dev/shm, else the temp dir.
fn scratch_dir() -> Result<TempDir> {
    let shm = Path::new("/dev/shm");
    let base = match std::env::var_os("TORTIE_TEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None if shm.is_dir() => shm.to_path_buf(),
        None => std::env::temp_dir(),
    };
    tempfile::Builder::new()
        .prefix("tortie-datastore-test-")
        .tempdir_in(base)
        .context("creating a scratch directory")
}

/// A fresh store in a directory that does not exist yet.
fn embedded_target() -> Result<(TempDir, Target)> {
    let dir = scratch_dir()?;
    let spec = DatastoreSpec::Embedded {
        path: dir.path().join("state/datastore.db"),
    };
    Ok((
        dir,
        Target {
            spec,
            root: "/conformance/".to_owned(),
        },
    ))
}

conformance_tests!(embedded_target);

async fn open(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedDatastore> {
    EmbeddedDatastore::open(path, options)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

#[tokio::test]
async fn describe_and_connect_use_the_spec_form() -> Result<()> {
    let dir = scratch_dir()?;
    let path = dir.path().join("nested/deeper/ds.db");
    let spec: DatastoreSpec = format!("embedded:{}", path.display()).parse()?;
    let store = tortie_datastore::connect(&spec).await?;
    assert_eq!(store.describe(), spec.to_string());
    ensure!(path.is_file(), "the file and its directories were created");
    assert_eq!(
        store.revision().await?,
        1,
        "an empty store is at revision 1"
    );
    Ok(())
}

#[tokio::test]
async fn status_reports_sqlite_and_revisions() -> Result<()> {
    let (_dir, target) = embedded_target()?;
    let store = target.connect().await?;
    for i in 0..5 {
        store.put("/status/k", vec![i]).await?;
    }
    store.compact(4).await?;
    let status = store.status().await?;
    assert_eq!(status.kind, tortie_datastore::BackendKind::Embedded);
    assert_eq!(status.location, target.spec.to_string());
    assert_eq!((status.revision, status.compacted_revision), (6, Some(4)));
    ensure!(
        status.server_version.starts_with("SQLite 3.")
            && status.server_version.ends_with(", schema 1"),
        "{}",
        status.server_version
    );
    ensure!(status.members.is_empty());
    Ok(())
}

#[tokio::test]
async fn unopenable_paths_are_unavailable_and_named() -> Result<()> {
    let dir = scratch_dir()?;
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"")?;
    let path = blocker.join("ds.db");
    match EmbeddedDatastore::open(&path, EmbeddedOptions::default()).await {
        Err(err @ DatastoreError::Unavailable { .. }) => {
            let message = err.to_string();
            ensure!(
                message.starts_with(&format!("cannot reach embedded:{}", path.display())),
                "{message}"
            );
        }
        Err(other) => anyhow::bail!("expected Unavailable, got {other:?}"),
        Ok(_) => anyhow::bail!("opened a file under a regular file"),
    }
    Ok(())
}

#[tokio::test]
async fn files_from_a_newer_tortie_are_refused() -> Result<()> {
    let dir = scratch_dir()?;
    let path = dir.path().join("ds.db");
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.pragma_update(None, "user_version", 99)?;
    }
    let message = match EmbeddedDatastore::open(&path, EmbeddedOptions::default()).await {
        Err(err @ DatastoreError::InvalidConfig(_)) => err.to_string(),
        Err(other) => anyhow::bail!("expected InvalidConfig, got {other:?}"),
        Ok(_) => anyhow::bail!("opened a newer schema"),
    };
    ensure!(message.contains(&path.display().to_string()), "{message}");
    ensure!(message.contains("newer tortie"), "{message}");
    Ok(())
}

#[tokio::test]
async fn invalid_options_are_rejected() -> Result<()> {
    let dir = scratch_dir()?;
    let path = dir.path().join("ds.db");
    for options in [
        EmbeddedOptions {
            retain_revisions: 0,
            ..EmbeddedOptions::default()
        },
        EmbeddedOptions {
            poll_interval: Duration::ZERO,
            ..EmbeddedOptions::default()
        },
    ] {
        let result = EmbeddedDatastore::open(&path, options).await;
        ensure!(
            matches!(result, Err(DatastoreError::InvalidConfig(_))),
            "accepted invalid options"
        );
    }
    Ok(())
}

#[tokio::test]
async fn history_is_compacted_automatically() -> Result<()> {
    let dir = scratch_dir()?;
    let path = dir.path().join("ds.db");
    let retain = 20;
    let options = EmbeddedOptions {
        retain_revisions: retain,
        ..EmbeddedOptions::default()
    };
    let store = open(&path, options).await?;
    for i in 0..200 {
        store
            .put(&format!("/auto/{}", i % 5), i.to_string().into_bytes())
            .await?;
    }
    let current = store.revision().await?;
    conformance::expect_compacted(&store, "/auto/", 1).await?;

    // The newest `retain` revisions are always kept...
    let start = current - retain + 1;
    let mut watch = store.watch("/auto/", start).await?;
    for revision in start..=current {
        assert_eq!(
            conformance::next_event(&mut watch).await?.mod_revision,
            revision
        );
    }
    // ...and the log never holds much more than that.
    let conn = rusqlite::Connection::open(&path)?;
    let held: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    ensure!(
        (retain..=retain + retain / 10 + 1).contains(&held),
        "{held} events held"
    );
    assert_eq!(store.list("/auto/").await?.items.len(), 5);
    Ok(())
}

#[test]
fn simultaneous_first_opens_from_threads() -> Result<()> {
    let dir = scratch_dir()?;
    let path: PathBuf = dir.path().join("fresh/ds.db");
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let store = open(&path, EmbeddedOptions::default()).await?;
                    store.create(&format!("/first/{i}"), b"x".to_vec()).await?;
                    anyhow::Ok(())
                })
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("opener thread panicked"))??;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = open(&path, EmbeddedOptions::default()).await?;
        assert_eq!(store.list("/first/").await?.items.len(), 16);
        assert_eq!(store.revision().await?, 17);
        anyhow::Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_another_instance_arrive_within_the_poll_interval() -> Result<()> {
    let dir = scratch_dir()?;
    let path = dir.path().join("ds.db");
    let options = EmbeddedOptions::default();
    let watcher = open(&path, options.clone()).await?;
    let writer: Arc<dyn Datastore> = Arc::new(open(&path, options).await?);
    let mut watch = watcher
        .watch("/lat/", watcher.revision().await? + 1)
        .await?;
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        writer.put("/lat/k", i.to_string().into_bytes()).await?;
        conformance::next_event(&mut watch).await?;
        worst = worst.max(started.elapsed());
    }
    println!("worst write-to-event latency across instances: {worst:?}");
    ensure!(worst < Duration::from_millis(250), "latency {worst:?}");
    Ok(())
}

#[tokio::test]
async fn another_instances_commit_wakes_the_watch_before_its_poll_tick() -> Result<()> {
    let dir = scratch_dir()?;
    let path = dir.path().join("ds.db");
    // A poll tick far beyond the wait below: only the wake-up on the WAL
    // can deliver the event in time.
    let slow = EmbeddedOptions {
        poll_interval: Duration::from_secs(600),
        ..EmbeddedOptions::default()
    };
    let watching = open(&path, slow).await?;
    let writer = open(&path, EmbeddedOptions::default()).await?;
    let first = writer.put("/wake/a", b"1".to_vec()).await?;
    let mut watch = watching.watch("/wake/", first + 1).await?;
    // Let the poller take its first look, which sets the wake-up up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.put("/wake/b", b"2".to_vec()).await?;
    let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .context("the commit did not wake the watch before its 600 s poll tick")?
        .context("the watch ended")??;
    ensure!(event.key == "/wake/b", "unexpected event {event:?}");
    Ok(())
}
