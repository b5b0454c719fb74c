//! Sluice's job queue.
//!
//! One trait, [`Queue`], with a backend per file: [`memory`] (the embedded
//! default, everything in-process) and [`redis`] (per-tenant lists taken
//! in turns by Lua scripts, for many nodes). [`connect`] picks the backend
//! from a URL; every backend passes the same conformance suite
//! (`tests/conformance.rs`), so both give the same guarantees:
//!
//! - **At-least-once.** [`Queue::reserve`] hands a job out as a [`Delivery`]
//!   that stays pending until [`Queue::complete`] or [`Queue::retry`]. A
//!   delivery not settled within the visibility timeout (a dead worker) is
//!   handed out again; [`Queue::extend`] keeps a healthy long job's lease.
//! - **Bounded retries.** After `max_deliveries` the job is dead-lettered
//!   and ends `failed` with the last reason.
//! - **Idempotent results.** Completing a job that already ended is a no-op,
//!   so a job run twice is stored (and billed) once.
//! - **No polling.** [`Queue::wait`] returns as soon as a job ends.
//! - **Fair shares.** Each tenant has its own queue. Admission is bounded per
//!   tenant (`tenant_queue_quota` jobs, `tenant_queue_bytes` of bodies) and in
//!   total (`capacity`, `queue_bytes`), so a burst within quota is accepted
//!   whole. Taking is round robin over the tenants with waiting work, each
//!   running at most `tenant_concurrency` jobs at once, so a tenant with no
//!   backlog waits about one job per slot, whatever others have queued.
//!   Within a tenant, sync jobs (a caller holds a connection) go first.
//! - **Bounded results.** Outputs of async jobs are kept for `result_ttl`
//!   within a byte budget per tenant and per queue: new async work is
//!   refused, and accepted async jobs wait (sync ones still run), while
//!   the budget is spent; an accepted job's output is never dropped before
//!   its TTL. A sync call's output is released the
//!   moment it is taken ([`Queue::take_output`]).
//! - **Idempotent submission.** [`Queue::submit`] records an
//!   `Idempotency-Key` and enqueues its job in one step, so a key always
//!   names a job that exists.
//!
//! [`job`] holds the types a job is made of; [`QueueConfig`] the bounds and
//! timeouts every backend shares, with the defaults the CLI shows.

pub mod job;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use sluice_core::{CallOutput, ErrorCode};

pub use job::{
    Cancel, Completion, Delivery, IdempotencyKey, Job, JobError, JobFilter, JobId, JobKind, JobLog, JobPage, JobRecord,
    JobStatus, MAX_GUEST_TEXT, Submitted, SyncEnd, TenantLimits, TenantQueue, Usage, now_ms,
};
pub use memory::MemoryQueue;
pub use redis::{DEFAULT_PREFIX, KeepAlive, RedisQueue, RedisQueueConfig, connection_manager};
use sluice_core::TenantId;

/// Bounds and timeouts of a queue, whatever its backend. [`Default`] is the
/// one place the defaults are written down; flags and configs start from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most jobs that may wait for a worker at once, all tenants together;
    /// more are refused with `Full`. Running jobs do not count.
    pub capacity: usize,
    /// Most bytes of request bodies that may wait at once, all tenants
    /// together; more are refused with `QueueBytesFull`.
    pub queue_bytes: u64,
    /// Jobs one tenant may have waiting at once (unless its own limits say
    /// otherwise); more are refused with `TenantQueueFull`.
    pub tenant_queue_quota: usize,
    /// Bytes of request bodies one tenant may have waiting at once; more
    /// are refused with `TenantQueueBytesFull`.
    pub tenant_queue_bytes: u64,
    /// How long a delivery is held before it is handed out again.
    pub visibility_timeout: Duration,
    /// Deliveries before a job is dead-lettered.
    pub max_deliveries: u32,
    /// How long finished jobs and outputs are kept.
    pub result_ttl: Duration,
    /// Jobs one tenant may have running at once (unless its own limits say
    /// otherwise); the rest wait their turn. Counted by the queue so every
    /// worker sees one number. Default: this machine's cores, so one tenant
    /// can use every core while a node's other slots stay free for others.
    pub tenant_concurrency: usize,
    /// Bytes of async outputs (and of kept logs) one tenant may have
    /// stored at once; while they are spent its new async jobs are refused with
    /// `TenantResultsFull` and its accepted async jobs are not taken. So a
    /// tenant ends at most its running jobs' outputs past it, and accepted
    /// work always keeps its result.
    pub tenant_result_bytes: u64,
    /// Bytes of outputs and logs the whole queue (one node's memory, or
    /// one Redis) may hold; while they are spent new async jobs are refused with
    /// `ResultsFull`.
    pub result_bytes: u64,
    /// Dead letters kept for operators; older ones are trimmed.
    pub max_dead_letters: usize,
    /// Ended sync jobs kept per tenant (for `GET /v1/jobs`), newest
    /// first; older ones are dropped before their TTL. A sync caller gets
    /// its answer on the connection, so keeping every call's record for
    /// the whole TTL would grow with the request rate, not with what
    /// callers asked to keep.
    pub sync_records_per_tenant: usize,
}

/// How long a sync job's record dropped early (past
/// [`QueueConfig::sync_records_per_tenant`]) may still be read where the
/// backend cannot tell whether its caller is reading it right now (Redis);
/// the in-memory queue keeps a record exactly while a caller waits on it.
pub const SYNC_RECORD_GRACE: Duration = Duration::from_secs(5);

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            queue_bytes: 1024 * MIB,
            tenant_queue_quota: 10_000,
            tenant_queue_bytes: 256 * MIB,
            visibility_timeout: Duration::from_secs(60),
            max_deliveries: 3,
            result_ttl: Duration::from_secs(3600),
            tenant_concurrency: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            tenant_result_bytes: 256 * MIB,
            result_bytes: 1024 * MIB,
            max_dead_letters: 1000,
            sync_records_per_tenant: 1000,
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// The URL schemes [`connect`] accepts, as its error lists them.
pub const QUEUE_URL_SCHEMES: &[&str] = &["memory:", "redis://", "rediss://", "unix://"];

/// Opens the queue `url` names: `memory:` (or `memory://`) is a
/// [`MemoryQueue`] in this process; `redis://`, `rediss://` and `unix://`
/// are a [`RedisQueue`] shared by every node using that server.
/// `namespace` keeps deployments that share one server apart (the Redis key
/// prefix); a queue in this process has nothing to share and ignores it.
pub async fn connect(url: &str, config: QueueConfig, namespace: &str) -> Result<Arc<dyn Queue>, QueueError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme {
        "memory" => Ok(Arc::new(MemoryQueue::new(config))),
        "redis" | "rediss" | "unix" => {
            let redis = RedisQueueConfig { prefix: namespace.to_owned(), ..RedisQueueConfig::new(url, config) };
            Ok(RedisQueue::connect(redis).await?)
        }
        _ => Err(QueueError::UnsupportedUrl(sluice_core::redact_url(url))),
    }
}

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds as many waiting jobs as it may; try again later.
    #[error("the queue is full ({capacity} jobs waiting)")]
    Full {
        /// The configured bound.
        capacity: usize,
    },
    /// The backend cannot be reached (e.g. Redis is down).
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The delivery is no longer held: it expired and was handed to another worker.
    #[error("delivery {0} is no longer held by this worker")]
    LeaseLost(String),
    /// Waiting bodies fill the queue's byte bound; try again later.
    #[error("the queue is full ({limit} bytes of requests waiting)")]
    QueueBytesFull {
        /// The configured bound.
        limit: u64,
    },
    /// The tenant already has as many jobs waiting as it may.
    #[error("this tenant already has {limit} jobs waiting; wait for some to finish")]
    TenantQueueFull {
        /// The tenant's bound.
        limit: usize,
    },
    /// The tenant's waiting bodies fill its byte bound.
    #[error("this tenant's waiting jobs already hold {limit} bytes of requests; wait for some to finish")]
    TenantQueueBytesFull {
        /// The configured per-tenant bound.
        limit: u64,
    },
    /// The tenant's stored async outputs have used up its byte budget;
    /// outputs free up as their TTL runs out.
    #[error("this tenant's stored job results use its budget of {limit} bytes; results are freed as they expire")]
    TenantResultsFull {
        /// The configured per-tenant budget.
        limit: u64,
    },
    /// All stored outputs together have used up the queue's byte budget.
    #[error("stored job results use this deployment's budget of {limit} bytes; results are freed as they expire")]
    ResultsFull {
        /// The configured queue-wide budget.
        limit: u64,
    },
    /// A job with this id already exists.
    #[error("job {0} already exists")]
    Duplicate(String),
    /// [`connect`] was given a URL no backend serves (shown redacted).
    #[error("no queue backend serves `{0}`; use one of {schemes}", schemes = QUEUE_URL_SCHEMES.join(", "))]
    UnsupportedUrl(String),
}

impl QueueError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Full { .. } | Self::QueueBytesFull { .. } => ErrorCode::Overloaded,
            Self::TenantQueueFull { .. } | Self::TenantQueueBytesFull { .. } => ErrorCode::QueueQuota,
            Self::TenantResultsFull { .. } => ErrorCode::ResultStorageFull,
            Self::ResultsFull { .. } => ErrorCode::ResultStorageExhausted,
            Self::Unavailable(_) => ErrorCode::QueueUnavailable,
            // A worker's own bookkeeping, or the operator's configuration;
            // never a caller's doing.
            Self::LeaseLost(_) | Self::Duplicate(_) | Self::UnsupportedUrl(_) => ErrorCode::Internal,
        }
    }
}

/// The job queue every front door and worker talks to.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Accepts `job`; [`QueueError::Duplicate`] when its id is taken,
    /// [`QueueError::Full`] or [`QueueError::QueueBytesFull`] when the
    /// queue's bounds are reached, [`QueueError::TenantQueueFull`] or
    /// [`QueueError::TenantQueueBytesFull`] when the tenant's are (checked
    /// in that order).
    async fn enqueue(&self, job: Job) -> Result<(), QueueError>;

    /// Accepts `job` as an async job, whose output is kept for its TTL:
    /// refused with [`QueueError::TenantResultsFull`] or
    /// [`QueueError::ResultsFull`] while the tenant's or the queue's result
    /// budget is spent, then like [`Queue::enqueue`]. With
    /// `key`, in the same step: when the key already names a kept job of
    /// the tenant, that job is returned (or [`Submitted::Conflict`] when it
    /// was for a different request) and nothing is enqueued; otherwise
    /// the key is recorded for this job, for `result_ttl`.
    async fn submit(&self, job: Job, key: Option<&IdempotencyKey>) -> Result<Submitted, QueueError>;

    /// The next job for `worker`, waiting up to `wait` for one to arrive:
    /// from the next tenant, in turn, that has work waiting and fewer than
    /// its running limit; within the tenant, its oldest sync job, else its
    /// oldest async one.
    async fn reserve(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError>;

    /// Extends a delivery's lease by another visibility timeout.
    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// How long a delivery is held without [`Queue::extend`]; workers renew
    /// well within it.
    fn visibility_timeout(&self) -> Duration;

    /// The bounds this queue applies (for showing a tenant its quota).
    fn config(&self) -> QueueConfig;

    /// How long a finished job's record and output are kept; anything that
    /// names a job (an `Idempotency-Key`) is kept as long.
    fn result_ttl(&self) -> Duration;

    /// Marks the job running (the first time it is picked up).
    async fn start(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Records the job's final outcome and acknowledges the delivery. A job
    /// that already ended keeps its first outcome.
    async fn complete(&self, delivery: &Delivery, completion: Completion) -> Result<(), QueueError>;

    /// Returns the job for another attempt, or dead-letters it (ending it
    /// `failed` with `error`'s code) once it was delivered `max_deliveries`
    /// times. `usage` is what the attempt consumed when it ran guest code;
    /// it is added to the record's attempts.
    async fn retry(&self, delivery: &Delivery, error: &JobError, usage: Option<Usage>) -> Result<(), QueueError>;

    /// The job's record, while it is kept.
    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError>;

    /// The job's output, once it succeeded and while it is kept.
    async fn output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError>;

    /// What the attempt that ended the job printed, while its record is
    /// kept: `None` for an unknown job, an empty log for one that has not
    /// ended or printed nothing.
    async fn logs(&self, id: &JobId) -> Result<Option<JobLog>, QueueError>;

    /// The job's output, released as it is taken: a sync call's output is
    /// kept only until its caller has it. Later lookups find no output.
    async fn take_output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError>;

    /// The server's eviction policy when it could drop keys the queue
    /// needs (e.g. `allkeys-lru`); `None` when keys are never evicted, or
    /// the backend cannot tell.
    async fn eviction_risk(&self) -> Result<Option<String>, QueueError> {
        Ok(None)
    }

    /// Waits until the job ends or `timeout` passes; returns its record then.
    async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Option<JobRecord>, QueueError>;

    /// Enqueues sync `job` like [`Queue::enqueue`], waits until it ends or
    /// `timeout` passes, and takes its output if it succeeded: a caller
    /// holding a connection for the answer. `None` when the job is no
    /// longer kept. Backends override it to save round trips.
    async fn call(&self, job: Job, timeout: Duration) -> Result<Option<SyncEnd>, QueueError> {
        let id = job.id.clone();
        self.enqueue(job).await?;
        let Some(record) = self.wait(&id, timeout).await? else { return Ok(None) };
        let output = if record.status == JobStatus::Succeeded { self.take_output(&id).await? } else { None };
        Ok(Some(SyncEnd { record, output }))
    }

    /// Jobs accepted and not yet finished (waiting plus running).
    async fn depth(&self) -> Result<usize, QueueError>;

    /// `tenant`'s share of the queue now.
    async fn tenant_queue(&self, tenant: &TenantId) -> Result<TenantQueue, QueueError>;

    /// The tenants with jobs waiting or running, most waiting first, at
    /// most `limit` of them (for metrics, whose labels must stay few).
    async fn busy_tenants(&self, limit: usize) -> Result<Vec<(TenantId, TenantQueue)>, QueueError>;

    /// Up to `limit` of `tenant`'s kept jobs matching `filter`, newest
    /// first, starting where `cursor` (from the previous page) says.
    async fn jobs(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<JobPage, QueueError>;

    /// Withdraws `tenant`'s job `id` if no worker has taken it yet: it ends
    /// `cancelled` and is never run.
    async fn cancel(&self, tenant: &TenantId, id: &JobId) -> Result<Cancel, QueueError>;

    /// Forgets `tenant`: its waiting jobs are cancelled and every kept
    /// record, output and `Idempotency-Key` of it is dropped (a running
    /// job's outcome is dropped when it ends). Returns the jobs forgotten.
    async fn forget_tenant(&self, tenant: &TenantId) -> Result<u64, QueueError>;

    /// Jobs dead-lettered so far with their last error, oldest first, for
    /// operators and tests to see what gave up and why.
    async fn dead_letters(&self) -> Result<Vec<(JobId, JobError)>, QueueError>;

    /// Succeeds when the backend is reachable (for readiness checks).
    async fn ping(&self) -> Result<(), QueueError>;

    /// Announces that worker node `node` is alive; nodes repeat it every
    /// [`NODE_HEARTBEAT`].
    async fn heartbeat(&self, node: &str) -> Result<(), QueueError>;

    /// Worker nodes heard from within [`NODE_TTL`].
    async fn workers(&self) -> Result<usize, QueueError>;
}

/// The order [`Queue::busy_tenants`] answers in, whatever the backend: most
/// waiting first, then most running, then by id; at most `limit` of them.
fn busiest_first(mut busy: Vec<(TenantId, TenantQueue)>, limit: usize) -> Vec<(TenantId, TenantQueue)> {
    busy.sort_by(|(a_id, a), (b_id, b)| b.queued.cmp(&a.queued).then(b.running.cmp(&a.running)).then(a_id.cmp(b_id)));
    busy.truncate(limit);
    busy
}

/// How often a worker node announces itself.
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(5);

/// A node not heard from for this long no longer counts as a worker.
pub const NODE_TTL: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_open_an_in_process_queue() {
        for url in ["memory:", "memory://"] {
            let queue = connect(url, QueueConfig::default(), "ignored").await.expect("a memory queue");
            assert_eq!(queue.depth().await, Ok(0), "{url}");
        }
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_naming_the_accepted_ones() {
        let refused = connect("postgres://db/queue", QueueConfig::default(), "sluice").await.err();
        let error = refused.expect("no backend serves postgres");
        assert_eq!(error, QueueError::UnsupportedUrl("postgres://db/queue".to_owned()));
        assert_eq!(
            error.to_string(),
            "no queue backend serves `postgres://db/queue`; use one of memory:, redis://, rediss://, unix://"
        );
    }

    #[tokio::test]
    async fn a_url_without_a_scheme_is_refused() {
        let refused = connect("localhost:6379", QueueConfig::default(), "sluice").await.err();
        assert_eq!(refused, Some(QueueError::UnsupportedUrl("localhost:6379".to_owned())));
    }
}
