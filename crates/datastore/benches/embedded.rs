//! Embedded backend benchmarks: compare-and-swap updates per second (one
//! writer; same key and distinct keys), listing 10,000 realistic resources,
//! and the latency from a write to its watch event (same instance, and
//! another instance on the same file, which is the cross-process path).
//!
//! Each group also measures a baseline in the same run: the same work done
//! with raw SQLite statements on an identically configured file (WAL,
//! `synchronous=FULL`), so the figures read as the cost of revisions, the
//! event log and the async boundary on top of SQLite itself.
//!
//! Files go to a scratch directory under /dev/shm (no fsync cost) unless
//! `TORTIE_BENCH_DIR` names another base directory, e.g. a disk-backed one
//! to measure the price of `synchronous=FULL`. Scratch files are removed
//! when each benchmark ends.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tortie_datastore::Datastore;
use tortie_datastore::embedded::{EmbeddedDatastore, EmbeddedOptions};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the benchmarks")
}

fn scratch() -> TempDir {
    let base = std::env::var_os("TORTIE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    tempfile::Builder::new()
        .prefix("tortie-datastore-bench-")
        .tempdir_in(base)
        .expect("a scratch directory for benchmark files")
}

fn open(rt: &Runtime, path: &Path) -> EmbeddedDatastore {
    rt.block_on(EmbeddedDatastore::open(path, EmbeddedOptions::default()))
        .expect("opening the benchmark datastore")
}

/// A WorkloadEndpoint-like JSON value of about 600 bytes.
fn resource(i: usize) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{{"name":"node--1-k8s-pod{i:05}-eth0","namespace":"default","uid":"3f0c9a52-5b1e-4c8e-9d7a-{i:012}","creationTimestamp":"2024-05-01T10:00:00Z","labels":{{"app":"web","projectcalico.org/namespace":"default","projectcalico.org/orchestrator":"k8s","projectcalico.org/serviceaccount":"default"}}}},"spec":{{"orchestrator":"k8s","node":"node-1","containerID":"a1b2c3d4e5f6{i:08}","pod":"pod{i:05}","endpoint":"eth0","serviceAccountName":"default","ipNetworks":["10.65.{}.{}/32"],"profiles":["kns.default","ksa.default.default"],"interfaceName":"cali{i:011}","mac":"ee:ee:ee:ee:ee:ee"}}}}"#,
        i / 256,
        i % 256
    )
    .into_bytes()
}

/// A plain SQLite table configured like the embedded backend's file.
fn raw_sqlite(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("opening the baseline file");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB, rev INTEGER);",
    )
    .expect("configuring the baseline file");
    conn
}

fn cas_updates(c: &mut Criterion) {
    let rt = runtime();
    let dir = scratch();
    let store = open(&rt, &dir.path().join("cas.db"));
    let value = resource(1);
    let mut group = c.benchmark_group("cas_update");
    group.throughput(Throughput::Elements(1));

    let mut revision = rt
        .block_on(store.create("/bench/same", value.clone()))
        .expect("creating the key");
    group.bench_function("same_key", |b| {
        b.iter(|| {
            revision = rt
                .block_on(store.update("/bench/same", value.clone(), revision))
                .expect("a single writer never conflicts");
        })
    });

    let keys: Vec<String> = (0..1_000)
        .map(|i| format!("/bench/distinct/{i:04}"))
        .collect();
    let mut revisions: Vec<i64> = keys
        .iter()
        .map(|key| {
            rt.block_on(store.create(key, value.clone()))
                .expect("creating the keys")
        })
        .collect();
    let mut next = 0;
    group.bench_function("distinct_keys", |b| {
        b.iter(|| {
            let index = next % keys.len();
            next += 1;
            revisions[index] = rt
                .block_on(store.update(&keys[index], value.clone(), revisions[index]))
                .expect("a single writer never conflicts");
        })
    });
    let mut raw = raw_sqlite(&dir.path().join("raw.db"));
    raw.execute("INSERT INTO t VALUES ('/bench/same', ?1, 1)", [&value])
        .expect("baseline row");
    let mut raw_rev: i64 = 1;
    group.bench_function("baseline_raw_sqlite_cas", |b| {
        b.iter(|| {
            let tx = raw
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .expect("begin");
            let updated = tx
                .execute(
                    "UPDATE t SET v = ?1, rev = ?2 + 1 WHERE k = '/bench/same' AND rev = ?2",
                    rusqlite::params![&value, raw_rev],
                )
                .expect("update");
            tx.commit().expect("commit");
            assert_eq!(updated, 1, "a single writer never conflicts");
            raw_rev += 1;
        })
    });
    group.finish();
}

fn list_10k(c: &mut Criterion) {
    let rt = runtime();
    let dir = scratch();
    let store = open(&rt, &dir.path().join("list.db"));
    let prefix = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/";
    for i in 0..10_000 {
        rt.block_on(store.create(&format!("{prefix}node--1-k8s-pod{i:05}-eth0"), resource(i)))
            .expect("populating");
    }
    // Neighbouring keys the list must skip.
    for i in 0..1_000 {
        rt.block_on(store.create(
            &format!("/calico/resources/v3/projectcalico.org/networkpolicies/default/p{i}"),
            resource(i),
        ))
        .expect("populating");
    }
    let mut group = c.benchmark_group("list");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("10k_resources_600B", |b| {
        b.iter(|| {
            let list = rt.block_on(store.list(prefix)).expect("listing");
            assert_eq!(list.items.len(), 10_000);
            black_box(list)
        })
    });
    let mut raw = raw_sqlite(&dir.path().join("raw-list.db"));
    let tx = raw.transaction().expect("begin");
    for i in 0..10_000 {
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            rusqlite::params![
                format!("{prefix}node--1-k8s-pod{i:05}-eth0"),
                resource(i),
                i as i64
            ],
        )
        .expect("populating the baseline");
    }
    tx.commit().expect("commit");
    let end = format!("{}0", &prefix[..prefix.len() - 1]);
    group.bench_function("baseline_raw_sqlite_select", |b| {
        b.iter(|| {
            let mut stmt = raw
                .prepare_cached("SELECT k, v, rev FROM t WHERE k >= ?1 AND k < ?2 ORDER BY k")
                .expect("prepare");
            let rows: Vec<(String, Vec<u8>, i64)> = stmt
                .query_map([prefix, end.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            assert_eq!(rows.len(), 10_000);
            black_box(rows)
        })
    });
    group.finish();
}

fn watch_latency(c: &mut Criterion) {
    let rt = runtime();
    let dir = scratch();
    let path = dir.path().join("watch.db");
    let watcher = open(&rt, &path);
    let other_writer = open(&rt, &path);
    let mut group = c.benchmark_group("write_to_watch_event");
    for (name, writer) in [
        ("same_instance", &watcher),
        ("other_instance", &other_writer),
    ] {
        let start = rt.block_on(watcher.revision()).expect("revision") + 1;
        let mut watch = rt
            .block_on(watcher.watch("/lat/", start))
            .expect("starting the watch");
        let value = resource(7);
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    rt.block_on(async {
                        writer.put("/lat/k", value.clone()).await.expect("writing");
                        watch
                            .next()
                            .await
                            .expect("the watch is open")
                            .expect("no watch error")
                    });
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cas_updates, list_10k, watch_latency);
criterion_main!(benches);
