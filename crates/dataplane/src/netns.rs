//! Running work inside another network namespace without moving the
//! process: a fresh OS thread `setns`es into the namespace, runs the work
//! on its own single-threaded tokio runtime (so netlink sockets it opens
//! live in that namespace, and `/proc/sys/net` files it opens are that
//! namespace's), and ends. The calling thread, and every other thread of
//! the process, stay in the host namespace.
//!
//! Hard cases: the namespace file is opened by the caller, so "does not
//! exist" is told apart from "is not a network namespace" (EINVAL from
//! setns) and from other failures; the thread's result comes back over a
//! oneshot channel so the caller's async runtime is never blocked; a
//! panicking worker is reported as an error, not propagated.

use std::fs::File;
use std::future::Future;
use std::io;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

/// Why work could not run in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path} does not exist")]
    Missing { path: String },
    #[error("{path} is not a network namespace")]
    NotANetns { path: String },
    #[error("cannot open network namespace {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter { path: String, source: nix::Error },
    #[error("cannot start a thread for network namespace {path}: {reason}")]
    Thread { path: String, reason: String },
}

/// An opened network namespace.
#[derive(Debug)]
pub struct Netns {
    path: String,
    file: File,
}

impl Netns {
    /// Opens the namespace at `path` (e.g. `/var/run/netns/x`).
    pub fn open(path: &str) -> Result<Netns, NetnsError> {
        match File::open(Path::new(path)) {
            Ok(file) => Ok(Netns {
                path: path.to_string(),
                file,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetnsError::Missing {
                path: path.to_string(),
            }),
            Err(source) => Err(NetnsError::Open {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// The namespace of the calling thread (the host, for the CNI plugin).
    pub fn current() -> Result<Netns, NetnsError> {
        Netns::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `work` on a new thread inside this namespace and returns its
    /// output. `work` builds its future on that thread, so the future
    /// need not be `Send`.
    pub async fn run<W, Fut, R>(&self, work: W) -> Result<R, NetnsError>
    where
        W: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        let path = self.path.clone();
        let file = self.file.try_clone().map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("netns-worker".to_string())
            .spawn(move || {
                let outcome = enter_and_run(&thread_path, &file, work);
                // The receiver only disappears if the caller gave up.
                let _ = tx.send(outcome);
            })
            .map_err(|e| NetnsError::Thread {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => Err(NetnsError::Thread {
                path,
                reason: "the worker thread panicked".to_string(),
            }),
        }
    }
}

fn enter_and_run<W, Fut, R>(path: &str, file: &File, work: W) -> Result<R, NetnsError>
where
    W: FnOnce() -> Fut,
    Fut: Future<Output = R>,
{
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|source| match source {
        nix::Error::EINVAL => NetnsError::NotANetns {
            path: path.to_string(),
        },
        source => NetnsError::Enter {
            path: path.to_string(),
            source,
        },
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NetnsError::Thread {
            path: path.to_string(),
            reason: format!("cannot build a runtime: {e}"),
        })?;
    Ok(runtime.block_on(work()))
}
