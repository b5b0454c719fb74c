//! Usage: a log of per-call records keyed by job id (a job finished twice is
//! recorded once), and per-hour totals the meter produced from it. The
//! ledger remembers how far into the log it has aggregated (a cursor), and
//! a commit names the cursor it started from, so a batch is added to the
//! totals exactly once even when several front doors aggregate at once or
//! one restarts mid-way.
//!
//! Locally, `usage.log` is append-only JSON lines and `usage-totals.json`
//! holds the totals and the cursor.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_scheduler::Usage;

use super::{StoreError, io_error, read_json, write_json};

/// Totals are kept per hour; usage queries are answered at that granularity.
pub const BUCKET_MS: u64 = 3_600_000;

/// One call's usage as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// The job the call belonged to.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Function name.
    pub function: String,
    /// When the call finished, ms since the epoch.
    pub at_ms: u64,
    /// What it consumed.
    pub usage: Usage,
}

/// Records not yet aggregated, and where they sit in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBatch {
    /// The records, oldest first.
    pub entries: Vec<UsageEntry>,
    /// The cursor before the first record.
    pub from: String,
    /// The cursor after the last record.
    pub through: String,
}

/// Why totals were not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another aggregation committed from the same cursor first; its totals stand.
    #[error("the usage batch was already aggregated")]
    AlreadyAggregated,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the usage log and totals are kept.
#[async_trait::async_trait]
pub trait UsageLedger: Send + Sync {
    /// Logs one call's usage; returns false (and logs nothing) when the job
    /// was already recorded.
    async fn record(&self, job_id: &str, tenant: &str, function: &str, usage: &Usage) -> Result<bool, StoreError>;

    /// Up to `limit` records not yet aggregated, oldest first.
    async fn pending(&self, limit: usize) -> Result<UsageBatch, StoreError>;

    /// Adds `deltas` to the totals and moves the cursor from `batch.from` to
    /// `batch.through`, atomically.
    async fn commit(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(), CommitError>;

    /// The tenant's totals per function over hours starting in `[from_ms, to_ms)`.
    async fn totals(&self, tenant: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError>;
}

/// Sums `buckets` of `tenant` per function over hours starting in `[from_ms, to_ms)`.
pub(crate) fn sum_by_function<'a>(
    buckets: impl IntoIterator<Item = &'a Bucket>,
    tenant: &str,
    from_ms: u64,
    to_ms: u64,
) -> Vec<Bucket> {
    let mut by_function: BTreeMap<&str, Bucket> = BTreeMap::new();
    for bucket in buckets {
        if bucket.tenant == tenant && bucket.hour_ms >= from_ms && bucket.hour_ms < to_ms {
            by_function
                .entry(&bucket.function)
                .or_insert_with(|| Bucket {
                    tenant: tenant.to_owned(),
                    function: bucket.function.clone(),
                    ..Bucket::default()
                })
                .add(bucket);
        }
    }
    by_function.into_values().collect()
}

/// Aggregated usage of one (tenant, function) in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tenant id.
    pub tenant: String,
    /// Function name.
    pub function: String,
    /// Start of the hour, ms since the epoch.
    pub hour_ms: u64,
    /// Calls.
    pub invocations: u64,
    /// Calls that did not succeed.
    pub failures: u64,
    /// CPU µs.
    pub cpu_us: u64,
    /// Wall µs.
    pub wall_us: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes returned.
    pub bytes_out: u64,
    /// Cost in micro-units.
    pub cost_micros: u64,
}

impl Bucket {
    /// Adds `other`'s counts to this bucket's.
    pub fn add(&mut self, other: &Bucket) {
        self.invocations = self.invocations.saturating_add(other.invocations);
        self.failures = self.failures.saturating_add(other.failures);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
        self.wall_us = self.wall_us.saturating_add(other.wall_us);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    aggregated_through: u64,
    buckets: Vec<Bucket>,
}

/// A line of the local log: the entry and its position.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Logged {
    seq: u64,
    #[serde(flatten)]
    entry: UsageEntry,
}

#[derive(Debug)]
struct State {
    log: File,
    seen: HashSet<String>,
    pending: Vec<Logged>,
    next_seq: u64,
    totals: Totals,
}

/// The usage log and totals of one data directory.
#[derive(Debug)]
pub struct LocalUsage {
    log_path: PathBuf,
    totals_path: PathBuf,
    state: Mutex<State>,
}

impl LocalUsage {
    /// Opens (or creates) `usage.log` and `usage-totals.json` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let log_path = dir.join("usage.log");
        let totals_path = dir.join("usage-totals.json");
        let totals: Totals = read_json(&totals_path)?;
        let mut seen = HashSet::new();
        let mut pending = Vec::new();
        let mut next_seq = totals.aggregated_through + 1;
        if let Ok(file) = File::open(&log_path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io_error(&log_path))?;
                // A torn last line (crash mid-append) is skipped; everything
                // before it is intact.
                let Ok(logged) = serde_json::from_str::<Logged>(&line) else { continue };
                seen.insert(logged.entry.job_id.clone());
                next_seq = next_seq.max(logged.seq + 1);
                if logged.seq > totals.aggregated_through {
                    pending.push(logged);
                }
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_error(&log_path))?;
        Ok(Self { log_path, totals_path, state: Mutex::new(State { log, seen, pending, next_seq, totals }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl UsageLedger for LocalUsage {
    async fn record(&self, job_id: &str, tenant: &str, function: &str, usage: &Usage) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.seen.contains(job_id) {
            return Ok(false);
        }
        let logged = Logged {
            seq: state.next_seq,
            entry: UsageEntry {
                job_id: job_id.to_owned(),
                tenant: tenant.to_owned(),
                function: function.to_owned(),
                at_ms: sluice_scheduler::now_ms(),
                usage: usage.clone(),
            },
        };
        let mut line = serde_json::to_vec(&logged)
            .map_err(|source| StoreError::Corrupt { path: self.log_path.clone(), source })?;
        line.push(b'\n');
        state.log.write_all(&line).map_err(io_error(&self.log_path))?;
        state.next_seq += 1;
        state.seen.insert(job_id.to_owned());
        state.pending.push(logged);
        Ok(true)
    }

    async fn pending(&self, limit: usize) -> Result<UsageBatch, StoreError> {
        let state = self.lock();
        let from = state.totals.aggregated_through;
        let taken: Vec<&Logged> = state.pending.iter().take(limit).collect();
        let through = taken.last().map_or(from, |logged| logged.seq);
        Ok(UsageBatch {
            entries: taken.into_iter().map(|logged| logged.entry.clone()).collect(),
            from: from.to_string(),
            through: through.to_string(),
        })
    }

    async fn commit(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(), CommitError> {
        let mut state = self.lock();
        if state.totals.aggregated_through.to_string() != batch.from {
            return Err(CommitError::AlreadyAggregated);
        }
        let through: u64 = batch.through.parse().map_err(|_| StoreError::CorruptRecord(batch.through.clone()))?;
        let mut totals = Totals { aggregated_through: through, buckets: state.totals.buckets.clone() };
        for delta in deltas {
            match totals
                .buckets
                .iter_mut()
                .find(|b| b.tenant == delta.tenant && b.function == delta.function && b.hour_ms == delta.hour_ms)
            {
                Some(bucket) => bucket.add(delta),
                None => totals.buckets.push(delta.clone()),
            }
        }
        write_json(&self.totals_path, &totals)?;
        state.totals = totals;
        state.pending.retain(|logged| logged.seq > through);
        Ok(())
    }

    async fn totals(&self, tenant: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        Ok(sum_by_function(&self.lock().totals.buckets, tenant, from_ms, to_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu_us: u64) -> Usage {
        Usage { outcome: sluice_core::Outcome::Ok, cpu_us, ..Usage::default() }
    }

    #[tokio::test]
    async fn a_job_is_recorded_once_and_pending_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalUsage::open(dir.path()).expect("open");
        assert!(store.record("j1", "t", "f", &usage(5)).await.expect("record"));
        assert!(!store.record("j1", "t", "f", &usage(7)).await.expect("record"), "a rerun is not billed twice");
        assert!(store.record("j2", "t", "f", &usage(9)).await.expect("record"));
        let all = store.pending(100).await.expect("pending");
        assert_eq!(all.entries.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(), vec!["j1", "j2"]);

        let first = store.pending(1).await.expect("pending");
        let hour = first.entries[0].at_ms / BUCKET_MS * BUCKET_MS;
        let delta = Bucket {
            tenant: "t".into(),
            function: "f".into(),
            hour_ms: hour,
            invocations: 1,
            cpu_us: 5,
            ..Bucket::default()
        };
        store.commit(&first, std::slice::from_ref(&delta)).await.expect("commit");
        assert!(
            matches!(store.commit(&first, &[delta]).await, Err(CommitError::AlreadyAggregated)),
            "a batch is counted once"
        );
        drop(store);

        let reopened = LocalUsage::open(dir.path()).expect("reopen");
        let left = reopened.pending(100).await.expect("pending");
        assert_eq!(left.entries.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(), vec!["j2"]);
        assert!(!reopened.record("j1", "t", "f", &usage(5)).await.expect("record"), "dedupe survives a restart");
        let totals = reopened.totals("t", 0, u64::MAX).await.expect("totals");
        assert_eq!((totals.len(), totals[0].invocations, totals[0].cpu_us), (1, 1, 5));
        assert!(reopened.totals("t", hour + BUCKET_MS, u64::MAX).await.expect("totals").is_empty());
        assert!(reopened.totals("other", 0, u64::MAX).await.expect("totals").is_empty());
    }
}
