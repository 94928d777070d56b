//! The testkit against the real etcd binary: starting, killing,
//! restarting, leader lookup, failure reports, and that nothing is left
//! behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tortie_testkit::{EtcdCluster, EtcdOptions};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn one_member_lives_dies_and_is_cleaned_up() -> Result<()> {
    let started = Instant::now();
    let cluster = EtcdCluster::start(1)?;
    println!("one member healthy after {:?}", started.elapsed());
    assert_eq!(cluster.len(), 1);
    let endpoint = cluster.endpoint(0);
    ensure!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_eq!(cluster.spec().to_string(), format!("etcd:{endpoint}"));
    let dir: PathBuf = cluster.member_dir(0).to_path_buf();
    ensure!(dir.starts_with("/dev/shm"), "{}", dir.display());

    let runtime = runtime()?;
    let store = runtime.block_on(tortie_datastore::connect(&cluster.spec()))?;
    let written = runtime.block_on(store.put("/testkit/k", b"v".to_vec()))?;

    let pid = *cluster.pids().first().context("a running member")?;
    cluster.kill(0)?;
    ensure!(!cluster.is_running(0));
    ensure!(gone(pid), "the killed member {pid} is still there");

    let restarted = Instant::now();
    cluster.restart(0)?;
    println!("restarted in {:?}", restarted.elapsed());
    let kv = runtime
        .block_on(store.get("/testkit/k"))?
        .context("the key survived the kill")?;
    assert_eq!((kv.value, kv.mod_revision), (b"v".to_vec(), written));
    assert_eq!(cluster.leader()?, 0);
    ensure!(cluster.log_tail(0, 5).contains('{'), "zap logs JSON lines");

    let pid = *cluster.pids().first().context("a running member")?;
    drop(cluster);
    ensure!(gone(pid), "member {pid} survived the drop");
    ensure!(!dir.exists(), "{} survived the drop", dir.display());
    Ok(())
}

#[test]
fn three_members_elect_again_and_restart_together() -> Result<()> {
    let started = Instant::now();
    let cluster = EtcdCluster::start(3)?;
    println!("three members healthy after {:?}", started.elapsed());
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), 3);
    let mut ports: Vec<&str> = endpoints.iter().map(|e| e.as_str()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);

    let runtime = runtime()?;
    let store = runtime.block_on(tortie_datastore::connect(&cluster.spec()))?;
    runtime.block_on(store.put("/testkit/three", b"1".to_vec()))?;

    let leader = cluster.leader()?;
    cluster.kill(leader)?;
    let elected = Instant::now();
    let new_leader = cluster.leader()?;
    println!("new leader after {:?}", elected.elapsed());
    ensure!(new_leader != leader, "the killed member still leads");

    let pids = cluster.pids();
    cluster.stop_all()?;
    ensure!(pids.iter().all(|pid| gone(*pid)), "stop_all left processes");
    ensure!((0..3).all(|member| !cluster.is_running(member)));
    let restarted = Instant::now();
    cluster.start_all()?;
    println!("all three back after {:?}", restarted.elapsed());
    let kv = runtime.block_on(store.get("/testkit/three"))?;
    assert_eq!(kv.map(|kv| kv.value), Some(b"1".to_vec()));
    Ok(())
}

#[test]
fn a_member_that_cannot_start_is_reported_with_its_log() -> Result<()> {
    let mut options = EtcdOptions::new(1);
    // etcd refuses an election timeout shorter than five heartbeats.
    options.heartbeat = Duration::from_millis(500);
    options.election_timeout = Duration::from_millis(600);
    options.start_timeout = Duration::from_secs(10);
    let started = Instant::now();
    let err = match EtcdCluster::start_with(options) {
        Err(err) => format!("{err:#}"),
        Ok(_) => anyhow::bail!("etcd started with invalid timeouts"),
    };
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the exit was noticed only at the deadline"
    );
    ensure!(err.contains("is not running"), "{err}");
    ensure!(
        err.contains("election-timeout"),
        "the log tail is missing: {err}"
    );
    Ok(())
}
