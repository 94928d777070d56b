//! Shared harness of the dataplane tests (they need root): throwaway
//! network namespaces, deleted on drop even when a test fails or panics
//! (which takes every link, route and sysctl inside with them); `ip` run
//! inside them with a time bound; reconcilers run on a thread `setns`ed
//! into them (tortie_dataplane::netns), either to completion or in the
//! background until their update channel closes; bounded polling.
//!
//! Namespaces are named `tdp-<pid>-<n>-<tag>`; ones left by a test process
//! that was itself killed are swept when the next test starts.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::future::Future;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tortie_dataplane::netns::Netns;

const PREFIX: &str = "tdp-";
static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Bound of one `ip` run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes namespaces of test processes that no longer exist.
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Runs a command with a time bound; fails on a non-zero exit. Output is
/// read while the command runs, so a large one cannot stall it.
pub fn run(cmd: &mut Command) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    ensure!(status.success(), "{cmd:?} failed: {}", stderr.trim());
    Ok(stdout)
}

/// A network namespace, deleted on drop.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    /// A fresh namespace with `lo` up (the kernel judges onlink gateways
    /// against the local table, which needs it).
    pub fn create(tag: &str) -> Result<TestNetns> {
        if COUNTER.load(Ordering::Relaxed) == 0 {
            sweep_leftovers();
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip -n <ns> -batch FILE`.
    pub fn ip_batch(&self, file: &std::path::Path) -> Result<String> {
        run(Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .arg("-batch")
            .arg(file))
    }

    /// `ip -j -n <ns> ARGS`, parsed (an empty output is an empty list).
    pub fn ip_json(&self, args: &[&str]) -> Result<Vec<Value>> {
        let out = run(Command::new("ip")
            .arg("-j")
            .arg("-n")
            .arg(&self.name)
            .args(args))?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        let v: Value =
            serde_json::from_str(&out).with_context(|| format!("ip -j {args:?}: {out}"))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `bridge -j -n <ns> ARGS`, parsed.
    pub fn bridge_json(&self, args: &[&str]) -> Result<Vec<Value>> {
        let out = run(Command::new("bridge")
            .arg("-j")
            .arg("-n")
            .arg(&self.name)
            .args(args))?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        let v: Value =
            serde_json::from_str(&out).with_context(|| format!("bridge -j {args:?}: {out}"))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Reads `/proc/sys/<dotted name>` inside the namespace.
    pub fn sysctl(&self, name: &str) -> Result<String> {
        Ok(
            run(Command::new("ip").args(["netns", "exec", &self.name, "sysctl", "-n", name]))?
                .trim()
                .to_string(),
        )
    }

    /// Writes `/proc/sys/<dotted name>` inside the namespace.
    pub fn set_sysctl(&self, name: &str, value: &str) -> Result<()> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-qw",
            &format!("{name}={value}"),
        ]))?;
        Ok(())
    }

    /// Runs `work` on a thread inside the namespace and waits for it.
    pub fn block_on<W, Fut, R>(&self, work: W) -> Result<R>
    where
        W: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        let ns = Netns::open(&self.path())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(ns.run(work))?)
    }

    /// Runs `work` on a thread inside the namespace in the background;
    /// join the returned handle to get its result.
    pub fn spawn<W, Fut, R>(&self, work: W) -> Result<std::thread::JoinHandle<Result<R>>>
    where
        W: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        let ns = Netns::open(&self.path())?;
        Ok(std::thread::spawn(move || -> Result<R> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(rt.block_on(ns.run(work))?)
        }))
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `check` every 10 ms until it returns `Some`, at most `limit`;
/// returns the value and how long it took.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(v) = check()? {
            return Ok((v, start.elapsed()));
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A veth pair `a`/`b` inside `ns`, both up.
pub fn veth(ns: &TestNetns, a: &str, b: &str) -> Result<()> {
    ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
    ns.ip(&["link", "set", a, "up"])?;
    ns.ip(&["link", "set", b, "up"])?;
    Ok(())
}

/// The `ip -j route show` entries whose `dst` is `dst`.
pub fn routes_to(routes: &[Value], dst: &str) -> Vec<Value> {
    routes
        .iter()
        .filter(|r| r["dst"].as_str() == Some(dst))
        .cloned()
        .collect()
}
