//! Sluice's job queue.
//!
//! One trait, [`Queue`], with a backend per file: [`memory`] (the embedded
//! default, everything in-process) and [`redis`] (Streams and a consumer
//! group, for many nodes).
//! The trait follows the shape of Redis Streams consumer groups so both
//! backends give the same guarantees:
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
//!
//! [`job`] holds the types a job is made of.

pub mod job;
pub mod memory;
pub mod redis;

use std::time::Duration;

use sluice_core::{CallOutput, ErrorCode};

pub use job::{Completion, Delivery, Job, JobError, JobId, JobRecord, JobStatus, Usage, now_ms};
pub use memory::{MemoryQueue, QueueConfig};
pub use redis::{DEFAULT_INLINE_LIMIT, KeepAlive, RedisQueue, RedisQueueConfig, connection_manager};

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
    /// The tenant already has as many unfinished jobs as it may.
    #[error("this tenant already has {limit} calls queued or running")]
    TenantBusy {
        /// The configured per-tenant bound.
        limit: usize,
    },
    /// A job with this id already exists.
    #[error("job {0} already exists")]
    Duplicate(String),
}

impl QueueError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Full { .. } => ErrorCode::Overloaded,
            Self::TenantBusy { .. } => ErrorCode::ConcurrencyLimit,
            Self::Unavailable(_) => ErrorCode::QueueUnavailable,
            // A worker's own bookkeeping; never a caller's doing.
            Self::LeaseLost(_) | Self::Duplicate(_) => ErrorCode::Internal,
        }
    }
}

/// The job queue every front door and worker talks to.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Accepts `job`; [`QueueError::Full`] when the queue's bound is reached,
    /// [`QueueError::TenantBusy`] when the tenant's is.
    async fn enqueue(&self, job: Job) -> Result<(), QueueError>;

    /// The next job for `worker`, waiting up to `wait` for one to arrive.
    async fn reserve(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError>;

    /// Extends a delivery's lease by another visibility timeout.
    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// How long a delivery is held without [`Queue::extend`]; workers renew
    /// well within it.
    fn visibility_timeout(&self) -> Duration;

    /// How long a finished job's record and output are kept; anything that
    /// names a job (an `Idempotency-Key`) is kept as long.
    fn result_ttl(&self) -> Duration;

    /// Marks the job running (the first time it is picked up).
    async fn start(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Records the job's final outcome and acknowledges the delivery. A job
    /// that already ended keeps its first outcome.
    async fn complete(&self, delivery: &Delivery, completion: Completion) -> Result<(), QueueError>;

    /// Returns the job for another attempt, or dead-letters it (ending it
    /// `failed` with `error`'s code) once it was delivered `max_deliveries` times.
    async fn retry(&self, delivery: &Delivery, error: &JobError) -> Result<(), QueueError>;

    /// The job's record, while it is kept.
    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError>;

    /// The job's output, once it succeeded and while it is kept.
    async fn output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError>;

    /// Waits until the job ends or `timeout` passes; returns its record then.
    async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Option<JobRecord>, QueueError>;

    /// Jobs accepted and not yet finished (waiting plus running).
    async fn depth(&self) -> Result<usize, QueueError>;

    /// Succeeds when the backend is reachable (for readiness checks).
    async fn ping(&self) -> Result<(), QueueError>;

    /// Announces that worker node `node` is alive; nodes repeat it every
    /// [`NODE_HEARTBEAT`].
    async fn heartbeat(&self, node: &str) -> Result<(), QueueError>;

    /// Worker nodes heard from within [`NODE_TTL`].
    async fn workers(&self) -> Result<usize, QueueError>;
}

/// How often a worker node announces itself.
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(5);

/// A node not heard from for this long no longer counts as a worker.
pub const NODE_TTL: Duration = Duration::from_secs(15);
