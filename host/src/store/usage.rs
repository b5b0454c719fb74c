//! Usage: a log of per-attempt records keyed by billing id (an attempt
//! recorded twice is logged once), and per-hour raw totals the meter
//! produced from it. The
//! ledger remembers how far into the log it has aggregated (a cursor), and
//! a commit names the cursor it started from, so a batch is added to the
//! totals exactly once even when several front doors aggregate at once or
//! one restarts mid-way.
//!
//! Everything the ledger keeps is bounded ([`UsageRetention`]): a job id
//! stays known as recorded for the job TTL (after it the job no longer
//! exists and cannot finish again), the log keeps only what was not yet
//! aggregated (plus a bounded tail), and hourly totals are kept per day
//! for the retention period, then dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::TenantId;
use sluice_scheduler::{JobId, Usage};

use super::StoreError;

/// Totals are kept per hour; usage queries are answered at that granularity.
pub const BUCKET_MS: u64 = 3_600_000;

/// Hourly totals are stored grouped per day (one Redis hash per tenant and
/// day), so a query reads only the days it covers and old days expire whole.
pub const PERIOD_MS: u64 = 24 * BUCKET_MS;

/// How long hourly totals are kept by default: over a year, so a bill can
/// be compared with the same month a year before.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// How long the ledger remembers what it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRetention {
    /// How long a job id stays known as recorded (see
    /// `backend::billed_id_window`).
    pub billed_ids: Duration,
    /// How long hourly totals are kept.
    pub totals: Duration,
}

impl Default for UsageRetention {
    fn default() -> Self {
        Self { billed_ids: sluice_scheduler::QueueConfig::default().result_ttl, totals: DEFAULT_RETENTION }
    }
}

impl UsageRetention {
    /// The start of the oldest hour still kept at `now_ms`.
    pub fn oldest_hour_ms(&self, now_ms: u64) -> u64 {
        let retention = u64::try_from(self.totals.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(retention) / BUCKET_MS * BUCKET_MS
    }

    /// The job TTL in ms.
    pub fn billed_ids_ms(&self) -> u64 {
        u64::try_from(self.billed_ids.as_millis()).unwrap_or(u64::MAX)
    }
}

/// One call's usage as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// The job the call belonged to.
    pub job_id: JobId,
    /// Tenant id.
    pub tenant: TenantId,
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
    /// The cursor before the first record (opaque; each backend has its own form).
    pub from: String,
    /// The cursor after the last record; `from` when there are none.
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
///
/// Every backend keeps the log, the cursor, the totals and which jobs were
/// recorded across a restart; a job recorded once is not recorded again
/// within the job TTL, even after its batch was aggregated. Totals of hours
/// older than the retention are dropped.
#[async_trait::async_trait]
pub trait UsageLedger: Send + Sync {
    /// Logs one call's usage; returns false (and logs nothing) when the job
    /// was already recorded.
    async fn record(
        &self,
        job_id: &JobId,
        tenant: &TenantId,
        function: &str,
        usage: &Usage,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` records not yet aggregated, oldest first.
    async fn pending(&self, limit: usize) -> Result<UsageBatch, StoreError>;

    /// Adds `deltas` to the totals and moves the cursor from `batch.from` to
    /// `batch.through`, atomically.
    async fn commit(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(), CommitError>;

    /// The tenant's hourly buckets starting in `[from_ms, to_ms)` and within
    /// the retention, sorted by hour, then function; hours without calls
    /// have none.
    async fn hourly(&self, tenant: &TenantId, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError>;

    /// The tenant's totals per function (sorted by name) over hours starting
    /// in `[from_ms, to_ms)`; `hour_ms` of each is 0.
    async fn totals(&self, tenant: &TenantId, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        Ok(sum_by_function(&self.hourly(tenant, from_ms, to_ms).await?, tenant, from_ms, to_ms))
    }
}

/// `buckets` of `tenant` starting in `[from_ms, to_ms)`, sorted by hour,
/// then function.
pub(crate) fn hours_of<'a>(
    buckets: impl IntoIterator<Item = &'a Bucket>,
    tenant: &TenantId,
    from_ms: u64,
    to_ms: u64,
) -> Vec<Bucket> {
    let mut hours: Vec<Bucket> = buckets
        .into_iter()
        .filter(|bucket| bucket.tenant == *tenant && bucket.hour_ms >= from_ms && bucket.hour_ms < to_ms)
        .cloned()
        .collect();
    hours.sort_by(|a, b| (a.hour_ms, &a.function).cmp(&(b.hour_ms, &b.function)));
    hours
}

/// Sums `buckets` of `tenant` per function over hours starting in `[from_ms, to_ms)`.
fn sum_by_function<'a>(
    buckets: impl IntoIterator<Item = &'a Bucket>,
    tenant: &TenantId,
    from_ms: u64,
    to_ms: u64,
) -> Vec<Bucket> {
    let mut by_function: BTreeMap<&str, Bucket> = BTreeMap::new();
    for bucket in buckets {
        if bucket.tenant == *tenant && bucket.hour_ms >= from_ms && bucket.hour_ms < to_ms {
            by_function
                .entry(&bucket.function)
                .or_insert_with(|| Bucket {
                    tenant: tenant.clone(),
                    function: bucket.function.clone(),
                    ..Bucket::default()
                })
                .add(bucket);
        }
    }
    by_function.into_values().collect()
}

/// Aggregated usage of one (tenant, function) in one hour: raw integer
/// counters only, priced when a bill is read (so a bill does not depend on
/// how records were batched); the default has every count zero, so a sum
/// can start from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tenant id.
    pub tenant: TenantId,
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
    }
}
