//! An etcd cluster of real processes and its members' lifecycle.
//!
//! Each member gets three loopback ports: client (http, or https with
//! client-certificate auth when the cluster has TLS files), peer (always
//! http) and metrics (always plain http: `/health` and `/metrics` there
//! let us check any member, TLS or not, without a client library). Data and
//! logs live in `<base>/tortie-etcd-<pid>-<random>/m<i>/`, base being
//! /dev/shm: no disk I/O, so a member is healthy ~1 s after start.
//!
//! Hard cases:
//! - Port races (see `ports`): a start that fails with "address already in
//!   use" is retried with fresh ports, up to three times.
//! - A member that fails to start: the error carries the tail of its log.
//! - Waiting is always bounded (`EtcdOptions::start_timeout`), and a member
//!   that exits while we wait is reported at once, not at the deadline.
//! - Stopping is SIGKILL: the data directory is on tmpfs and etcd is
//!   crash-safe, so a killed member restarts with all acknowledged writes,
//!   in milliseconds rather than the 8-10 s a graceful stop of three takes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;
use tortie_datastore::{DatastoreSpec, EtcdConfig};

use crate::leftovers::{self, DIR_PREFIX};
use crate::ports;
use crate::process::{self, find_binary, http_get, log_tail, run_bounded};
use crate::tls::TlsFiles;

/// Lines of a member's log quoted in errors.
const LOG_TAIL_LINES: usize = 30;
/// How often health is polled while waiting.
const POLL: Duration = Duration::from_millis(25);

/// How to run a cluster.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    pub members: usize,
    /// etcd's `--heartbeat-interval` and `--election-timeout`: etcd's
    /// defaults (100 ms, 1 s) for several members; 50 ms and 250 ms for a
    /// single member, which has no peer to lose and elects itself after one
    /// election timeout (a start takes ~0.3 s instead of ~1 s).
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    /// Bound for a (re)start until healthy, and for finding a leader.
    pub start_timeout: Duration,
    /// Serve clients over https, requiring client certificates signed by
    /// `tls.ca_cert`.
    pub tls: Option<TlsFiles>,
    /// Where cluster directories go (default /dev/shm, else the temp dir).
    pub base_dir: Option<PathBuf>,
}

impl EtcdOptions {
    pub fn new(members: usize) -> EtcdOptions {
        let (heartbeat, election_timeout) = if members == 1 { (50, 250) } else { (100, 1000) };
        EtcdOptions {
            members,
            heartbeat: Duration::from_millis(heartbeat),
            election_timeout: Duration::from_millis(election_timeout),
            start_timeout: Duration::from_secs(30),
            tls: None,
            base_dir: None,
        }
    }
}

struct Member {
    name: String,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    process: Mutex<Option<Child>>,
}

impl Member {
    fn log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running etcd cluster; see the crate documentation.
pub struct EtcdCluster {
    members: Vec<Member>,
    options: EtcdOptions,
    binary: PathBuf,
    token: String,
    ports: Vec<u16>,
    // Dropped last (after `Drop::drop` killed every member): removes the
    // data directories.
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts a cluster of `members` plain-http members and waits until
    /// every member is healthy.
    pub fn start(members: usize) -> Result<EtcdCluster> {
        EtcdCluster::start_with(EtcdOptions::new(members))
    }

    pub fn start_with(options: EtcdOptions) -> Result<EtcdCluster> {
        ensure!(options.members >= 1, "a cluster needs at least one member");
        let binary = find_binary("etcd", "TORTIE_ETCD_BIN", "etcd-server")?;
        let base = options.base_dir.clone().unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
        leftovers::sweep(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .with_context(|| format!("creating a cluster directory under {}", base.display()))?;
        let token = dir
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("tortie-{}", std::process::id()));
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            options,
            binary,
            token,
            ports: Vec::new(),
            dir,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match cluster.first_start() {
                Ok(()) => return Ok(cluster),
                Err(err) if tries < 3 && format!("{err:#}").contains("address already in use") => {
                    eprintln!(
                        "tortie-testkit: a port was taken meanwhile; retrying with new ports"
                    );
                    cluster.discard_members()?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn first_start(&mut self) -> Result<()> {
        let count = self.options.members;
        self.ports = ports::reserve(3 * count)?;
        for index in 0..count {
            let name = format!("m{index}");
            let dir = self.dir.path().join(&name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            self.members.push(Member {
                name,
                dir,
                client_port: self.ports[3 * index],
                peer_port: self.ports[3 * index + 1],
                metrics_port: self.ports[3 * index + 2],
                process: Mutex::new(None),
            });
        }
        self.start_members(&(0..count).collect::<Vec<_>>())
    }

    /// Kills every member and forgets them and their ports (before a retry).
    fn discard_members(&mut self) -> Result<()> {
        for member in &self.members {
            if let Some(mut child) = member.process().take() {
                process::kill(&mut child)?;
            }
            std::fs::remove_dir_all(&member.dir)
                .with_context(|| format!("removing {}", member.dir.display()))?;
        }
        self.members.clear();
        ports::release(&self.ports);
        self.ports.clear();
        Ok(())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn scheme(&self) -> &'static str {
        if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The client URL of one member.
    pub fn endpoint(&self, member: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[member].client_port
        )
    }

    /// The client address of one member (e.g. for a [`crate::TcpProxy`]).
    pub fn client_address(&self, member: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            self.members[member].client_port,
        ))
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|member| self.endpoint(member))
            .collect()
    }

    /// The TLS files the cluster serves with, if any.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.options.tls.as_ref()
    }

    /// Client settings for this cluster: every endpoint, and the CA and
    /// client certificate when the cluster uses TLS.
    pub fn config(&self) -> EtcdConfig {
        self.config_for(&self.endpoints())
    }

    /// Client settings for some endpoints of this cluster.
    pub fn config_for(&self, endpoints: &[String]) -> EtcdConfig {
        let mut config = EtcdConfig::new(endpoints.iter().cloned());
        if let Some(tls) = &self.options.tls {
            config.ca_file = Some(tls.ca_cert.clone());
            config.cert_file = Some(tls.client_cert.clone());
            config.key_file = Some(tls.client_key.clone());
        }
        config
    }

    /// A datastore spec for this cluster (see [`EtcdCluster::config`]).
    pub fn spec(&self) -> DatastoreSpec {
        DatastoreSpec::Etcd(self.config())
    }

    /// A member's directory (its data is in `data/`, its log in `etcd.log`).
    pub fn member_dir(&self, member: usize) -> &Path {
        &self.members[member].dir
    }

    /// The last lines of a member's log.
    pub fn log_tail(&self, member: usize, lines: usize) -> String {
        log_tail(&self.members[member].log(), lines)
    }

    /// PIDs of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|member| member.process().as_ref().map(Child::id))
            .collect()
    }

    /// Whether the member's process is running.
    pub fn is_running(&self, member: usize) -> bool {
        let mut process = self.members[member].process();
        match process.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                // Exited on its own: reap it.
                if let Some(mut child) = process.take() {
                    let _ = child.wait();
                }
                false
            }
            None => false,
        }
    }

    /// SIGKILLs one member and waits until it is gone.
    pub fn kill(&self, member: usize) -> Result<()> {
        if let Some(mut child) = self.members[member].process().take() {
            process::kill(&mut child)
                .with_context(|| format!("killing member {}", self.members[member].name))?;
        }
        Ok(())
    }

    /// Kills the member if it runs, starts it again on the same data and
    /// ports, and waits until it is healthy.
    pub fn restart(&self, member: usize) -> Result<()> {
        self.kill(member)?;
        self.start_members(&[member])
    }

    /// SIGKILLs every member.
    pub fn stop_all(&self) -> Result<()> {
        for member in 0..self.members.len() {
            self.kill(member)?;
        }
        Ok(())
    }

    /// Starts every stopped member and waits until all are healthy.
    pub fn start_all(&self) -> Result<()> {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|member| !self.is_running(*member))
            .collect();
        self.start_members(&stopped)
    }

    /// Which member leads, per each member's `etcd_server_is_leader`
    /// metric; waits (bounded) while an election is under way.
    pub fn leader(&self) -> Result<usize> {
        let deadline = Instant::now() + self.options.start_timeout;
        loop {
            for (index, member) in self.members.iter().enumerate() {
                if !self.is_running(index) {
                    continue;
                }
                let metrics = http_get(member.metrics_port, "/metrics", Duration::from_secs(2));
                if let Ok((200, body)) = metrics
                    && body
                        .lines()
                        .any(|line| line.trim() == "etcd_server_is_leader 1")
                {
                    return Ok(index);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no etcd member reports itself leader after {:?}",
                    self.options.start_timeout
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until a member answers `/health` with `true`.
    pub fn wait_healthy(&self, member: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let port = self.members[member].metrics_port;
        loop {
            if !self.is_running(member) {
                bail!(
                    "etcd member {} is not running; the end of its log:\n{}",
                    self.members[member].name,
                    self.log_tail(member, LOG_TAIL_LINES)
                );
            }
            if let Ok((200, body)) = http_get(port, "/health", Duration::from_secs(1))
                && body.contains("\"true\"")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd member {} not healthy after {timeout:?}; the end of its log:\n{}",
                    self.members[member].name,
                    self.log_tail(member, LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn start_members(&self, members: &[usize]) -> Result<()> {
        for &member in members {
            let child = process::spawn(
                &self.binary,
                &self.arguments(member),
                &self.members[member].log(),
            )?;
            *self.members[member].process() = Some(child);
        }
        let deadline = Instant::now() + self.options.start_timeout;
        for &member in members {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_healthy(member, left)?;
        }
        Ok(())
    }

    fn arguments(&self, index: usize) -> Vec<String> {
        let member = &self.members[index];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut arguments = vec![
            "--name".to_owned(),
            member.name.clone(),
            "--data-dir".to_owned(),
            member.dir.join("data").display().to_string(),
            "--listen-client-urls".to_owned(),
            client.clone(),
            "--advertise-client-urls".to_owned(),
            client,
            "--listen-peer-urls".to_owned(),
            peer.clone(),
            "--initial-advertise-peer-urls".to_owned(),
            peer,
            "--listen-metrics-urls".to_owned(),
            format!("http://127.0.0.1:{}", member.metrics_port),
            "--initial-cluster".to_owned(),
            initial_cluster,
            "--initial-cluster-state".to_owned(),
            "new".to_owned(),
            "--initial-cluster-token".to_owned(),
            self.token.clone(),
            "--heartbeat-interval".to_owned(),
            self.options.heartbeat.as_millis().to_string(),
            "--election-timeout".to_owned(),
            self.options.election_timeout.as_millis().to_string(),
            "--logger".to_owned(),
            "zap".to_owned(),
            "--log-outputs".to_owned(),
            "stderr".to_owned(),
        ];
        if let Some(tls) = &self.options.tls {
            for (flag, path) in [
                ("--cert-file", &tls.server_cert),
                ("--key-file", &tls.server_key),
                ("--trusted-ca-file", &tls.ca_cert),
            ] {
                arguments.push(flag.to_owned());
                arguments.push(path.display().to_string());
            }
            arguments.push("--client-cert-auth".to_owned());
        }
        arguments
    }

    /// Turns on etcd authentication with a `root` user (password given)
    /// holding the root role, using `etcdctl` (Debian package
    /// etcd-client).
    pub fn enable_auth(&self, root_password: &str) -> Result<()> {
        let etcdctl = find_binary("etcdctl", "TORTIE_ETCDCTL_BIN", "etcd-client")?;
        let steps: [&[&str]; 4] = [
            &["role", "add", "root"],
            &["user", "add", &format!("root:{root_password}")],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
        ];
        for step in steps {
            let mut command = Command::new(&etcdctl);
            command
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.endpoints().join(",")))
                .arg("--command-timeout=10s");
            if let Some(tls) = &self.options.tls {
                command
                    .arg(format!("--cacert={}", tls.ca_cert.display()))
                    .arg(format!("--cert={}", tls.client_cert.display()))
                    .arg(format!("--key={}", tls.client_key.display()));
            }
            command.args(step);
            let output = run_bounded(&mut command, Duration::from_secs(20))?;
            ensure!(
                output.status.success(),
                "etcdctl {} failed ({}): {}{}",
                step.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &self.members {
            if let Some(mut child) = member.process().take()
                && let Err(err) = process::kill(&mut child)
            {
                eprintln!("tortie-testkit: {err:#}");
            }
        }
        ports::release(&self.ports);
    }
}
