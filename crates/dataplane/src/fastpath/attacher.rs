//! Attaching and detaching off the reconcilers' path. Each tcx attach
//! and detach waits for an RCU grace period (about 8 ms on the build
//! machine) while the kernel holds its rtnl lock, so doing it inline would
//! hold up interface events (and with them pod routes) by that much per
//! interface, and a CNI plugin creating the interface at that moment would
//! wait too.
//!
//! [`Attacher`] owns the [`FastPath`] on a thread of its own and takes
//! requests by interface index; the latest request for an interface wins.
//! Attaching waits `delay` after the request, so the CNI plugin (and any
//! chained plugin that adds a qdisc) is normally done with the interface
//! first; detaching is done at once. The thread inherits the network
//! namespace of the thread that starts it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::FastPath;

enum Request {
    /// Attach to (or detach from) one interface.
    Want { ifindex: u32, attached: bool },
    /// Exactly these interfaces should have it (a resync).
    Only(HashSet<u32>),
}

/// The fast path's worker thread and the way to reach it. Dropping it
/// waits for the worker to detach everything (one grace period each).
pub struct Attacher {
    requests: Option<mpsc::Sender<Request>>,
    attached: Arc<AtomicUsize>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Attacher {
    /// Starts the worker; attaches happen `delay` after they are asked for.
    pub fn start(fast_path: FastPath, delay: Duration) -> std::io::Result<Attacher> {
        let (requests, inbox) = mpsc::channel();
        let attached = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&attached);
        let worker = std::thread::Builder::new()
            .name("fast-path".into())
            .spawn(move || work(fast_path, inbox, delay, &count))?;
        Ok(Attacher {
            requests: Some(requests),
            attached,
            worker: Some(worker),
        })
    }

    fn send(&self, request: Request) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
    }

    /// Asks for the program on `ifindex` (or off it).
    pub fn want(&self, ifindex: u32, attached: bool) {
        self.send(Request::Want { ifindex, attached });
    }

    /// Asks for the program on exactly `ifindexes`.
    pub fn only(&self, ifindexes: HashSet<u32>) {
        self.send(Request::Only(ifindexes));
    }

    /// How many interfaces have it now (shared, updated by the worker).
    pub fn attached(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.attached)
    }
}

impl Drop for Attacher {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The worker: pending attaches by interface with the time they are due;
/// detaches and resyncs are applied as they arrive. Ends when the
/// [`Attacher`] is dropped.
fn work(
    mut fast_path: FastPath,
    inbox: mpsc::Receiver<Request>,
    delay: Duration,
    attached: &AtomicUsize,
) {
    let mut due: BTreeMap<u32, Instant> = BTreeMap::new();
    loop {
        let next_due = due.values().min().copied();
        let request = match next_due {
            Some(at) => inbox.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match request {
            Ok(Request::Want {
                ifindex,
                attached: true,
            }) => {
                if !fast_path.is_attached(ifindex) {
                    due.entry(ifindex).or_insert_with(|| Instant::now() + delay);
                }
            }
            Ok(Request::Want {
                ifindex,
                attached: false,
            }) => {
                due.remove(&ifindex);
                if fast_path.is_attached(ifindex) {
                    fast_path.detach(ifindex);
                }
            }
            Ok(Request::Only(wanted)) => {
                fast_path.forget_detached();
                fast_path.retain(|i| wanted.contains(&i));
                due.retain(|i, _| wanted.contains(i));
                let now = Instant::now();
                for ifindex in wanted {
                    if !fast_path.is_attached(ifindex) {
                        due.entry(ifindex).or_insert(now);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // One attach per turn, so requests that arrived meanwhile (a
        // detach, say) wait for at most one grace period.
        let now = Instant::now();
        let ready = due.iter().find(|(_, at)| **at <= now).map(|(i, _)| *i);
        if let Some(ifindex) = ready {
            due.remove(&ifindex);
            if let Err(e) = fast_path.attach(ifindex) {
                tracing::warn!(ifindex, error = %e, "cannot attach the fast path; retrying at the next resync");
            }
        }
        attached.store(fast_path.attached(), Ordering::Relaxed);
    }
}
