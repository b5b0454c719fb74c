//! P8: one node under steady load for minutes. A no-op function (the
//! hostile fixture's `echo` of a 1-byte body) is called at 70 % of the
//! node's measured maximum, open loop, and throughput, latency and the
//! node's memory are sampled window by window: a node that keeps something
//! per request, or slows as what it keeps grows, shows as a slope.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;

use super::node::Node;
use super::scenarios::{Effort, HOSTILE_FIXTURE, guest, on_own_thread};
use crate::loadgen::{self, LoadResult, Target};

/// Concurrent clients of the run that finds the maximum rate.
pub const CLIENTS: usize = 16;

/// The share of the maximum rate the soak offers.
pub const LOAD_FRACTION: f64 = 0.7;

/// One window of the soak.
#[derive(Debug, Clone)]
pub struct SoakWindow {
    /// Seconds from the start of the soak to the end of this window.
    pub at_s: f64,
    /// What the window measured.
    pub result: LoadResult,
    /// The node's resident memory after the window, MiB.
    pub rss_mib: f64,
}

/// The whole soak.
#[derive(Debug, Clone)]
pub struct SoakRun {
    /// Calls per second with [`CLIENTS`] closed-loop clients.
    pub max_rate: f64,
    /// What the soak offered, calls per second.
    pub offered: f64,
    /// The windows, in order.
    pub windows: Vec<SoakWindow>,
    /// The node's data directory's usage log at the end, bytes.
    pub usage_log_bytes: u64,
    /// Calls the node answered in all, including the maximum-rate run.
    pub calls: u64,
    /// How often the node aggregated usage (its `--meter-interval`).
    pub meter_interval: Duration,
}

impl SoakRun {
    /// The windows of the baseline (the second tenth of the run, after
    /// warm-up; the second minute of a ten-minute soak) and of the last
    /// tenth.
    fn baseline_and_last(&self) -> (Vec<&SoakWindow>, Vec<&SoakWindow>) {
        let total = self.windows.last().map_or(0.0, |window| window.at_s);
        let tenth = total / 10.0;
        // A window belongs to the span its end falls in.
        let baseline = self.windows.iter().filter(|w| w.at_s > tenth + 1e-6 && w.at_s <= 2.0 * tenth + 1e-6).collect();
        let last = self.windows.iter().filter(|w| w.at_s > total - tenth + 1e-6).collect();
        (baseline, last)
    }

    /// Change in percent of `measure` from the baseline to the last tenth.
    fn change(&self, measure: impl Fn(&[&SoakWindow]) -> f64) -> f64 {
        let (baseline, last) = self.baseline_and_last();
        if baseline.is_empty() || last.is_empty() {
            return f64::NAN;
        }
        let (from, to) = (measure(&baseline), measure(&last));
        (to - from) / from * 100.0
    }

    /// P8: throughput change from the baseline to the end, %.
    pub fn throughput_change(&self) -> f64 {
        self.change(|windows| {
            let ok: u64 = windows.iter().map(|w| w.result.ok).sum();
            let seconds: f64 = windows.iter().map(|w| w.result.elapsed.as_secs_f64()).sum();
            ok as f64 / seconds.max(1e-9)
        })
    }

    /// p99 change from the baseline to the end, %.
    pub fn p99_change(&self) -> f64 {
        self.change(|windows| merged(windows).latency_ms(0.99))
    }

    /// RSS growth from the baseline to the end, %.
    pub fn rss_growth(&self) -> f64 {
        self.change(|windows| windows.iter().map(|w| w.rss_mib).sum::<f64>() / windows.len() as f64)
    }

    /// Calls that failed during the soak.
    pub fn errors(&self) -> u64 {
        self.windows.iter().map(|w| w.result.errors).sum()
    }
}

/// The windows' latencies as one histogram.
fn merged(windows: &[&SoakWindow]) -> LoadResult {
    let mut latency = loadgen::histogram();
    let (mut ok, mut errors, mut elapsed) = (0, 0, Duration::ZERO);
    for window in windows {
        let _ = latency.add(&window.result.latency);
        ok += window.result.ok;
        errors += window.result.errors;
        elapsed += window.result.elapsed;
    }
    LoadResult { ok, errors, latency, elapsed }
}

/// Starts a node with the request-rate limits out of the way (the node's
/// own keeping is what is measured), finds its maximum rate for the no-op
/// call, then offers [`LOAD_FRACTION`] of it for `effort.soak`. The
/// node aggregates usage at its default interval, or often enough that a
/// short soak still sees eight rounds of it.
pub async fn soak_run(effort: Effort) -> anyhow::Result<SoakRun> {
    let meter_interval = Duration::from_secs((effort.soak.as_secs() / 8).clamp(1, 60));
    let interval = format!("{}s", meter_interval.as_secs());
    let node = tokio::task::spawn_blocking(move || {
        Node::start(&["--rate", "1000000", "--burst", "1000000", "--meter-interval", &interval])
    })
    .await
    .context("start the node")??;
    let key = node.tenant("soak").await?;
    node.deploy(&key, "echo", &guest(HOSTILE_FIXTURE)?).await?;
    let target = Target::new(&format!("{}/v1/functions/echo/invoke", node.url), &key, Bytes::from_static(b"x"))?;

    let probe = target.clone();
    let run = effort.run;
    let max = on_own_thread(move || {
        Box::pin(async move { loadgen::closed_loop(&probe, CLIENTS, run, u64::MAX, "soak: maximum", true).await })
    })
    .await?;
    if max.ok == 0 {
        bail!("no call succeeded at the maximum rate ({} errors)", max.errors);
    }
    let offered = max.throughput() * LOAD_FRACTION;
    let mut calls = max.ok;
    let mut windows = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < effort.soak {
        let window = target.clone();
        let length = effort.soak_window;
        let result = on_own_thread(move || {
            Box::pin(async move { loadgen::open_loop(&window, offered, length, 256, "soak", true).await })
        })
        .await?;
        calls += result.ok;
        windows.push(SoakWindow { at_s: started.elapsed().as_secs_f64(), result, rss_mib: node.memory_mib("VmRSS") });
    }
    let usage_log_bytes = node.data_file_bytes("usage.log");
    Ok(SoakRun { max_rate: max.throughput(), offered, windows, usage_log_bytes, calls, meter_interval })
}
