//! Harness of the lab tests (needs root): a [`Lab`] is a real `tortie lab`
//! — node namespaces running `tortie node run`, pods attached through
//! `tortie-cni` — driven through the CLI exactly as a user drives it, and
//! removed with `tortie lab down` when the guard drops, also when the test
//! fails. Every command is bounded by a timeout.
//!
//! Long-lived connections ([`Connection`]) are opened from threads that
//! enter a pod's namespace, so a socket lives in the pod while the test
//! holds it; nothing else about the test process changes namespace.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

pub use tortie_testkit::run_in as in_netns;

#[path = "../cni_support/mod.rs"]
mod cni_support;
pub use cni_support::{Finished, run_bounded};

/// Bound of one CLI command (lab up waits for its daemons to be ready).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

pub fn tortie() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tortie"))
}

/// Runs `tortie ARGS` with `stdin`; the whole result, whatever the exit.
pub fn run(args: &[&str], stdin: &str) -> Result<Finished> {
    run_bounded(tortie().args(args), stdin.as_bytes(), COMMAND_TIMEOUT)
}

/// Runs `tortie ARGS`; fails unless it exits 0.
pub fn ok(args: &[&str]) -> Result<String> {
    let out = run(args, "")?;
    ensure!(
        out.status == Some(0),
        "tortie {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

/// A running lab, removed on drop.
pub struct Lab {
    pub name: String,
    pub datastore: String,
}

impl Lab {
    /// `tortie lab up` with a name unique to this process and `tag`.
    pub fn up(tag: &str, nodes: usize) -> Result<Lab> {
        Lab::up_with(tag, nodes, &[])
    }

    /// [`Lab::up`] with more `lab up` arguments (e.g. `--etcd`).
    pub fn up_with(tag: &str, nodes: usize, extra: &[&str]) -> Result<Lab> {
        let name = format!("t{}{tag}", std::process::id() % 100_000);
        ensure!(name.len() <= 12, "lab name {name} too long");
        // A lab of the same name left by a killed run of this PID.
        let _ = run(&["lab", "down", &name], "");
        let mut lab = Lab {
            name: name.clone(),
            datastore: String::new(),
        };
        let nodes = nodes.to_string();
        let mut args = vec!["lab", "up", &name, "--nodes", &nodes];
        args.extend_from_slice(extra);
        ok(&args)?;
        lab.datastore = lab.state()?["datastore"]
            .as_str()
            .context("state.json has no datastore")?
            .to_string();
        Ok(lab)
    }

    /// The lab's state file.
    pub fn state(&self) -> Result<Value> {
        let path = format!("/run/tortie/lab/{}/state.json", self.name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// A pod's (`ns/name`) entry in the state file.
    fn pod_state(&self, id: &str) -> Result<Option<Value>> {
        let state = self.state()?;
        let pods = state["pods"].as_array().cloned().unwrap_or_default();
        Ok(pods.into_iter().find(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            ) == id
        }))
    }

    /// The network namespace of a pod (`ns/name`) or node (`node-1`).
    pub fn netns(&self, id: &str) -> Result<String> {
        let node = || -> Result<Option<Value>> {
            let nodes = self.state()?["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok(nodes.into_iter().find(|n| n["name"] == id))
        };
        let entry = match self.pod_state(id)? {
            Some(pod) => Some(pod),
            None => node()?,
        };
        entry
            .as_ref()
            .and_then(|e| e["netns"].as_str())
            .map(str::to_string)
            .with_context(|| format!("lab {} has no pod or node {id}", self.name))
    }

    /// A pod's first address of a family (IPv4 first in `ips`).
    fn pod_address(&self, id: &str, ipv6: bool) -> Result<String> {
        self.pod_state(id)?
            .as_ref()
            .and_then(|p| p["ips"].as_array())
            .and_then(|ips| {
                ips.iter()
                    .filter_map(Value::as_str)
                    .find(|ip| ip.contains(':') == ipv6)
            })
            .map(str::to_string)
            .with_context(|| format!("no address for pod {id} (IPv6: {ipv6})"))
    }

    /// A pod's IPv4 address.
    pub fn pod_ip(&self, id: &str) -> Result<String> {
        self.pod_address(id, false)
    }

    /// A pod's IPv6 address (dual-stack labs).
    pub fn pod_ip6(&self, id: &str) -> Result<String> {
        self.pod_address(id, true)
    }

    /// `tortie lab ctl NAME -- ARGS` (the lab's datastore, from where it
    /// is reachable), exit 0 required.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["lab", "ctl", &self.name, "--"];
        all.extend_from_slice(args);
        ok(&all)
    }

    /// Applies YAML to the lab's datastore.
    pub fn apply(&self, yaml: &str) -> Result<()> {
        let out = run(&["lab", "ctl", &self.name, "--", "apply", "-f", "-"], yaml)?;
        ensure!(
            out.status == Some(0),
            "apply failed: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(())
    }

    /// Deletes resources named in YAML.
    pub fn delete(&self, yaml: &str) -> Result<()> {
        let out = run(&["lab", "ctl", &self.name, "--", "delete", "-f", "-"], yaml)?;
        ensure!(
            out.status == Some(0),
            "delete failed: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(())
    }

    pub fn pod(&self, node: &str, id: &str, labels: &str) -> Result<()> {
        let mut args = vec!["lab", "pod", "add", &self.name, node, id];
        if !labels.is_empty() {
            args.extend(["--labels", labels]);
        }
        ok(&args).map(|_| ())
    }

    /// `tortie lab probe` (over IPv6 with `--ipv6` in `extra`): true for
    /// allowed.
    fn probe_with(
        &self,
        from: &str,
        to: &str,
        proto: &str,
        port: u16,
        extra: &[&str],
    ) -> Result<bool> {
        let port = port.to_string();
        let mut args = vec![
            "lab", "probe", &self.name, "--from", from, "--to", to, "--proto", proto, "--port",
            &port,
        ];
        args.extend_from_slice(extra);
        let out = ok(&args)?;
        match out.trim() {
            "allowed" => Ok(true),
            "denied" => Ok(false),
            other => bail!("lab probe printed {other:?}"),
        }
    }

    /// `tortie lab probe` over IPv4: true for allowed.
    pub fn probe(&self, from: &str, to: &str, proto: &str, port: u16) -> Result<bool> {
        self.probe_with(from, to, proto, port, &[])
    }

    /// Asserts a probe's verdict (`--ipv6` in `extra` for IPv6), naming
    /// the case: `(from, to, proto, port)`.
    pub fn expect_with(
        &self,
        (from, to, proto, port): (&str, &str, &str, u16),
        allowed: bool,
        extra: &[&str],
    ) -> Result<()> {
        let got = self.probe_with(from, to, proto, port, extra)?;
        ensure!(
            got == allowed,
            "{from} -> {to} {proto}/{port} {extra:?}: {} but expected {}",
            verdict(got),
            verdict(allowed)
        );
        Ok(())
    }

    /// Asserts an IPv4 probe's verdict.
    pub fn expect(
        &self,
        from: &str,
        to: &str,
        proto: &str,
        port: u16,
        allowed: bool,
    ) -> Result<()> {
        self.expect_with((from, to, proto, port), allowed, &[])
    }

    /// `tortie lab check --expect` (more arguments in `extra`): every
    /// pair's real packets agree with `tortie policy explain`.
    fn check_agrees_with(&self, proto: &str, port: u16, extra: &[&str]) -> Result<String> {
        let port = port.to_string();
        let mut args = vec![
            "lab", "check", &self.name, "--proto", proto, "--port", &port, "--expect",
        ];
        args.extend_from_slice(extra);
        let out = run(&args, "")?;
        ensure!(
            out.status == Some(0),
            "probes and policy explain disagree ({proto}/{port} {extra:?}):\n{}\n{}",
            out.stdout,
            out.stderr
        );
        Ok(out.stdout)
    }

    /// [`Lab::check_agrees_with`] over IPv4.
    pub fn check_agrees(&self, proto: &str, port: u16) -> Result<String> {
        self.check_agrees_with(proto, port, &[])
    }

    /// [`Lab::check_agrees_with`] over IPv6 (dual-stack labs).
    pub fn check_agrees6(&self, proto: &str, port: u16) -> Result<String> {
        self.check_agrees_with(proto, port, &["--ipv6"])
    }

    /// Runs a command in a node's namespace.
    pub fn in_node(&self, node: &str, cmd: &[&str]) -> Result<String> {
        let netns = self.netns(node)?;
        let out = run_bounded(
            Command::new("ip").args(["netns", "exec", &netns]).args(cmd),
            b"",
            COMMAND_TIMEOUT,
        )?;
        ensure!(
            out.status == Some(0),
            "{cmd:?} in {node}: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(out.stdout)
    }

    /// Polls `check` every 50 ms for up to `within`; the time it took.
    pub fn wait_for(
        &self,
        within: Duration,
        mut check: impl FnMut() -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if check()? {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!("not within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        match run(&["lab", "down", &self.name], "") {
            Ok(out) if out.status == Some(0) => {}
            Ok(out) => eprintln!("lab down {}: {}{}", self.name, out.stdout, out.stderr),
            Err(e) => eprintln!("lab down {}: {e:#}", self.name),
        }
    }
}

pub fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

/// A TCP connection attempt from one namespace to `addr:port` where a
/// listener is bound in another: true if it connects within 1.5 s.
pub fn tcp_reaches(from_netns: &str, to_netns: &str, addr: &str, port: u16) -> Result<bool> {
    let listener = in_netns(to_netns, || Ok(TcpListener::bind(("0.0.0.0", port))?))?;
    let target: std::net::SocketAddr = format!("{addr}:{port}").parse()?;
    let reached = in_netns(from_netns, || {
        Ok(TcpStream::connect_timeout(&target, Duration::from_millis(1500)).is_ok())
    })?;
    drop(listener);
    Ok(reached)
}

/// An established TCP connection between two pods: an echo server in one,
/// the client socket in the other.
pub struct Connection {
    client: TcpStream,
    server: TcpStream,
}

impl Connection {
    pub fn open(lab: &Lab, from: &str, to: &str, port: u16) -> Result<Connection> {
        let to_ip = lab.pod_ip(to)?;
        let listener = in_netns(&lab.netns(to)?, || {
            Ok(TcpListener::bind(("0.0.0.0", port))?)
        })?;
        let addr = format!("{to_ip}:{port}");
        let client = in_netns(&lab.netns(from)?, || {
            let addr = addr.parse().context("pod address")?;
            Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?)
        })?;
        listener.set_nonblocking(false)?;
        let (server, _) = listener.accept()?;
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
        }
        Ok(Connection { client, server })
    }

    /// Sends a message each way and checks it arrives.
    pub fn exchange(&mut self, tag: u8) -> Result<()> {
        let msg = [tag; 64];
        self.client.write_all(&msg)?;
        let mut got = [0u8; 64];
        self.server
            .read_exact(&mut got)
            .context("client -> server over the held connection")?;
        ensure!(got == msg, "client -> server corrupted");
        self.server.write_all(&msg)?;
        self.client
            .read_exact(&mut got)
            .context("server -> client over the held connection")?;
        ensure!(got == msg, "server -> client corrupted");
        Ok(())
    }
}
