//! IPAM benchmarks on the embedded backend: allocations per second through
//! the whole adapter (auto-assign one address, then release it by handle,
//! which is what a CNI ADD + DEL costs in IPAM), with two baselines measured
//! in the same run:
//!
//! - `baseline_raw_block_cas`: a raw datastore read-modify-write of one
//!   block key (get, then compare-and-swap update of a realistic /26 block
//!   value) — the floor any CAS-based allocator pays per block write;
//! - `core_block_assign_release`: the pure core alone (decode a block,
//!   allocate, encode, decode, release, encode) — the CPU part.
//!
//! Files go to /dev/shm unless `TORTIE_BENCH_DIR` names another base
//! directory (e.g. a disk-backed one, to include fsync costs).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tortie_client::Client;
use tortie_datastore::Datastore;
use tortie_datastore::embedded::{EmbeddedDatastore, EmbeddedOptions};
use tortie_ipam::block::{Block, OrdinalRelease};
use tortie_ipam::reservations::Reservations;
use tortie_ipam::{AutoAssignRequest, Ipam, ReleaseRequest};
use tortie_model::ippool::IPPoolSpec;
use tortie_model::{ObjectMeta, Resource};

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
        .prefix("tortie-ipam-bench-")
        .tempdir_in(base)
        .expect("a scratch directory for benchmark files")
}

fn attrs(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("namespace".to_string(), "default".to_string()),
        ("node".to_string(), "node-1".to_string()),
        ("pod".to_string(), format!("web-{i}")),
        (
            "timestamp".to_string(),
            "2025-01-01 00:00:00.000000 +0000 UTC".to_string(),
        ),
    ])
}

/// A /26 block with 40 addresses allocated to 40 pods: a typical block value.
fn busy_block() -> Block {
    let owner = tortie_ipam::affinity::AffinityOwner::host("node-1");
    let mut b = Block::new(
        "10.0.0.0/26".parse().expect("CIDR"),
        Some(&owner),
        SystemTime::now(),
        false,
    );
    for i in 0..40 {
        b.assign(
            1,
            Some(&format!("k8s-pod-network.{i:064}")),
            &attrs(i),
            &Reservations::none(),
        );
    }
    b
}

fn allocations(c: &mut Criterion) {
    let rt = runtime();
    let dir = scratch();
    let path = dir.path().join("ipam.db");
    let store: Arc<dyn Datastore> = Arc::new(
        rt.block_on(EmbeddedDatastore::open(&path, EmbeddedOptions::default()))
            .expect("opening the benchmark datastore"),
    );
    let client = Client::new(store.clone());
    rt.block_on(client.create(Resource::new(
        ObjectMeta::named("bench-pool"),
        IPPoolSpec {
            cidr: "10.0.0.0/16".to_string(),
            ..IPPoolSpec::default()
        },
    )))
    .expect("creating the pool");
    let ipam = Ipam::new(client);

    let mut group = c.benchmark_group("ipam_embedded");
    group.throughput(Throughput::Elements(1));

    // Baseline: read-modify-write of one block key, straight on the store.
    let key = "/bench/raw/block";
    let value = busy_block().encode();
    rt.block_on(store.create(key, value.clone()))
        .expect("creating the raw block key");
    group.bench_function("baseline_raw_block_cas", |b| {
        b.iter(|| {
            rt.block_on(async {
                let kv = store
                    .get(key)
                    .await
                    .expect("reading")
                    .expect("the key exists");
                store
                    .update(key, value.clone(), kv.mod_revision)
                    .await
                    .expect("a single writer never conflicts")
            })
        })
    });

    // Keep 40 addresses allocated so blocks look like a busy node's.
    for i in 0..40 {
        let req = AutoAssignRequest {
            num_v4: 1,
            handle_id: format!("k8s-pod-network.resident-{i}"),
            attrs: attrs(i),
            hostname: "node-1".to_string(),
            ..AutoAssignRequest::default()
        };
        rt.block_on(ipam.auto_assign(req))
            .expect("resident address");
    }
    let mut n = 0usize;
    group.bench_function("auto_assign_then_release_by_handle", |b| {
        b.iter(|| {
            n += 1;
            let handle = format!("k8s-pod-network.{n:064}");
            let req = AutoAssignRequest {
                num_v4: 1,
                handle_id: handle.clone(),
                attrs: attrs(n),
                hostname: "node-1".to_string(),
                ..AutoAssignRequest::default()
            };
            rt.block_on(async {
                let got = ipam.auto_assign(req).await.expect("assign");
                assert_eq!(got.ipv4.ips.len(), 1);
                ipam.release_by_handle(&handle).await.expect("release");
            })
        })
    });
    group.bench_function("auto_assign_then_release_by_address", |b| {
        b.iter(|| {
            n += 1;
            let req = AutoAssignRequest {
                num_v4: 1,
                handle_id: format!("k8s-pod-network.{n:064}"),
                attrs: attrs(n),
                hostname: "node-1".to_string(),
                ..AutoAssignRequest::default()
            };
            rt.block_on(async {
                let got = ipam.auto_assign(req).await.expect("assign");
                let out = ipam
                    .release_ips(&[ReleaseRequest::address(got.ipv4.ips[0].addr())])
                    .await
                    .expect("release");
                assert_eq!(out.released.len(), 1);
            })
        })
    });

    // The pure core for the same work, no I/O.
    let stored = busy_block().encode();
    group.bench_function("core_block_assign_release", |b| {
        b.iter(|| {
            let mut block = Block::decode(&stored).expect("valid").expect("not deleted");
            let got = block.assign(
                1,
                Some("k8s-pod-network.bench"),
                &attrs(99),
                &Reservations::none(),
            );
            let bytes = block.commit();
            let mut block = Block::decode(&bytes).expect("valid").expect("live");
            block
                .release(
                    &[OrdinalRelease {
                        ordinal: got[0],
                        handle: None,
                        sequence: None,
                    }],
                    SystemTime::now(),
                    Duration::ZERO,
                )
                .expect("release");
            black_box(block.commit());
        })
    });
    group.finish();
    print_summary();
}

/// Prints the figures as allocations per second next to the baselines.
fn print_summary() {
    // The bench binary lives in <target>/<profile>/deps/.
    let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
    else {
        return;
    };
    let root = target.join("criterion/ipam_embedded");
    let mean_ns = |bench: &str| -> Option<f64> {
        let text = std::fs::read_to_string(root.join(bench).join("new/estimates.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        // Criterion's headline figure: the slope when it fitted one.
        v["slope"]["point_estimate"]
            .as_f64()
            .or_else(|| v["mean"]["point_estimate"].as_f64())
    };
    let Some(base) = mean_ns("baseline_raw_block_cas") else {
        return;
    };
    println!("\nIPAM on the embedded backend (per operation; x = multiple of the raw block CAS):");
    for bench in [
        "baseline_raw_block_cas",
        "auto_assign_then_release_by_handle",
        "auto_assign_then_release_by_address",
        "core_block_assign_release",
    ] {
        if let Some(ns) = mean_ns(bench) {
            println!(
                "  {bench:38} {:10.1} us  {:10.0} /s  {:6.2} x",
                ns / 1e3,
                1e9 / ns,
                ns / base
            );
        }
    }
}

criterion_group!(benches, allocations);
criterion_main!(benches);
