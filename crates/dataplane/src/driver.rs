//! The loop every desired-state reconciler runs (STYLE.md §2): take
//! desired-state updates from a bounded channel, apply after each batch of
//! them, resync from the kernel every `resync_interval` and apply again,
//! and retry failed changes with backoff.
//!
//! Timing: a resync starts at most `resync_interval` after the previous
//! one started, so drift is found within one interval and repaired by the
//! apply that follows at once. Updates that arrive together are applied
//! together: after the first, everything already queued (up to
//! [`MAX_UPDATES_PER_APPLY`]) is taken before applying.
//!
//! Hard cases: a failed resync is retried (before any apply) with the
//! same backoff as a failed apply, 50 ms doubling up to the interval (the
//! kernel may be briefly busy); an apply whose replies were lost, or whose
//! exchange failed, forces an immediate resync; a due resync is never
//! starved by a flood of updates; the loop ends when the daemon drops the
//! update sender.
//!
//! Reporting: [`run_observed`] tells the daemon what each pass did (for
//! readiness, metrics and logs); a pass that changed the kernel after a
//! resync with no new updates is a drift repair.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// The resync period of every reconciler unless configured otherwise:
/// drift is found within it and repaired by the apply that follows at once
/// (milliseconds), so within one second in all.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_millis(900);
/// Updates taken per apply, so a flood of updates still lets resyncs run.
pub const MAX_UPDATES_PER_APPLY: usize = 10_000;
/// First retry delay after a failure; doubles up to the resync interval.
pub const RETRY_MIN: Duration = Duration::from_millis(50);

/// What one apply did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Kernel changes that took effect.
    pub applied: usize,
    /// Changes the kernel refused; they stay pending and are retried.
    pub failed: usize,
    /// Changes whose outcome is unknown: the kernel must be re-read.
    pub lost: usize,
}

impl ApplyReport {
    pub fn needs_retry(&self) -> bool {
        self.failed > 0 || self.lost > 0
    }
}

/// A reconciler the loop can drive.
pub trait Reconciler {
    type Update;
    type Error: Display;

    /// Folds a desired-state update in (no kernel access).
    fn update(&mut self, update: Self::Update);
    /// Re-reads the kernel's state.
    fn resync(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Makes the kernel match the desired state.
    fn apply(&mut self) -> impl Future<Output = Result<ApplyReport, Self::Error>> + Send;
    fn resync_interval(&self) -> Duration;
    /// For logs.
    fn name(&self) -> &'static str;
}

/// What one pass of the loop did, for the daemon's status and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// An apply finished: what it did, how long it took, whether it
    /// followed a resync, and how many updates it folded in.
    Applied {
        report: ApplyReport,
        elapsed: Duration,
        resynced: bool,
        updates: usize,
    },
    /// The apply or the resync failed outright; retried with backoff.
    Failed { resync: bool },
}

impl Pass {
    /// Kernel objects put back after something outside tortie changed them.
    pub fn drift_repaired(&self) -> usize {
        match *self {
            Pass::Applied {
                report,
                resynced: true,
                updates: 0,
                ..
            } => report.applied,
            _ => 0,
        }
    }

    /// The apply committed everything it had: the kernel matches the
    /// desired state as of this pass.
    pub fn complete(&self) -> bool {
        matches!(self, Pass::Applied { report, .. } if !report.needs_retry())
    }
}

/// Runs `reconciler` until `updates` closes.
pub async fn run<R: Reconciler>(reconciler: &mut R, updates: &mut mpsc::Receiver<R::Update>) {
    run_observed(reconciler, updates, |_| {}).await;
}

/// [`run`], calling `observe` after every pass.
pub async fn run_observed<R: Reconciler>(
    reconciler: &mut R,
    updates: &mut mpsc::Receiver<R::Update>,
    mut observe: impl FnMut(Pass),
) {
    let name = reconciler.name();
    let interval = reconciler.resync_interval();
    let mut next_resync = Instant::now();
    let mut retry: Option<Instant> = None;
    let mut backoff = RETRY_MIN;
    loop {
        let mut taken = 0;
        // A due resync goes first, so a flood of updates cannot starve it.
        let resync_due = Instant::now() >= next_resync
            || tokio::select! {
                biased;
                update = updates.recv() => {
                    let Some(update) = update else {
                        tracing::debug!(reconciler = name, "updates closed; stopping");
                        return;
                    };
                    reconciler.update(update);
                    taken = 1;
                    while taken < MAX_UPDATES_PER_APPLY {
                        let Ok(update) = updates.try_recv() else { break };
                        reconciler.update(update);
                        taken += 1;
                    }
                    false
                }
                () = tokio::time::sleep_until(next_resync) => true,
                () = sleep_until_some(retry) => false,
            };
        let mut resync_failed = false;
        if resync_due {
            next_resync = Instant::now() + interval;
            if let Err(e) = reconciler.resync().await {
                tracing::warn!(reconciler = name, error = %e, "resync failed; retrying");
                resync_failed = true;
                next_resync = Instant::now() + backoff;
            }
        }
        let mut failed = resync_failed;
        if resync_failed {
            observe(Pass::Failed { resync: true });
        } else {
            let started = Instant::now();
            match reconciler.apply().await {
                Ok(report) => {
                    failed = report.needs_retry();
                    if report.lost > 0 {
                        next_resync = Instant::now();
                    }
                    observe(Pass::Applied {
                        report,
                        elapsed: started.elapsed(),
                        resynced: resync_due,
                        updates: taken,
                    });
                }
                Err(e) => {
                    tracing::warn!(reconciler = name, error = %e, "apply failed; resyncing");
                    failed = true;
                    next_resync = Instant::now();
                    observe(Pass::Failed { resync: false });
                }
            }
        }
        if failed {
            // A failed resync is retried by its own timer, an apply by this.
            retry = (!resync_failed).then(|| Instant::now() + backoff);
            backoff = (backoff * 2).min(interval.max(RETRY_MIN));
        } else {
            retry = None;
            backoff = RETRY_MIN;
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reconciler whose kernel is a counter: each apply fails `fail`
    /// more times, and every call is logged.
    struct Fake {
        log: Vec<&'static str>,
        fail: usize,
        fail_resync: usize,
        /// Changes each successful apply reports.
        applied: usize,
    }

    impl Reconciler for Fake {
        type Update = &'static str;
        type Error = String;

        fn update(&mut self, update: &'static str) {
            self.log.push(update);
        }

        async fn resync(&mut self) -> Result<(), String> {
            self.log.push("resync");
            if self.fail_resync > 0 {
                self.fail_resync -= 1;
                return Err("busy".to_string());
            }
            Ok(())
        }

        async fn apply(&mut self) -> Result<ApplyReport, String> {
            self.log.push("apply");
            if self.fail > 0 {
                self.fail -= 1;
                return Ok(ApplyReport {
                    failed: 1,
                    ..ApplyReport::default()
                });
            }
            Ok(ApplyReport {
                applied: self.applied,
                ..ApplyReport::default()
            })
        }

        fn resync_interval(&self) -> Duration {
            Duration::from_secs(1)
        }

        fn name(&self) -> &'static str {
            "fake"
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_updates_resyncs_on_time_and_retries_failures() {
        let mut fake = Fake {
            log: Vec::new(),
            fail: 2,
            fail_resync: 0,
            applied: 0,
        };
        let (tx, mut rx) = mpsc::channel(16);
        let driver = async {
            run(&mut fake, &mut rx).await;
        };
        let feeder = async {
            // Start-up: resync + apply (fails), retried after 50 ms and
            // 100 ms; then two queued updates are applied together.
            tokio::time::sleep(Duration::from_millis(500)).await;
            tx.send("a").await.expect("send");
            tx.send("b").await.expect("send");
            // Let the one-second resync happen, then stop.
            tokio::time::sleep(Duration::from_millis(700)).await;
            drop(tx);
        };
        tokio::join!(driver, feeder);
        assert_eq!(
            fake.log,
            vec![
                "resync", "apply", "apply", "apply", "a", "b", "apply", "resync", "apply"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_resync_is_retried_before_applying() {
        let mut fake = Fake {
            log: Vec::new(),
            fail: 0,
            fail_resync: 2,
            applied: 0,
        };
        let (tx, mut rx) = mpsc::channel::<&'static str>(1);
        let driver = async {
            run(&mut fake, &mut rx).await;
        };
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(tx);
        };
        tokio::join!(driver, stopper);
        // Fails at 0 ms and 50 ms, succeeds at 150 ms, then applies.
        assert_eq!(fake.log, vec!["resync", "resync", "resync", "apply"]);
    }

    #[tokio::test(start_paused = true)]
    async fn passes_report_folded_updates_and_drift_repairs() {
        let mut fake = Fake {
            log: Vec::new(),
            fail: 1,
            fail_resync: 0,
            applied: 3,
        };
        let (tx, mut rx) = mpsc::channel(16);
        let mut passes = Vec::new();
        let driver = async {
            run_observed(&mut fake, &mut rx, |p| passes.push(p)).await;
        };
        let feeder = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send("a").await.expect("send");
            tx.send("b").await.expect("send");
            tokio::time::sleep(Duration::from_millis(900)).await;
            drop(tx);
        };
        tokio::join!(driver, feeder);
        // Start-up resync + an apply the kernel partly refuses; its retry
        // (no resync in that pass, so not drift); the two updates folded
        // into one apply; the 1 s resync, whose apply changed the kernel
        // with no update asking for it: a drift repair.
        let summary: Vec<(bool, usize, usize)> = passes
            .iter()
            .map(|p| match *p {
                Pass::Applied { updates, .. } => (p.complete(), updates, p.drift_repaired()),
                Pass::Failed { .. } => (false, 0, 0),
            })
            .collect();
        assert_eq!(
            summary,
            vec![(false, 0, 0), (true, 0, 0), (true, 2, 0), (true, 0, 3)]
        );
    }
}
