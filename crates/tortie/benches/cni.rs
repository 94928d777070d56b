//! CNI plugin latency and IPAM throughput against the reference plugins,
//! measured in the same run on the same machine (needs root):
//!
//! - ADD and DEL latency (median, p99) of `tortie-cni` (in-process IPAM,
//!   embedded datastore on disk) vs the reference `ptp` + `host-local`;
//! - creating a network namespace, reported separately (excluded above);
//! - IPAM allocations per second: `tortie-ipam` vs `host-local`, one
//!   process per allocation (ADD), sequentially and 8 at a time.
//!
//! Every plugin process is timed from spawn to exit. Runs alternate
//! between the two sides so drift affects both. `TORTIE_BENCH_CNI_RUNS`
//! sets the number of ADD/DEL pairs per side (default 200).

#[path = "../tests/cni_support/mod.rs"]
mod cni_support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use cni_support::{Attach, Lab, Netns, PLUGIN_TIMEOUT, Plugin, run_bounded};
use serde_json::{Value, json};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        median: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times one plugin run; fails if it fails.
fn timed(
    lab: &Lab,
    plugin: Plugin<'_>,
    command: &str,
    attach: &Attach,
    conf: &Value,
) -> Result<Duration> {
    let stdin = serde_json::to_vec(conf)?;
    let mut cmd = lab.plugin_command(&lab.host, plugin, command, attach);
    let started = Instant::now();
    let out = run_bounded(&mut cmd, &stdin, PLUGIN_TIMEOUT)?;
    let took = started.elapsed();
    ensure!(
        out.status == Some(0),
        "{command} failed: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(took)
}

/// ADD/DEL pairs: (ADD latencies, DEL latencies) per side.
struct Side {
    adds: Vec<Duration>,
    dels: Vec<Duration>,
}

fn allocations_per_second(
    lab: &Lab,
    plugin: Plugin<'_>,
    conf: &Value,
    count: usize,
    parallel: usize,
) -> Result<f64> {
    let ns = Netns::create("ipam")?;
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let attach = Attach::new(&format!("alloc{i}"), &ns);
                    if let Err(e) = timed(lab, plugin, "ADD", &attach, conf) {
                        failures.lock().expect("not poisoned").push(e.to_string());
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let failures = failures.into_inner().expect("not poisoned");
    ensure!(failures.is_empty(), "{failures:?}");
    for i in 0..count {
        timed(
            lab,
            plugin,
            "DEL",
            &Attach::new(&format!("alloc{i}"), &ns),
            conf,
        )?;
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

fn main() -> Result<()> {
    let runs: usize = std::env::var("TORTIE_BENCH_CNI_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let lab = Lab::new()?;
    lab.pools(&[("bench", "10.70.0.0/16", 26)])?;
    let tortie = lab.conf("1.0.0", json!({"log_level": "warning"}));
    let host_local_dir = lab.dir.path().join("host-local");
    let reference = json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.71.0.0/16", "dataDir": host_local_dir},
    });

    // Namespace creation, for reference (excluded from the plugin figures).
    let mut netns_times = Vec::new();
    let mut namespaces = Vec::new();
    for _ in 0..runs * 2 {
        let started = Instant::now();
        namespaces.push(Netns::create("b")?);
        netns_times.push(started.elapsed());
    }

    // Warm the caches of both sides once.
    let warm = Netns::create("warm")?;
    for (plugin, conf) in [
        (Plugin::Cni, &tortie),
        (Plugin::Reference("ptp"), &reference),
    ] {
        let attach = Attach::new("warmup", &warm);
        timed(&lab, plugin, "ADD", &attach, conf)?;
        timed(&lab, plugin, "DEL", &attach, conf)?;
    }

    let mut ours = Side {
        adds: Vec::new(),
        dels: Vec::new(),
    };
    let mut theirs = Side {
        adds: Vec::new(),
        dels: Vec::new(),
    };
    for i in 0..runs {
        let sides: [(Plugin<'_>, &Value, &mut Side, &Netns); 2] = [
            (Plugin::Cni, &tortie, &mut ours, &namespaces[2 * i]),
            (
                Plugin::Reference("ptp"),
                &reference,
                &mut theirs,
                &namespaces[2 * i + 1],
            ),
        ];
        // Alternate which side goes first.
        let order: Vec<_> = if i % 2 == 0 {
            sides.into_iter().collect()
        } else {
            sides.into_iter().rev().collect()
        };
        for (plugin, conf, side, ns) in order {
            let attach = Attach::k8s(&format!("bench{i:04}"), ns, "bench", &format!("pod-{i}"));
            side.adds.push(timed(&lab, plugin, "ADD", &attach, conf)?);
            side.dels.push(timed(&lab, plugin, "DEL", &attach, conf)?);
        }
    }
    drop(namespaces);

    let ipam_tortie = json!({
        "cniVersion": "1.0.0", "name": "tnet", "datastore": lab.datastore, "nodename": "node-a",
        "ipam_lock_file": lab.lock_file, "log_level": "warning", "ipam": {"type": "tortie-ipam"},
    });
    let ipam_ref = json!({
        "cniVersion": "1.0.0", "name": "refnet",
        "ipam": {"type": "host-local", "subnet": "10.72.0.0/16", "dataDir": host_local_dir},
    });
    let count = runs.max(50);
    let mut throughput = Vec::new();
    for parallel in [1, 8] {
        let t = allocations_per_second(&lab, Plugin::Ipam, &ipam_tortie, count, parallel)?;
        let r = allocations_per_second(
            &lab,
            Plugin::Reference("host-local"),
            &ipam_ref,
            count,
            parallel,
        )?;
        throughput.push((parallel, t, r));
    }

    let (oa, od, ta, td) = (
        stats(ours.adds),
        stats(ours.dels),
        stats(theirs.adds),
        stats(theirs.dels),
    );
    let ns_stats = stats(netns_times);
    println!(
        "\nCNI latency, {runs} ADD/DEL pairs per side (ms; baseline: reference ptp + host-local)"
    );
    println!(
        "  {:34} {:>9} {:>9}   {:>9} {:>9}",
        "", "median", "p99", "x median", "x p99"
    );
    let row = |name: &str, s: &Stats, base: &Stats| {
        println!(
            "  {name:34} {:9.2} {:9.2}   {:9.2} {:9.2}",
            ms(s.median),
            ms(s.p99),
            ms(s.median) / ms(base.median),
            ms(s.p99) / ms(base.p99)
        );
    };
    row("ADD reference ptp + host-local", &ta, &ta);
    row("ADD tortie-cni (tortie IPAM)", &oa, &ta);
    row("DEL reference ptp + host-local", &td, &td);
    row("DEL tortie-cni (tortie IPAM)", &od, &td);
    println!(
        "  {:34} {:9.2} {:9.2}   (excluded above)",
        "create a network namespace",
        ms(ns_stats.median),
        ms(ns_stats.p99)
    );
    println!(
        "\nIPAM allocations per second, one plugin process per ADD ({count} ADDs; baseline: host-local)"
    );
    println!(
        "  {:34} {:>12} {:>12} {:>10}",
        "", "tortie-ipam", "host-local", "x baseline"
    );
    for (parallel, t, r) in throughput {
        println!(
            "  {:34} {t:12.0} {r:12.0} {:10.2}",
            format!("{parallel} at a time"),
            t / r
        );
    }
    Ok(())
}
