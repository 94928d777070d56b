//! The lab's datastore, and the etcd member a lab can host (`lab up
//! --etcd`).
//!
//! A lab-hosted etcd runs inside the data-centre namespace and listens on
//! the bridge address (`.1` of the lab subnet, port 2379), where every node
//! reaches it as it would a real cluster's etcd; its data lives on
//! `/dev/shm` (etcd fsyncs every write). The host namespace cannot reach
//! that address, so every datastore access the lab makes from the host
//! ([`with_client`]) runs on a thread inside the data-centre namespace,
//! and `tortie lab ctl` runs CLI commands there.
//!
//! Hard cases: etcd is healthy about a second after start; `kill -0`
//! reports an exited member alive until it is reaped, so liveness comes
//! from `/proc/PID/stat` ([`crate::cluster::process_alive`]); a member
//! killed with SIGKILL restarts from its data directory with everything
//! it had committed.

use std::fs::File;
use std::future::Future;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};
use tortie_client::Client;

use crate::state::lab_dir;

/// etcd's client port on the bridge address.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// How long a starting member may take to answer.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A lab-hosted etcd member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EtcdState {
    pub pid: Option<u32>,
    pub data_dir: String,
    /// `http://<bridge address>:2379`.
    pub client_url: String,
}

/// Runs `work` with a client of `datastore`, inside namespace `netns` when
/// given (a lab-hosted etcd), else here.
pub fn with_client<T, F>(
    datastore: &str,
    netns: Option<&str>,
    work: impl FnOnce(Client) -> F + Send,
) -> Result<T>
where
    T: Send,
    F: Future<Output = Result<T>>,
{
    let spec = tortie_datastore::DatastoreSpec::resolve(Some(datastore))?;
    let run = move || -> Result<T> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = Client::new(tortie_datastore::connect(&spec).await?);
            work(client).await
        })
    };
    match netns {
        None => run(),
        Some(netns) => in_netns(netns, run),
    }
}

/// Runs `work` on a thread that has entered namespace `netns`.
pub fn in_netns<T: Send>(netns: &str, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/var/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {netns}"))?;
            work()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the datastore work inside {netns} panicked"))?
    })
}

impl EtcdState {
    /// The member of lab `name`, listening on `address`.
    pub fn new(name: &str, address: &str) -> EtcdState {
        EtcdState {
            pid: None,
            data_dir: format!("/dev/shm/tortie-lab-{name}.etcd"),
            client_url: format!("http://{address}:{ETCD_CLIENT_PORT}"),
        }
    }

    /// Starts the member inside `netns` (detached, logging to the lab
    /// directory) and waits until it answers.
    pub fn start(&mut self, lab: &str, netns: &str) -> Result<()> {
        let log_path = lab_dir(lab).join("etcd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let peer = "http://127.0.0.1:2380";
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "etcd"])
            .args(["--name", "lab", "--data-dir", &self.data_dir])
            .args(["--listen-client-urls", &self.client_url])
            .args(["--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("lab={peer}")])
            .args(["--logger", "zap"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting etcd (package etcd-server)")?;
        self.pid = Some(child.id());
        let addr: std::net::SocketAddr = self
            .client_url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("etcd client URL {}", self.client_url))?;
        let deadline = Instant::now() + ETCD_START_TIMEOUT;
        let listening = in_netns(netns, || {
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(false)
        })?;
        if !listening {
            bail!(
                "etcd did not listen on {} within {ETCD_START_TIMEOUT:?}; see {}",
                self.client_url,
                log_path.display()
            );
        }
        with_client(
            &format!("etcd:{}", self.client_url),
            Some(netns),
            |client| async move {
                client.ensure_initialized().await?;
                Ok(())
            },
        )
        .with_context(|| format!("etcd at {} (see {})", self.client_url, log_path.display()))
    }

    /// Kills the member (its data directory stays).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            crate::cluster::kill_and_wait(pid);
        }
    }

    /// Kills the member and removes its data.
    pub fn remove(&mut self) -> Option<String> {
        self.kill();
        match std::fs::remove_dir_all(&self.data_dir) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!("removing {}: {e}", self.data_dir)),
        }
    }
}
