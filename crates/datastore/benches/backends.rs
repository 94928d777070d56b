//! The backends side by side, measured in one run: compare-and-swap
//! updates per second and the latency from a write to its watch event,
//! each with 1 and with 8 concurrent writers, on the embedded store, a
//! one-member etcd and a three-member etcd. Prints a table with each
//! figure's ratio to the embedded one.
//!
//! Run: `cargo bench -p tortie-datastore --bench backends`. Everything
//! lives on /dev/shm (the embedded file and etcd's data), so the figures
//! compare the backends' own costs (IPC, gRPC, raft, MVCC), not disks.
//! Writers are tasks sharing one client, each on its own key; the
//! latency watcher is a second client. `TORTIE_BENCH_SECONDS` sets the
//! time per throughput figure (default 3).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tortie_datastore::{Datastore, DatastoreSpec};
use tortie_testkit::EtcdCluster;

/// Writes per writer in a latency run.
const LATENCY_WRITES: usize = 300;
const WRITERS: usize = 8;

struct Figures {
    name: String,
    cas_1: f64,
    cas_8: f64,
    latency_1: (Duration, Duration),
    latency_8: (Duration, Duration),
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let seconds: u64 = std::env::var("TORTIE_BENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3);
    let duration = Duration::from_secs(seconds);

    let mut results = Vec::new();
    let scratch = tempfile::Builder::new()
        .prefix("tortie-bench-backends-")
        .tempdir_in(shm())?;
    let embedded = DatastoreSpec::Embedded {
        path: scratch.path().join("bench.db"),
    };
    eprintln!("measuring embedded ...");
    results.push(runtime.block_on(measure("embedded", &embedded, duration))?);
    for members in [1, 3] {
        let name = if members == 1 {
            "etcd, 1 member".to_owned()
        } else {
            format!("etcd, {members} members")
        };
        eprintln!("measuring {name} ...");
        match EtcdCluster::start(members) {
            Ok(cluster) => {
                results.push(runtime.block_on(measure(&name, &cluster.spec(), duration))?);
            }
            Err(err) => eprintln!("skipping {name}: {err:#}"),
        }
    }
    print_table(&results);
    Ok(())
}

fn shm() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

async fn measure(name: &str, spec: &DatastoreSpec, duration: Duration) -> Result<Figures> {
    let store = tortie_datastore::connect(spec).await?;
    let watcher = tortie_datastore::connect(spec).await?;
    Ok(Figures {
        name: name.to_owned(),
        cas_1: cas_rate(&store, 1, duration).await?,
        cas_8: cas_rate(&store, WRITERS, duration).await?,
        latency_1: watch_latency(&store, &watcher, 1).await?,
        latency_8: watch_latency(&store, &watcher, WRITERS).await?,
    })
}

/// Compare-and-swap updates per second, `writers` tasks each updating its
/// own key with the revision its previous update returned.
async fn cas_rate(store: &Arc<dyn Datastore>, writers: usize, duration: Duration) -> Result<f64> {
    let value = resource();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(store);
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/bench/cas/{writers}/{writer}");
            let mut revision = store.put(&key, value.clone()).await?;
            // Warm up, then count.
            for _ in 0..20 {
                revision = store.update(&key, value.clone(), revision).await?;
            }
            let started = Instant::now();
            let mut updates = 0u64;
            while started.elapsed() < duration {
                revision = store.update(&key, value.clone(), revision).await?;
                updates += 1;
            }
            anyhow::Ok((updates, started.elapsed()))
        }));
    }
    let mut total = 0.0;
    for task in tasks {
        let (updates, elapsed) = task.await??;
        total += updates as f64 / elapsed.as_secs_f64();
    }
    Ok(total)
}

/// Median and 99th percentile from a write's start to its watch event
/// arriving at another client, with `writers` writers writing at once.
async fn watch_latency(
    store: &Arc<dyn Datastore>,
    watcher: &Arc<dyn Datastore>,
    writers: usize,
) -> Result<(Duration, Duration)> {
    let prefix = format!("/bench/watch/{writers}/");
    let mut watch = watcher
        .watch(&prefix, watcher.revision().await? + 1)
        .await?;
    let sent: Arc<Mutex<HashMap<Vec<u8>, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(store);
        let sent = Arc::clone(&sent);
        let key = format!("{prefix}{writer}");
        tasks.push(tokio::spawn(async move {
            for write in 0..LATENCY_WRITES {
                let value = format!("{writer}-{write}").into_bytes();
                sent.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(value.clone(), Instant::now());
                store.put(&key, value).await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut latencies = Vec::with_capacity(writers * LATENCY_WRITES);
    while latencies.len() < writers * LATENCY_WRITES {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .context("no watch event within 30 s")?
            .context("the watch ended")??;
        let arrived = Instant::now();
        let value = event.value.context("a put without a value")?;
        let started = sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&value)
            .context("an event for a write never made")?;
        latencies.push(arrived - started);
    }
    for task in tasks {
        task.await??;
    }
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    Ok((percentile(50), percentile(99)))
}

/// A WorkloadEndpoint-sized value (~600 bytes).
fn resource() -> Vec<u8> {
    let mut value = br#"{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{"name":"node--1-k8s-pod-eth0","namespace":"default"},"spec":{"#.to_vec();
    value.resize(600, b' ');
    value.extend_from_slice(b"}}");
    value
}

fn print_table(results: &[Figures]) {
    let Some(base) = results.first() else {
        return;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "Datastore backends, side by side; (n.nnx) = figure / embedded figure \
         (throughput: higher is better; latency p50: lower is better)"
    );
    println!(
        "{:<18} {:>20} {:>20} {:>26} {:>26}",
        "backend",
        "CAS/s, 1 writer",
        "CAS/s, 8 writers",
        "watch p50/p99, 1 writer",
        "watch p50/p99, 8 writers"
    );
    for figures in results {
        let rate = |value: f64, base: f64| format!("{value:>9.0} ({:>5.2}x)", value / base);
        let latency = |(p50, p99): (Duration, Duration), (base50, _): (Duration, Duration)| {
            format!(
                "{:>6.2}/{:>6.2} ms ({:>5.1}x)",
                ms(p50),
                ms(p99),
                ms(p50) / ms(base50)
            )
        };
        println!(
            "{:<18} {:>20} {:>20} {:>26} {:>26}",
            figures.name,
            rate(figures.cas_1, base.cas_1),
            rate(figures.cas_8, base.cas_8),
            latency(figures.latency_1, base.latency_1),
            latency(figures.latency_8, base.latency_8),
        );
    }
}
