//! Throwaway network namespaces for tests that need root: kernel
//! reconcilers and real packets run inside one, never in the host's.
//!
//! [`TestNetns::new`] makes `tortie-test-<pid>-<n>-<tag>` (the test
//! process's PID, a per-process counter, the caller's tag) with `lo` up;
//! dropping it deletes the namespace, and every link, route, nftables
//! table and sysctl inside goes with it, also when the test failed or
//! panicked. Namespaces left by a test process that was itself killed are
//! swept by the first [`TestNetns::new`] of the next one (`leftovers`).
//!
//! Commands (`ip -n`, `ip netns exec`, `nft`) run with a time bound and
//! fail on a non-zero exit, with stderr in the error. Work runs inside on
//! a fresh thread that `setns`es into the namespace: sockets opened there
//! stay in the namespace, so they may be used from any thread after.
//! The async variants give that thread its own current-thread tokio
//! runtime, so the future is built there and need not be `Send`.
//!
//! Hard cases: a veth end moved into another namespace is named by that
//! namespace, hence pairs take both; a worker that panics is an error,
//! not a panic of the test thread; only namespaces with our prefix and a
//! dead owner are ever swept.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use nix::sched::{CloneFlags, setns};
use serde_json::Value;

use crate::leftovers;
use crate::process::run_bounded_with_input;

/// The prefix of every test namespace's name.
const NETNS_PREFIX: &str = "tortie-test-";
/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Bound of one command: generous, as loading a benchmark's ruleset of
/// many thousand elements with `nft -f` takes seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

static NEXT: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

/// Runs a command within the harness's time bound; fails on a non-zero
/// exit. Returns standard output.
pub fn run_command(command: &mut Command) -> Result<String> {
    run_with_input(command, None)
}

fn run_with_input(command: &mut Command, input: Option<&str>) -> Result<String> {
    let output = run_bounded_with_input(command, input.map(str::as_bytes), COMMAND_TIMEOUT)?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// A fresh namespace with `lo` up (the kernel judges onlink gateways
    /// against the local table, and loopback traffic needs it). `tag`
    /// says which test made it when one is left over.
    pub fn new(tag: &str) -> Result<TestNetns> {
        SWEEP.call_once(|| leftovers::sweep_netns(Path::new(NETNS_DIR), NETNS_PREFIX));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{}-{n}-{tag}", std::process::id());
        run_command(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file (`/var/run/netns/<name>`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run_command(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip -j -n <ns> ARGS`, parsed (an empty output is an empty list).
    pub fn ip_json(&self, args: &[&str]) -> Result<Vec<Value>> {
        self.iproute2_json("ip", args)
    }

    /// `bridge -j -n <ns> ARGS`, parsed like [`TestNetns::ip_json`].
    pub fn bridge_json(&self, args: &[&str]) -> Result<Vec<Value>> {
        self.iproute2_json("bridge", args)
    }

    fn iproute2_json(&self, program: &str, args: &[&str]) -> Result<Vec<Value>> {
        let out = run_command(
            Command::new(program)
                .args(["-j", "-n", &self.name])
                .args(args),
        )?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parsed: Value = serde_json::from_str(&out)
            .with_context(|| format!("{program} -j {args:?} printed {out}"))?;
        match parsed {
            Value::Array(items) => Ok(items),
            other => Err(anyhow!("{program} -j {args:?} printed {other}, not a list")),
        }
    }

    /// `ARGS` run inside the namespace (`ip netns exec <ns> ARGS`).
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        run_command(&mut self.exec_command(args))
    }

    /// Like [`TestNetns::exec`], feeding `input` on standard input.
    pub fn exec_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        run_with_input(&mut self.exec_command(args), Some(input))
    }

    fn exec_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }

    /// `nft ARGS` inside the namespace.
    pub fn nft(&self, args: &[&str]) -> Result<String> {
        self.exec(&[&["nft"], args].concat())
    }

    /// `nft -f -` with `script` inside the namespace.
    pub fn nft_script(&self, script: &str) -> Result<String> {
        self.exec_with_input(&["nft", "-f", "-"], script)
    }

    /// `nft -j list table <family> <table>`: the objects of the
    /// `nftables` array without its metainfo entry.
    pub fn nft_json(&self, family: &str, table: &str) -> Result<Vec<Value>> {
        let out = self.nft(&["-j", "list", "table", family, table])?;
        let parsed: Value = serde_json::from_str(&out).context("nft -j output")?;
        Ok(parsed["nftables"]
            .as_array()
            .context("nft -j output without an nftables array")?
            .iter()
            .filter(|o| o.get("metainfo").is_none())
            .cloned()
            .collect())
    }

    /// Reads a sysctl (dotted name) inside the namespace.
    pub fn sysctl(&self, key: &str) -> Result<String> {
        Ok(self.exec(&["sysctl", "-n", key])?.trim().to_string())
    }

    /// Writes a sysctl (dotted name) inside the namespace.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// A veth pair: `a` here, `b` in `peer` (which may be `self`), both
    /// left down so addresses, MACs and sysctls can be set first.
    pub fn veth(&self, a: &str, peer: &TestNetns, b: &str) -> Result<()> {
        self.ip(&[
            "link", "add", a, "type", "veth", "peer", "name", b, "netns", &peer.name,
        ])?;
        Ok(())
    }

    /// Like [`TestNetns::veth`], with both ends up.
    pub fn veth_up(&self, a: &str, peer: &TestNetns, b: &str) -> Result<()> {
        self.veth(a, peer, b)?;
        self.ip(&["link", "set", a, "up"])?;
        peer.ip(&["link", "set", b, "up"])?;
        Ok(())
    }

    /// Runs `work` on a thread inside the namespace and waits for it.
    pub fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        self.join(self.thread(move || Ok(work()))?)
    }

    /// Runs the future `work` builds on a thread inside the namespace,
    /// on that thread's own tokio runtime, and waits for it.
    pub fn block_on<W, Fut, R>(&self, work: W) -> Result<R>
    where
        W: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        self.join(self.spawn(work)?)
    }

    /// Like [`TestNetns::block_on`] in the background: join the returned
    /// handle for the result (an `Err` from `join` is a panic).
    pub fn spawn<W, Fut, R>(&self, work: W) -> Result<JoinHandle<Result<R>>>
    where
        W: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        self.thread(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?;
            Ok(runtime.block_on(work()))
        })
    }

    /// A new thread that enters the namespace, then runs `work`.
    fn thread<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R> + Send + 'static,
    ) -> Result<JoinHandle<Result<R>>> {
        let path = self.path();
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {name}"))?;
                work()
            })
            .context("starting a thread")
    }

    fn join<R>(&self, handle: JoinHandle<Result<R>>) -> Result<R> {
        handle
            .join()
            .map_err(|_| anyhow!("the worker in network namespace {} panicked", self.name))?
    }
}

/// Runs `work` on a scoped thread inside the named network namespace
/// (`/var/run/netns/<name>`, one the test did not necessarily create, e.g.
/// a lab's) and waits for it; `work` may borrow from the caller.
pub fn run_in<T: Send>(name: &str, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {name}"))?;
            work()
        })
        .join()
        .map_err(|_| anyhow!("the worker in network namespace {name} panicked"))?
    })
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(err) = run_command(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "tortie-testkit: cannot delete network namespace {}: {err:#}",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_run_commands_and_work_inside_and_go_on_drop_needs_root() -> Result<()> {
        let a = TestNetns::new("kit-a")?;
        let b = TestNetns::new("kit-b")?;
        ensure!(
            a.name()
                .starts_with(&format!("{NETNS_PREFIX}{}-", std::process::id()))
        );
        ensure!(a.name().ends_with("-kit-a") && a.name() != b.name());

        a.veth_up("one", &b, "two")?;
        a.ip(&["addr", "add", "10.9.0.1/24", "dev", "one"])?;
        b.ip(&["addr", "add", "10.9.0.2/24", "dev", "two"])?;
        let links = b.ip_json(&["link", "show", "two"])?;
        ensure!(links.len() == 1 && links[0]["ifname"] == "two");
        ensure!(a.ip_json(&["link", "show", "type", "vxlan"])?.is_empty());

        a.set_sysctl("net.ipv4.ip_forward", "1")?;
        ensure!(a.sysctl("net.ipv4.ip_forward")? == "1");
        ensure!(b.sysctl("net.ipv4.ip_forward")? == "0");

        a.nft_script("table inet kit { set s { type ipv4_addr; }; }")?;
        let json = a.nft_json("inet", "kit")?;
        ensure!(json.iter().any(|o| o["set"]["name"] == "s"), "{json:?}");
        ensure!(b.nft(&["list", "tables"])?.trim().is_empty());

        // A socket made inside sees the namespace's interfaces.
        let bound = b.run(|| std::net::TcpListener::bind("10.9.0.2:0").is_ok())?;
        ensure!(bound, "10.9.0.2 is not an address inside b");
        let async_bound =
            b.block_on(|| async { tokio::net::TcpListener::bind("10.9.0.2:0").await.is_ok() })?;
        ensure!(async_bound);
        ensure!(std::net::TcpListener::bind("10.9.0.2:0").is_err());
        ensure!(a.run(|| panic!("a worker panics")).is_err());

        let path = a.path();
        drop(a);
        ensure!(!path.exists(), "{} outlived its guard", path.display());
        Ok(())
    }
}
