//! An HTTP load generator for loopback benchmarks.
//!
//! Open loop ([`open_loop`]): requests are scheduled at a constant rate and
//! each one's latency is measured from the moment it *should* have been
//! sent, so a stalled server shows up as latency instead of silently
//! lowering the offered load (coordinated omission). Closed loop
//! ([`closed_loop`]): a fixed number of clients send back to back, to find
//! the sustainable throughput. Both are bounded in requests and time and
//! refuse any target that is not loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Mutex, Semaphore};

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Load is only ever aimed at this machine.
    #[error("refusing to load {0}: only 127.0.0.1, ::1 and localhost are allowed")]
    NotLoopback(String),
    /// The URL does not parse.
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
}

/// One request, repeated.
#[derive(Debug, Clone)]
pub struct Target {
    /// Full URL (loopback only).
    pub url: String,
    /// Bearer token.
    pub key: String,
    /// Request body.
    pub body: Bytes,
}

impl Target {
    /// A target after checking that `url` points at this machine.
    pub fn new(url: &str, key: &str, body: Bytes) -> Result<Self, LoadError> {
        ensure_loopback_url(url)?;
        Ok(Self { url: url.to_owned(), key: key.to_owned(), body })
    }
}

/// Refuses a URL (`http://`, `redis://`, …) whose host is not this machine:
/// load is only ever aimed at loopback.
pub fn ensure_loopback_url(url: &str) -> Result<(), LoadError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| LoadError::InvalidUrl(url.to_owned()))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(LoadError::NotLoopback(url.to_owned())) }
}

/// What a run measured. Latencies are in microseconds.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed or were answered otherwise.
    pub errors: u64,
    /// Latency of the answered requests (µs).
    pub latency: Histogram<u64>,
    /// From the first send to the last answer.
    pub elapsed: Duration,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `quantile` (0–1), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// A histogram of microseconds, 1 µs to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|err| panic!("histogram bounds: {err}"))
}

fn progress(total: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_owned());
    bar
}

struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Tally {
    fn new() -> Arc<Self> {
        Arc::new(Self { ok: AtomicU64::new(0), errors: AtomicU64::new(0), latency: Mutex::new(histogram()) })
    }

    async fn record(&self, outcome: bool, since: Instant) {
        if outcome {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
            self.latency.lock().await.saturating_record(micros);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn result(&self, elapsed: Duration) -> LoadResult {
        LoadResult {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: self.latency.lock().await.clone(),
            elapsed,
        }
    }
}

async fn send(client: &reqwest::Client, target: &Target) -> bool {
    let sent = client.post(&target.url).bearer_auth(&target.key).body(target.body.clone()).send().await;
    match sent {
        Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
        _ => false,
    }
}

/// A client with a connection pool big enough for `connections` in flight.
pub fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|err| panic!("HTTP client: {err}"))
}

/// Sends `rate` requests per second for `duration` (at most `rate ×
/// duration` requests), with at most `max_in_flight` outstanding; a request
/// that has to wait for a slot still counts its latency from its scheduled
/// time.
pub async fn open_loop(
    target: &Target,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    label: &str,
    quiet: bool,
) -> LoadResult {
    let total = (rate * duration.as_secs_f64()).floor().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let client = client(max_in_flight);
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let tally = Tally::new();
    let bar = progress(total, label, quiet);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let scheduled = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, target, tally, slots, bar) =
            (client.clone(), target.clone(), Arc::clone(&tally), Arc::clone(&slots), bar.clone());
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let outcome = send(&client, &target).await;
            tally.record(outcome, scheduled).await;
            bar.inc(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    tally.result(start.elapsed()).await
}

/// `clients` senders back to back for `duration` (or `max_requests` in all).
pub async fn closed_loop(
    target: &Target,
    clients: usize,
    duration: Duration,
    max_requests: u64,
    label: &str,
    quiet: bool,
) -> LoadResult {
    let client = client(clients);
    let tally = Tally::new();
    let issued = Arc::new(AtomicU64::new(0));
    let bar = progress(max_requests, label, quiet);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (client, target, tally, issued, bar) =
            (client.clone(), target.clone(), Arc::clone(&tally), Arc::clone(&issued), bar.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests {
                let sent = Instant::now();
                let outcome = send(&client, &target).await;
                tally.record(outcome, sent).await;
                bar.inc(1);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    tally.result(start.elapsed()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for url in ["http://127.0.0.1:8080/x", "http://localhost:1/", "http://[::1]:9/"] {
            assert!(Target::new(url, "k", Bytes::new()).is_ok(), "{url}");
        }
        for url in ["http://10.0.0.1/", "http://example.com/", "http://0.0.0.0:80/"] {
            assert!(matches!(Target::new(url, "k", Bytes::new()), Err(LoadError::NotLoopback(_))), "{url}");
        }
        assert!(matches!(Target::new("not a url", "k", Bytes::new()), Err(LoadError::InvalidUrl(_))));
    }

    #[tokio::test]
    async fn an_open_loop_run_is_bounded_and_counts_refusals() {
        // A listener that accepts and closes: every request is an error.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let target = Target::new(&url, "k", Bytes::from_static(b"x")).expect("loopback");
        let result = open_loop(&target, 200.0, Duration::from_millis(100), 4, "test", true).await;
        assert_eq!((result.ok, result.errors), (0, 20));
    }
}
