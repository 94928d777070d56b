//! Route programming at scale (needs root; `cargo bench -p
//! tortie-dataplane --bench routes`): 100,000 /32 routes on a veth in a
//! fresh network namespace, installed by
//!
//! * the routes reconciler, pipelined (1,000 messages a datagram, ACKs
//!   only for errors) — the measure the others are compared with;
//! * the routes reconciler with an ACK asked for every message;
//! * `ip -batch` of the same routes (`route replace … proto 80`);
//!
//! plus one route added by the reconciler with the 100,000 loaded, and one
//! resync (the dump of every route) at that size. Each is run `RUNS` times;
//! the table shows the median and its ratio to the pipelined install.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ipnet::IpNet;
use tortie_dataplane::netlink::AckMode;
use tortie_dataplane::routes::{Route, RouteConfig, RouteKey, RouteReconciler, RouteTarget};
use tortie_testkit::TestNetns;

const N: u32 = 100_000;
const RUNS: usize = 3;
/// Single adds timed with the table loaded.
const SINGLE_ADDS: u32 = 200;
const DEV: &str = "cali0123456789c";

fn dst(i: u32) -> String {
    format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256)
}

fn route(i: u32) -> Route {
    Route {
        key: RouteKey::new(dst(i).parse::<IpNet>().expect("net"), 1024),
        target: RouteTarget::Device { iface: DEV.into() },
        mtu: None,
    }
}

fn namespace() -> Result<TestNetns> {
    let ns = TestNetns::new("bench")?;
    ns.veth_up(DEV, &ns, "peer0")?;
    Ok(ns)
}

/// What one reconciler run measured.
struct ReconcilerRun {
    install: Duration,
    single_add: Duration,
    resync: Duration,
}

fn reconciler_run(ack: AckMode) -> Result<ReconcilerRun> {
    let ns = namespace()?;
    let run = ns
        .block_on(move || async move {
            let config = RouteConfig {
                ack,
                ..RouteConfig::default()
            };
            let mut r = RouteReconciler::open(config).map_err(|e| e.to_string())?;
            r.resync().await.map_err(|e| e.to_string())?;
            for i in 0..N {
                r.set(route(i));
            }
            let start = Instant::now();
            let report = r.apply().await.map_err(|e| e.to_string())?;
            let install = start.elapsed();
            if report.applied != N as usize {
                return Err(format!("{report:?}"));
            }
            let mut singles = Vec::new();
            for i in N..N + SINGLE_ADDS {
                let start = Instant::now();
                r.set(route(i));
                r.apply().await.map_err(|e| e.to_string())?;
                singles.push(start.elapsed());
            }
            singles.sort();
            let start = Instant::now();
            r.resync().await.map_err(|e| e.to_string())?;
            let resync = start.elapsed();
            Ok::<_, String>(ReconcilerRun {
                install,
                single_add: singles[singles.len() / 2],
                resync,
            })
        })?
        .map_err(anyhow::Error::msg)?;
    let listed = ns.ip(&["route", "show", "proto", "80"])?;
    let count = listed.lines().count();
    if count != (N + SINGLE_ADDS) as usize {
        bail!("the kernel holds {count} routes");
    }
    Ok(run)
}

fn ip_batch_run() -> Result<Duration> {
    let ns = namespace()?;
    let mut file = std::env::temp_dir();
    file.push(format!("tortie-routes-bench-{}.batch", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..N {
            writeln!(
                f,
                "route replace {} dev {DEV} scope link proto 80 metric 1024",
                dst(i)
            )?;
        }
    }
    let start = Instant::now();
    let out = ns.ip(&["-batch", &file.to_string_lossy()]);
    let took = start.elapsed();
    let _ = std::fs::remove_file(&file);
    out?;
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only checks that this builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let mut pipelined = Vec::new();
    let mut acked = Vec::new();
    let mut batch = Vec::new();
    for run in 0..RUNS {
        eprintln!("run {}/{RUNS}", run + 1);
        pipelined.push(reconciler_run(AckMode::ErrorsOnly)?);
        acked.push(reconciler_run(AckMode::EveryMessage)?.install);
        batch.push(ip_batch_run()?);
    }
    let base = median(pipelined.iter().map(|r| r.install).collect());
    let single = median(pipelined.iter().map(|r| r.single_add).collect());
    let resync = median(pipelined.iter().map(|r| r.resync).collect());
    let acked = median(acked);
    let batch = median(batch);
    let ratio = |d: Duration| d.as_secs_f64() / base.as_secs_f64();
    println!();
    println!("100,000 /32 routes on a veth, median of {RUNS} runs");
    println!("{:<58} {:>12} {:>10}", "", "time", "vs tortie");
    for (what, d) in [
        ("tortie reconciler, pipelined, ACKs only for errors", base),
        ("tortie reconciler, an ACK per message", acked),
        ("ip -batch (route replace)", batch),
    ] {
        println!("{what:<58} {:>12.1?} {:>9.2}x", d, ratio(d));
    }
    println!(
        "{:<58} {:>12.1?}",
        format!("one route added with 100,000 loaded (median of {SINGLE_ADDS})"),
        single
    );
    println!(
        "{:<58} {:>12.1?}",
        "resync: dump and diff 100,000 routes", resync
    );
    Ok(())
}
