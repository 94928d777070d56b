//! Helpers of the dataplane kernel tests (they need root) on top of
//! `tortie_testkit::TestNetns`, which owns the namespaces, the bounded
//! commands inside them and the threads `setns`ed into them: bounded
//! polling for what a reconciler does in the background, and picking
//! routes out of `ip -j route show`.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::Value;

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

/// The `ip -j route show` entries whose `dst` is `dst`.
pub fn routes_to(routes: &[Value], dst: &str) -> Vec<Value> {
    routes
        .iter()
        .filter(|r| r["dst"].as_str() == Some(dst))
        .cloned()
        .collect()
}
