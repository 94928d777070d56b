//! The policy reconciler as the driver loop sees it: calculation deltas
//! rendered into tortie's nftables table, applied as one transaction per
//! batch.
//!
//! Drift: each resync first asks the kernel for the ruleset generation
//! (one small request) and reads the table only when it moved; every
//! [`FULL_READ_EVERY`]th resync reads it regardless, which catches the
//! one change the generation check can miss (see
//! `Reconciler::resync_if_changed`). So a flushed table or a deleted rule
//! is found within one resync interval at a cost of one request per
//! interval while nothing changes.
//!
//! The nftables socket calls block (they are quick, except a first load of
//! a large ruleset); they run under `block_in_place`, so the daemon's other
//! tasks keep their worker thread.

use std::sync::Arc;
use std::time::Duration;

use tortie_calc::Delta;
use tortie_dataplane::driver::{self, ApplyReport};
use tortie_dataplane::nft::{self, Family, NftError, TableId};
use tortie_render::PolicyRenderer;

/// The name of tortie's table (family `inet`).
pub const TABLE: &str = "tortie";
/// Every this many resyncs, read the table even if the generation says
/// nothing changed.
const FULL_READ_EVERY: u32 = 30;

/// Renders deltas and keeps the table.
pub struct PolicyDriver {
    nft: nft::Reconciler,
    renderer: PolicyRenderer,
    resyncs: u32,
    resync_interval: Duration,
    /// Deltas that could not be rendered, for metrics.
    render_errors: Arc<std::sync::atomic::AtomicU64>,
}

impl PolicyDriver {
    /// Opens the table's reconciler in this network namespace. Nothing is
    /// read or written until the first resync.
    pub fn open(
        resync_interval: Duration,
        render_errors: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<PolicyDriver, NftError> {
        Ok(PolicyDriver {
            nft: nft::Reconciler::open(TableId::new(Family::Inet, TABLE))?,
            renderer: PolicyRenderer::new(),
            resyncs: 0,
            resync_interval,
            render_errors,
        })
    }
}

impl driver::Reconciler for PolicyDriver {
    type Update = Arc<Delta>;
    type Error = NftError;

    fn update(&mut self, delta: Arc<Delta>) {
        if let Err(e) = self.renderer.apply(&delta, self.nft.desired_mut()) {
            self.render_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "could not render a policy change; the rest is applied");
        }
    }

    async fn resync(&mut self) -> Result<(), NftError> {
        let full = self.resyncs.is_multiple_of(FULL_READ_EVERY);
        self.resyncs = self.resyncs.wrapping_add(1);
        tokio::task::block_in_place(|| {
            if full {
                self.nft.resync()
            } else {
                self.nft.resync_if_changed().map(|_| ())
            }
        })
    }

    async fn apply(&mut self) -> Result<ApplyReport, NftError> {
        let report = tokio::task::block_in_place(|| self.nft.apply())?;
        for failure in &report.failures {
            tracing::warn!(item = %failure.item, reason = %failure.reason, "nftables refused a change; retrying");
        }
        Ok(ApplyReport {
            applied: report.messages,
            failed: report.failures.len(),
            lost: 0,
        })
    }

    fn resync_interval(&self) -> Duration {
        self.resync_interval
    }

    fn name(&self) -> &'static str {
        "nftables"
    }
}
