//! Prometheus metrics: requests by route and status, invocations by
//! function and outcome, queue depth, and duration histograms.
//!
//! Every label takes values from a fixed set, so a tenant cannot grow the
//! exposition (or read another tenant's function names in it): routes are
//! templates, statuses and outcomes are enums, and a function is named only
//! when it is built in; every tenant function is [`TENANT_FUNCTION`].

use crate::builtins;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

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
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(invocations.clone()),
            Box::new(invocation_seconds.clone()),
            Box::new(queue_depth.clone()),
        ] {
            registry.register(collector).expect("each metric is registered once");
        }
        Self { registry, requests, request_seconds, invocations, invocation_seconds, queue_depth }
    }

    /// Counts one call of `function` that ended with `outcome` after `seconds`.
    pub fn observe_invocation(&self, function: &str, outcome: &str, seconds: f64) {
        let function = function_label(function);
        self.invocations.with_label_values(&[function, outcome]).inc();
        self.invocation_seconds.with_label_values(&[function]).observe(seconds);
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
}
