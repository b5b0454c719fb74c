//! Prometheus metrics: requests by route and status, invocations by
//! function and outcome, queue depth, and duration histograms.
//!
//! Every label takes values from a fixed set, so a tenant cannot grow the
//! exposition (or read another tenant's function names in it): routes are
//! templates, statuses and outcomes are enums, and a function is named only
//! when it is built in; every tenant function is [`TENANT_FUNCTION`]. The
//! per-tenant queue gauges name at most [`TENANT_LABELS`] tenants (the
//! ones with the most waiting) and sum the rest under [`OTHER_TENANTS`].

use crate::builtins;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sluice_core::TenantId;
use sluice_scheduler::TenantQueue;

/// Tenants the per-tenant queue gauges name, the busiest first.
pub const TENANT_LABELS: usize = 20;

/// The `tenant` label of the jobs of every busy tenant past [`TENANT_LABELS`].
pub const OTHER_TENANTS: &str = "other";

/// The `function` label of every call of a tenant's own function.
pub const TENANT_FUNCTION: &str = "tenant";

/// The `function` label of a call of `name`: its name when built in,
/// [`TENANT_FUNCTION`] otherwise.
pub fn function_label(name: &str) -> &'static str {
    builtins::transform(name).map_or(TENANT_FUNCTION, |builtin| builtin.name)
}

/// The metrics one node exports on `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template and status code.
    pub requests: IntCounterVec,
    /// HTTP request latency by route template.
    pub request_seconds: HistogramVec,
    /// Function calls by [`function_label`] and outcome.
    invocations: IntCounterVec,
    /// Function call wall time by [`function_label`].
    invocation_seconds: HistogramVec,
    /// Jobs accepted and not finished, as of the last scrape.
    pub queue_depth: IntGauge,
    /// Jobs waiting and running per tenant, as of the last scrape.
    tenant_jobs: IntGaugeVec,
    /// Compiled functions this node holds in memory, as of the last scrape.
    pub loaded_functions: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let requests = IntCounterVec::new(
            Opts::new("sluice_http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("sluice_http_request_duration_seconds", "HTTP request latency").buckets(buckets.clone()),
            &["route"],
        )
        .expect("valid metric");
        let invocations = IntCounterVec::new(
            Opts::new("sluice_invocations_total", "Function calls by function and outcome"),
            &["function", "outcome"],
        )
        .expect("valid metric");
        let invocation_seconds = HistogramVec::new(
            HistogramOpts::new("sluice_invocation_duration_seconds", "Function call wall time").buckets(buckets),
            &["function"],
        )
        .expect("valid metric");
        let queue_depth =
            IntGauge::new("sluice_queue_depth", "Jobs accepted and not yet finished").expect("valid metric");
        let tenant_jobs = IntGaugeVec::new(
            Opts::new("sluice_tenant_jobs", "Jobs waiting or running per tenant (the busiest, the rest as `other`)"),
            &["tenant", "state"],
        )
        .expect("valid metric");
        let loaded_functions = IntGauge::new(
            "sluice_loaded_functions",
            "Compiled functions held in memory (built-ins included), bounded by --max-loaded-functions",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(invocations.clone()),
            Box::new(invocation_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(tenant_jobs.clone()),
            Box::new(loaded_functions.clone()),
        ] {
            registry.register(collector).expect("each metric is registered once");
        }
        Self {
            registry,
            requests,
            request_seconds,
            invocations,
            invocation_seconds,
            queue_depth,
            tenant_jobs,
            loaded_functions,
        }
    }

    /// Counts one call of `function` that ended with `outcome` after `seconds`.
    pub fn observe_invocation(&self, function: &str, outcome: &str, seconds: f64) {
        let function = function_label(function);
        self.invocations.with_label_values(&[function, outcome]).inc();
        self.invocation_seconds.with_label_values(&[function]).observe(seconds);
    }

    /// Sets the per-tenant gauges from `busy` (the busiest first): the first
    /// [`TENANT_LABELS`] by id, the rest summed under [`OTHER_TENANTS`];
    /// tenants no longer busy disappear.
    pub fn set_tenant_queues(&self, busy: &[(TenantId, TenantQueue)]) {
        self.tenant_jobs.reset();
        let (named, rest) = busy.split_at(busy.len().min(TENANT_LABELS));
        let set = |tenant: &str, queue: &TenantQueue| {
            for (state, count) in [("waiting", queue.queued), ("running", queue.running)] {
                self.tenant_jobs.with_label_values(&[tenant, state]).set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        };
        for (tenant, queue) in named {
            set(tenant.as_str(), queue);
        }
        if !rest.is_empty() {
            let others = rest.iter().fold(TenantQueue::default(), |sum, (_, queue)| TenantQueue {
                queued: sum.queued + queue.queued,
                running: sum.running + queue.running,
                ..sum
            });
            set(OTHER_TENANTS, &others);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_function_is_labelled_tenant_and_a_builtin_by_name() {
        let metrics = Metrics::new();
        metrics.observe_invocation("acme-secret-thumbnailer", "ok", 0.01);
        metrics.observe_invocation("resize", "ok", 0.01);
        let text = metrics.render();
        assert!(text.contains("sluice_invocations_total{function=\"tenant\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("sluice_invocations_total{function=\"resize\",outcome=\"ok\"} 1"), "{text}");
        assert!(!text.contains("acme"), "{text}");
    }

    #[test]
    fn past_the_named_tenants_the_rest_are_summed_as_other() {
        let metrics = Metrics::new();
        let busy: Vec<(TenantId, TenantQueue)> = (0..TENANT_LABELS + 5)
            .map(|n| {
                (
                    TenantId::from(format!("t{n}").as_str()),
                    TenantQueue { queued: 2, running: 1, ..TenantQueue::default() },
                )
            })
            .collect();
        metrics.set_tenant_queues(&busy);
        let text = metrics.render();
        assert!(text.contains("sluice_tenant_jobs{state=\"waiting\",tenant=\"t0\"} 2"), "{text}");
        assert!(text.contains("sluice_tenant_jobs{state=\"waiting\",tenant=\"other\"} 10"), "{text}");
        assert!(text.contains("sluice_tenant_jobs{state=\"running\",tenant=\"other\"} 5"), "{text}");
        assert!(!text.contains(&format!("tenant=\"t{TENANT_LABELS}\"")), "{text}");
        metrics.set_tenant_queues(&[]);
        assert!(!metrics.render().contains("sluice_tenant_jobs{"), "idle tenants disappear");
    }
}
