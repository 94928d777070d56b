//! The daemon's Prometheus metrics, all under the `tortie_` prefix:
//! apply latency, resyncs, drift repairs, endpoints, policies, set members
//! and errors. Metric handles are cheap clones sharing atomics, handed to
//! whichever task updates them.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every metric the daemon exports.
#[derive(Clone)]
pub struct Metrics {
    pub apply_latency: Histogram,
    pub resyncs: Counter,
    pub drift_repairs: Counter,
    pub endpoints: Gauge,
    pub policies: Gauge,
    pub set_members: Gauge,
    pub errors: Counter,
    pub datastore_updates: Counter,
    pub in_sync: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics {
            // 100 µs to ~26 s, doubling.
            apply_latency: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 18),
            ),
            resyncs: Counter::default(),
            drift_repairs: Counter::default(),
            endpoints: Gauge::default(),
            policies: Gauge::default(),
            set_members: Gauge::default(),
            errors: Counter::default(),
            datastore_updates: Counter::default(),
            in_sync: Gauge::default(),
        };
        let mut r = Registry::with_prefix("tortie");
        r.register(
            "apply_latency_seconds",
            "Time to apply one batch of changes to the kernel",
            m.apply_latency.clone(),
        );
        r.register(
            "resyncs",
            "Full reads of kernel state into the reconcilers",
            m.resyncs.clone(),
        );
        r.register(
            "drift_repairs",
            "Kernel objects changed behind tortie's back and repaired",
            m.drift_repairs.clone(),
        );
        r.register(
            "local_endpoints",
            "Workload and host endpoints on this node",
            m.endpoints.clone(),
        );
        r.register(
            "active_policies",
            "Policies and profiles applying to local endpoints",
            m.policies.clone(),
        );
        r.register(
            "ipset_members",
            "Addresses in the node's IP sets",
            m.set_members.clone(),
        );
        r.register(
            "errors",
            "Errors while programming the kernel or reading the datastore",
            m.errors.clone(),
        );
        r.register(
            "datastore_updates",
            "Updates received from the datastore",
            m.datastore_updates.clone(),
        );
        r.register(
            "datastore_in_sync",
            "1 when the datastore view is complete",
            m.in_sync.clone(),
        );
        (m, r)
    }
}

/// The text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_the_tortie_prefix() {
        let (m, r) = Metrics::new();
        m.resyncs.inc();
        m.apply_latency.observe(0.002);
        let text = render(&r);
        assert!(text.contains("tortie_resyncs_total 1"), "{text}");
        assert!(
            text.contains("tortie_apply_latency_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("tortie_datastore_in_sync"), "{text}");
    }
}
