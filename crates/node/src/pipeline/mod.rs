//! The dataplane side of the daemon: the reconcilers (nftables policy,
//! routes, the two VXLAN devices, `tunl0` where the kernel has IPIP, links
//! and sysctls), each in its own task
//! running the driver loop, fed from the calculation's deltas.
//!
//! Start-up takeover (a restarted daemon must not disturb what is
//! installed): the reconcilers are created only once the datastore is in
//! sync, and the first, complete delta is folded into them *before* their
//! loops start, so their first resync-and-apply compares the kernel with
//! the whole desired state and changes only what differs. Nothing is
//! flushed; established connections never see a gap.
//!
//! Readiness: every update sent to a reconciler is counted; its driver
//! reports how many it folded into each apply and whether the apply
//! completed. The dataplane is *programmed* when every reconciler has
//! folded in everything sent to it and its last apply completed.

mod policy;
pub mod translate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tortie_calc::Delta;
use tortie_dataplane::driver::{self, Pass, Reconciler};
use tortie_dataplane::fastpath::FastPath;
use tortie_dataplane::fastpath::attacher::Attacher;
use tortie_dataplane::ipip::{IpipConfig, IpipReconciler, TunnelDevice};
use tortie_dataplane::links::sysctls::SysctlPolicy;
use tortie_dataplane::links::{InterfaceStatus, LinkConfig, LinkReconciler, LinkUpdate};
use tortie_dataplane::routes::{RouteConfig, RouteReconciler, RouteUpdate};
use tortie_dataplane::vxlan::{VxlanConfig, VxlanReconciler, VxlanUpdate};

pub use policy::TABLE;
use translate::{HostFacts, Translator};

use crate::metrics::Metrics;

/// Queue depth of each reconciler's updates (the driver folds up to
/// 10,000 per apply; the daemon waits when a queue is full).
const QUEUE: usize = 4096;

/// How long after a workload interface appears the fast path is attached
/// to it: the CNI plugin (and a chained bandwidth plugin) is normally done
/// with it by then, and is not held up by the attach (docs/node.md).
const FAST_PATH_ATTACH_DELAY: Duration = Duration::from_millis(200);

/// What the reconcilers need to start.
#[derive(Debug)]
pub struct DataplaneConfig {
    pub host: HostFacts,
    pub resync_interval: Duration,
    pub interface_prefixes: Vec<String>,
    /// The established-flow fast path, when this kernel runs it and it is
    /// wanted: the links reconciler attaches it to workload interfaces.
    pub fast_path: Option<FastPath>,
}

/// One reconciler's progress, shared between the daemon and its task.
#[derive(Debug, Default)]
struct Progress {
    sent: AtomicU64,
    folded: AtomicU64,
    complete: AtomicBool,
    /// The first complete apply (start-up takeover) has happened; what it
    /// changed was the restart's catch-up, not drift.
    taken_over: AtomicBool,
}

impl Progress {
    fn programmed(&self) -> bool {
        self.complete.load(Ordering::Acquire)
            && self.folded.load(Ordering::Acquire) == self.sent.load(Ordering::Acquire)
    }
}

/// A reconciler's queue and progress.
struct Feed<U> {
    tx: mpsc::Sender<U>,
    progress: Arc<Progress>,
}

impl<U> Clone for Feed<U> {
    fn clone(&self) -> Self {
        Feed {
            tx: self.tx.clone(),
            progress: Arc::clone(&self.progress),
        }
    }
}

impl<U> Feed<U> {
    /// False when the reconciler's task has ended.
    async fn send(&self, update: U) -> bool {
        self.progress.sent.fetch_add(1, Ordering::AcqRel);
        self.tx.send(update).await.is_ok()
    }
}

/// The running reconcilers.
pub struct Dataplane {
    translator: Translator,
    policy: Feed<Arc<Delta>>,
    routes: Feed<RouteUpdate>,
    vxlan_v4: Feed<VxlanUpdate>,
    vxlan_v6: Feed<VxlanUpdate>,
    /// Only where the kernel has IPIP.
    ipip: Option<Feed<Option<TunnelDevice>>>,
    links: mpsc::Sender<LinkUpdate>,
    render_errors: Arc<AtomicU64>,
    /// Every interface's latest state, as the links reconciler reports it.
    interfaces: Arc<Mutex<HashMap<String, InterfaceStatus>>>,
    /// Woken when a reconciler has caught up with everything sent to it.
    caught_up: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts `reconciler` with `initial` already folded in; returns its feed.
fn spawn<R>(
    mut reconciler: R,
    initial: Vec<R::Update>,
    metrics: &Metrics,
    caught_up: &Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Feed<R::Update>
where
    R: Reconciler + Send + 'static,
    R::Update: Send + 'static,
{
    let progress = Arc::new(Progress::default());
    progress.sent.store(initial.len() as u64, Ordering::Release);
    progress
        .folded
        .store(initial.len() as u64, Ordering::Release);
    for update in initial {
        reconciler.update(update);
    }
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let task_progress = Arc::clone(&progress);
    let metrics = metrics.clone();
    let caught_up = Arc::clone(caught_up);
    tasks.push(tokio::spawn(async move {
        let name = reconciler.name();
        driver::run_observed(&mut reconciler, &mut rx, |pass| {
            let was = task_progress.programmed();
            observe(name, pass, &task_progress, &metrics);
            if !was && task_progress.programmed() {
                caught_up.notify_one();
            }
        })
        .await;
    }));
    Feed { tx, progress }
}

fn observe(name: &'static str, pass: Pass, progress: &Progress, metrics: &Metrics) {
    match pass {
        Pass::Applied {
            report,
            elapsed,
            resynced,
            updates,
        } => {
            // `complete` before `folded`: a reader in between sees the
            // reconciler behind, never a failed pass as programmed.
            progress.complete.store(pass.complete(), Ordering::Release);
            progress.folded.fetch_add(updates as u64, Ordering::AcqRel);
            let taking_over = !progress.taken_over.load(Ordering::Acquire);
            if taking_over && pass.complete() {
                progress.taken_over.store(true, Ordering::Release);
                tracing::info!(
                    reconciler = name,
                    changes = report.applied,
                    "took over the installed state"
                );
            }
            if resynced {
                metrics.resyncs.inc();
            }
            if updates > 0 {
                metrics.apply_latency.observe(elapsed.as_secs_f64());
            }
            let repaired = if taking_over {
                0
            } else {
                pass.drift_repaired()
            };
            if repaired > 0 {
                metrics.drift_repairs.inc_by(repaired as u64);
                tracing::info!(
                    reconciler = name,
                    changes = repaired,
                    "repaired kernel state changed outside tortie"
                );
            }
            if !pass.complete() {
                metrics.errors.inc();
            }
        }
        Pass::Failed { .. } => {
            progress.complete.store(false, Ordering::Release);
            metrics.errors.inc();
        }
    }
}

impl Dataplane {
    /// Opens every reconciler in this network namespace with the first,
    /// complete delta folded in, and starts their loops.
    pub async fn start(
        config: DataplaneConfig,
        first: Delta,
        metrics: &Metrics,
    ) -> Result<Dataplane> {
        let mut translator = Translator::new(config.host.clone());
        let updates = translator.translate(&first);
        for problem in &updates.problems {
            tracing::warn!(%problem, "dataplane");
        }
        let mut tasks = Vec::new();
        let render_errors = Arc::new(AtomicU64::new(0));
        let caught_up = Arc::new(Notify::new());

        let policy = policy::PolicyDriver::open(config.resync_interval, Arc::clone(&render_errors))
            .context("opening nftables")?;
        let policy = spawn(
            policy,
            vec![Arc::new(first)],
            metrics,
            &caught_up,
            &mut tasks,
        );

        let routes = RouteReconciler::open(RouteConfig {
            resync_interval: config.resync_interval,
            ..RouteConfig::default()
        })
        .context("opening the routes reconciler")?;
        let routes = spawn(routes, updates.routes, metrics, &caught_up, &mut tasks);

        let mut vxlan = Vec::new();
        for (ipv6, initial) in [(false, updates.vxlan_v4), (true, updates.vxlan_v6)] {
            let reconciler = VxlanReconciler::open(VxlanConfig {
                ipv6,
                resync_interval: config.resync_interval,
                ..VxlanConfig::default()
            })
            .context("opening the VXLAN reconciler")?;
            vxlan.push(spawn(reconciler, initial, metrics, &caught_up, &mut tasks));
        }
        let vxlan_v6 = vxlan.pop().expect("two VXLAN feeds");
        let vxlan_v4 = vxlan.pop().expect("two VXLAN feeds");

        let ipip = if config.host.ipip_supported {
            let reconciler = IpipReconciler::open(IpipConfig {
                resync_interval: config.resync_interval,
                ..IpipConfig::default()
            })
            .context("opening the IPIP reconciler")?;
            Some(spawn(
                reconciler,
                updates.ipip,
                metrics,
                &caught_up,
                &mut tasks,
            ))
        } else {
            None
        };

        let defaults = LinkConfig::default();
        let mut links = LinkReconciler::open(LinkConfig {
            interface_prefixes: config.interface_prefixes.clone(),
            resync_interval: config.resync_interval,
            sysctls: SysctlPolicy {
                conntrack_be_liberal: config.fast_path.is_some(),
                ..defaults.sysctls
            },
            ..defaults
        })
        .context("opening the links reconciler")?;
        if let Some(fast_path) = config.fast_path {
            match Attacher::start(fast_path, FAST_PATH_ATTACH_DELAY) {
                Ok(attacher) => links = links.with_fast_path(attacher),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the fast path's worker; running without it")
                }
            }
        }
        for update in updates.links {
            links.update(update);
        }
        let (links_tx, links_rx) = mpsc::channel(QUEUE);
        let (events_tx, mut events_rx) = mpsc::channel(QUEUE);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = links.run(links_rx, events_tx).await {
                tracing::error!(error = %e, "the links reconciler stopped");
            }
        }));
        // Interface events make pending routes installable (or not), and
        // give endpoints their status.
        let to_routes = routes.clone();
        let interfaces = Arc::new(Mutex::new(HashMap::new()));
        let seen = Arc::clone(&interfaces);
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                if let Ok(mut seen) = seen.lock() {
                    match event.status {
                        InterfaceStatus::Absent => seen.remove(&event.name),
                        status => seen.insert(event.name.clone(), status),
                    };
                }
                if !to_routes.send(RouteUpdate::Interface(event)).await {
                    break;
                }
            }
        }));

        Ok(Dataplane {
            translator,
            policy,
            routes,
            vxlan_v4,
            vxlan_v6,
            ipip,
            links: links_tx,
            render_errors,
            interfaces,
            caught_up,
            tasks,
        })
    }

    /// Sends one delta to the reconcilers it concerns. Problems (things
    /// the kernel cannot do) are returned for the status.
    pub async fn apply(&mut self, delta: Delta) -> Vec<String> {
        let updates = self.translator.translate(&delta);
        let mut ok = self.policy.send(Arc::new(delta)).await;
        for u in updates.vxlan_v4 {
            ok &= self.vxlan_v4.send(u).await;
        }
        for u in updates.vxlan_v6 {
            ok &= self.vxlan_v6.send(u).await;
        }
        if let Some(ipip) = &self.ipip {
            for u in updates.ipip {
                ok &= ipip.send(u).await;
            }
        }
        for u in updates.routes {
            ok &= self.routes.send(u).await;
        }
        for u in updates.links {
            ok &= self.links.send(u).await.is_ok();
        }
        let mut problems = updates.problems;
        if !ok {
            problems.push("a dataplane reconciler has stopped; restart the daemon".to_string());
        }
        problems
    }

    /// The reconcilers whose kernel state is behind what was sent to
    /// them (empty: everything sent so far is programmed).
    pub fn behind(&self) -> Vec<&'static str> {
        [
            ("nftables", &self.policy.progress),
            ("routes", &self.routes.progress),
            ("vxlan", &self.vxlan_v4.progress),
            ("vxlan-v6", &self.vxlan_v6.progress),
        ]
        .into_iter()
        .chain(self.ipip.as_ref().map(|f| ("ipip", &f.progress)))
        .filter(|(_, p)| !p.programmed())
        .map(|(name, _)| name)
        .collect()
    }

    /// Woken when a reconciler has just caught up with everything sent to
    /// it (readiness may have changed; the status need not wait for its
    /// next tick).
    pub fn caught_up(&self) -> Arc<Notify> {
        Arc::clone(&self.caught_up)
    }

    /// Whether each of `ifaces` is oper-up (in order).
    pub fn interfaces_up<'a>(&self, ifaces: impl Iterator<Item = &'a str>) -> Vec<bool> {
        match self.interfaces.lock() {
            Ok(seen) => ifaces
                .map(|i| seen.get(i) == Some(&InterfaceStatus::Up))
                .collect(),
            Err(_) => ifaces.map(|_| false).collect(),
        }
    }

    /// The pod MTU for `/var/lib/calico/mtu`.
    pub fn pod_mtu(&self) -> u32 {
        self.translator.pod_mtu()
    }

    /// Deltas that could not be rendered into nftables so far.
    pub fn render_errors(&self) -> u64 {
        self.render_errors.load(Ordering::Relaxed)
    }

    /// Stops the reconcilers, leaving the kernel as it is.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_dataplane::driver::ApplyReport;

    fn applied(changes: usize, resynced: bool) -> Pass {
        Pass::Applied {
            report: ApplyReport {
                applied: changes,
                ..ApplyReport::default()
            },
            elapsed: Duration::from_millis(1),
            resynced,
            updates: 0,
        }
    }

    #[test]
    fn the_start_up_takeover_is_not_counted_as_drift() {
        let (metrics, _registry) = Metrics::new();
        let progress = Progress::default();
        observe("test", applied(500, true), &progress, &metrics);
        assert_eq!(metrics.drift_repairs.get(), 0, "takeover");
        observe("test", applied(0, true), &progress, &metrics);
        observe("test", applied(3, true), &progress, &metrics);
        assert_eq!(metrics.drift_repairs.get(), 3, "a later repair");
        assert!(progress.programmed());
    }
}
