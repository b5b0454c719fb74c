//! The report's noisy-neighbour section: a quiet tenant's sync calls alone,
//! then while another tenant's burst of async jobs drains, on a real
//! `sluice serve` process in embedded mode and in Redis mode. It shows
//! that a burst is queued whole (not refused) and that the quiet tenant
//! does not wait behind it, and how fast the backlog drains.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::Mutex;

use super::node::Node;
use super::scenarios::Effort;
use crate::loadgen::{self, LoadResult, Target};

/// The quiet tenant's steady rate, requests per second.
pub const QUIET_RATE: f64 = 10.0;

/// Parallel submitters of the burst.
const SUBMITTERS: usize = 8;

/// One mode's run.
pub struct NeighbourRun {
    /// `embedded` or `redis`.
    pub mode: &'static str,
    /// The quiet tenant alone.
    pub solo: LoadResult,
    /// The quiet tenant while the backlog drains.
    pub during: LoadResult,
    /// Jobs the noisy tenant submitted.
    pub submitted: usize,
    /// What its submissions were answered: status → count.
    pub answers: BTreeMap<u16, u64>,
    /// Seconds from the first submission until every accepted job ended.
    pub drain_seconds: f64,
    /// Accepted jobs that had not ended when the report stopped waiting.
    pub unfinished: usize,
}

impl NeighbourRun {
    /// The quiet tenant's p50 during the drain over its p50 alone.
    pub fn p50_ratio(&self) -> f64 {
        self.during.latency_ms(0.5) / self.solo.latency_ms(0.5)
    }

    /// Whether the quiet tenant's p50 stayed within max(100 ms, 5× solo)
    /// with every call answered.
    pub fn quiet_kept_its_latency(&self) -> bool {
        self.during.errors == 0 && self.during.latency_ms(0.5) <= (5.0 * self.solo.latency_ms(0.5)).max(100.0)
    }

    /// Jobs accepted (202).
    pub fn accepted(&self) -> u64 {
        self.answers.get(&202).copied().unwrap_or(0)
    }

    /// Ended jobs per second while the backlog drained.
    pub fn drain_rate(&self) -> f64 {
        (self.accepted() as f64 - self.unfinished as f64) / self.drain_seconds.max(1e-9)
    }
}

/// Runs both modes; the Redis one on a `redis-server` of its own.
pub async fn neighbour_runs(effort: Effort) -> anyhow::Result<Vec<NeighbourRun>> {
    // The burst is sent as fast as 8 clients can: the request-rate bucket
    // is sized for it, so what is measured is the queue, not the door.
    let burst = (effort.backlog_jobs * 2).to_string();
    let mut runs = vec![run_mode("embedded", &["--burst", &burst], effort).await?];
    let redis = tokio::task::spawn_blocking(sluice_testkit::spawn_redis)
        .await
        .context("start redis-server (scripts/test.sh installs it)")?;
    runs.push(run_mode("redis", &["--burst", &burst, "--redis", &redis.url], effort).await?);
    Ok(runs)
}

async fn run_mode(mode: &'static str, flags: &[&str], effort: Effort) -> anyhow::Result<NeighbourRun> {
    eprintln!("noisy neighbour: {mode}");
    let flags: Vec<String> = flags.iter().map(|flag| (*flag).to_owned()).collect();
    let node = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Node::start(&flags)
    })
    .await
    .context("start the node")??;
    let quiet_key = node.tenant("quiet").await?;
    let noisy_key = node.tenant("noisy").await?;
    let photo = Bytes::from(crate::photo("peacock.progressive.jpeg"));
    let quiet = Target::new(&format!("{}/v1/functions/resize/invoke?width=50", node.url), &quiet_key, photo.clone())?;
    // Warm the built-in on every worker slot before timing anything.
    let slots = 2 * super::scenarios::cores();
    loadgen::closed_loop(&quiet, slots, Duration::from_secs(2), 200, "warm-up", true).await;
    let solo = quiet_calls(&quiet, effort.run).await?;

    let started = Instant::now();
    let burst = Burst::new(&node.url, &noisy_key, photo);
    let (during, submitted) = tokio::join!(quiet_calls(&quiet, effort.run), burst.submit(effort.backlog_jobs));
    let during = during?;
    let ids = submitted;
    let unfinished = burst.wait_for(&ids, Duration::from_secs(600)).await;
    let drain_seconds = started.elapsed().as_secs_f64();
    Ok(NeighbourRun {
        mode,
        solo,
        during,
        submitted: effort.backlog_jobs,
        answers: burst.answers.lock().await.clone(),
        drain_seconds,
        unfinished,
    })
}

/// The quiet tenant's open loop, on a thread and runtime of its own (a
/// separate client, unaffected by the submitters in this process).
async fn quiet_calls(target: &Target, duration: Duration) -> anyhow::Result<LoadResult> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(runtime.block_on(loadgen::open_loop(&target, QUIET_RATE, duration, 64, "quiet", true)))
    })
    .await
    .context("the quiet tenant's thread")?
}

/// The noisy tenant's burst of async resizes.
struct Burst {
    client: reqwest::Client,
    base: String,
    key: String,
    body: Bytes,
    answers: Arc<Mutex<BTreeMap<u16, u64>>>,
}

impl Burst {
    fn new(base: &str, key: &str, body: Bytes) -> Self {
        Self {
            client: loadgen::client(SUBMITTERS),
            base: base.to_owned(),
            key: key.to_owned(),
            body,
            answers: Arc::default(),
        }
    }

    /// Submits `jobs` from [`SUBMITTERS`] parallel clients; returns the accepted ids.
    async fn submit(&self, jobs: usize) -> Vec<String> {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..SUBMITTERS {
            let (client, body, answers, next) =
                (self.client.clone(), self.body.clone(), Arc::clone(&self.answers), Arc::clone(&next));
            let (url, key) = (format!("{}/v1/functions/resize/jobs?width=50", self.base), self.key.clone());
            tasks.spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < jobs {
                    let Ok(response) = client.post(&url).bearer_auth(&key).body(body.clone()).send().await else {
                        *answers.lock().await.entry(0).or_default() += 1;
                        continue;
                    };
                    let status = response.status().as_u16();
                    *answers.lock().await.entry(status).or_default() += 1;
                    if status == 202
                        && let Ok(accepted) = response.json::<serde_json::Value>().await
                        && let Some(id) = accepted["id"].as_str()
                    {
                        ids.push(id.to_owned());
                    }
                }
                ids
            });
        }
        let mut ids = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            ids.extend(joined.unwrap_or_default());
        }
        ids
    }

    /// Waits until every job in `ids` ended, or `limit` passes; returns how
    /// many had not. Jobs of one tenant are taken oldest first, so it
    /// checks them in order and never re-checks one that ended.
    async fn wait_for(&self, ids: &[String], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let mut ended = 0;
        while ended < ids.len() && Instant::now() < deadline {
            let url = format!("{}/v1/jobs/{}", self.base, ids[ended]);
            let status = match self.client.get(&url).bearer_auth(&self.key).send().await {
                Ok(response) => response.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            match status.as_ref().and_then(|job| job["status"].as_str()) {
                Some("succeeded" | "failed" | "cancelled") => ended += 1,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        ids.len() - ended
    }
}
