//! The Redis backend: per-tenant queues of job ids taken in turns, a hash
//! per job for its request, record and output, counters for the bounds, a
//! sorted set of leases by expiry and a pub/sub channel announcing finished
//! jobs. It keeps the in-memory backend's semantics for many nodes.
//!
//! | key | what |
//! |---|---|
//! | `{p}:job:{id}` | hash: `job` (JSON, no body), `body` (until the job ends), `tenant`, `kind`, `bytes`, `submitted`, `function`, `status`, `deliveries`, `record` (JSON as accepted), `error`/`usage` (JSON, once ended), `attempts` (JSON objects, comma-joined), `last_usage`, `finished`, `lease` (the receipt), `worker`, `taken` (ms; while taken), `idem` (its key's name), `output_body`, `output_type`, `output_member`, `log_out`, `log_err`, `log_cut` (once ended, when it printed; `log_cut` alone when the budget had no room), `log_member` (its place in the result budget); expires `result_ttl` after the job ends |
//! | `{p}:lane:sync:{tenant}`, `{p}:lane:async:{tenant}` | lists: the tenant's waiting job ids, oldest first (bounded by its quota) |
//! | `{p}:oldest:{tenant}` | sorted set: the tenant's waiting job ids by submission time |
//! | `{p}:tenant:{tenant}` | hash: `waiting`, `bytes` (of waiting bodies), `running`, `limit` (running, from its newest job), `turn` (1 while in the ring); gone once the tenant holds nothing |
//! | `{p}:turns` | list: the ring of tenants whose turn may come, each at most once |
//! | `{p}:busy` | set: tenants with jobs waiting or running |
//! | `{p}:parked` | set: tenants whose async jobs wait because stored results fill a budget; back in the ring once outputs are released |
//! | `{p}:index:{tenant}` | sorted set: the tenant's kept job ids by submission time, for listing; pruned as records expire, expires `result_ttl` after the tenant goes idle |
//! | `{p}:leases` | sorted set: taken job ids by lease expiry (ms) |
//! | `{p}:housekeeping` | set by the take that looks for expired leases; expires when the next one is due |
//! | `{p}:ready` | list: doorbell tokens idle workers block on (`BLPOP`), trimmed to 64 |
//! | `{p}:idem:{tenant}:{sha256}` | an `Idempotency-Key` (hashed): `{fingerprint} {job}`; expires `result_ttl` after submission |
//! | `{p}:results` | sorted set: kept outputs `{bytes}\|{job}\|{tenant}` by expiry (ms) |
//! | `{p}:result_bytes` | hash: bytes of kept outputs, `t:{tenant}` and `total` |
//! | `{p}:depth` | jobs accepted and not finished |
//! | `{p}:waiting`, `{p}:waiting_bytes` | jobs waiting for a worker and their bodies' bytes (bounded by `capacity`, `queue_bytes`) |
//! | `{p}:dead` | stream of dead-lettered job ids with their last error, trimmed to about `max_dead_letters` |
//! | `{p}:done` | channel: ids of jobs that just ended |
//! | `{p}:nodes` | sorted set: worker node → last heartbeat (ms) |
//! | `{p}:jobs`, `{p}:active:{tenant}` | left by releases before per-tenant queues: every node moves the stream's unfinished jobs into their tenants' queues (same ids) and deletes the stream once empty |
//!
//! Every state change is a Lua script ([`scripts`]), so any number of front
//! doors and workers share one consistent queue. Taking pops the front of
//! the ring of turns: that tenant, if it has work and fewer running jobs
//! than its limit, gives its oldest sync job, else its oldest async one,
//! and goes to the back. A taken job is leased: its id sits in `leases`
//! scored by expiry, and [`Queue::extend`] pushes the expiry on. At most
//! every 100 ms (and every quarter visibility timeout), a take first hands
//! out again (or dead-letters) jobs whose lease expired, so a worker that
//! dies mid-job loses nothing. Idle workers block on the doorbell list,
//! which every script that may let a take succeed (a job queued, a running
//! slot freed) rings, and wake at least every quarter visibility timeout
//! (at most a second) to reclaim expired leases.
//!
//! Admissions, takes and ends are each coalesced per process: while one
//! script run of a kind is in flight, the calls that arrive meanwhile go
//! together in the next run (each job still handled on its own and in
//! order inside it). A run costs a round trip and a fixed share of Redis's
//! time, so under load the queue pays it once per batch instead of once
//! per job; a lone call goes at once.
//!
//! Submodules: [`config`] (settings), [`connection`] (the connection recipe
//! the host's stores share), `keys` (key names), `scripts` (the Lua and its
//! typed callers), `batch` (the coalescing).

mod batch;
pub mod config;
pub mod connection;
mod keys;
mod scripts;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, AsyncConnectionConfig, Client};
use tokio::sync::broadcast;
use tokio::time::Instant;

use sluice_core::{CallOutput, ErrorCode, TenantId};

use crate::job::now_ms;
use crate::{
    Cancel, Completion, Delivery, IdempotencyKey, Job, JobError, JobFilter, JobId, JobLog, JobPage, JobRecord,
    JobStatus, Queue, QueueConfig, QueueError, Submitted, SyncEnd, TenantQueue, Usage,
};
pub use config::{DEFAULT_PREFIX, RedisQueueConfig};
pub use connection::{KeepAlive, connection_manager};
use keys::Keys;

/// How often a node looks for jobs an older release queued in its job
/// stream (one `EXISTS` while there are none).
const ADOPT_EVERY: Duration = Duration::from_secs(10);

/// How much one run of the enqueue or complete script carries: enough to
/// share a round trip among many small jobs, little enough that one run
/// holds Redis for at most a few milliseconds.
const BATCH: batch::BatchLimits = batch::BatchLimits { calls: 64, bytes: 1024 * 1024 };

/// What one take of a batch answers its worker: a delivery, none (nothing
/// was ready), or why its job could not be read.
type TakeAnswer = Result<Option<Delivery>, QueueError>;

/// The job-hash fields a record is assembled from, in the order the
/// scripts' `RECORD` list names them.
const RECORD_FIELDS: [&str; 7] = ["record", "status", "deliveries", "error", "usage", "attempts", "finished"];

/// The Redis [`Queue`].
pub struct RedisQueue {
    client: Client,
    config: RedisQueueConfig,
    keys: Keys,
    common: scripts::Common,
    commands: ConnectionManager,
    /// Admissions, takes and ends, each coalesced into batches.
    enqueues: batch::Batcher<scripts::Enqueue, scripts::Admission>,
    takes: batch::Batcher<scripts::Take, TakeAnswer>,
    completions: batch::Batcher<scripts::Complete, bool>,
    /// Dedicated connections for blocking reads: a blocking command would
    /// stall every other command sharing a multiplexed connection.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// Ids of finished jobs, fed by one subscriber task per process.
    finished: broadcast::Sender<String>,
    /// The subscriber task, stopped when the queue is dropped.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Keeps `commands` checked while the queue lives.
    _keep_alive: KeepAlive,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &sluice_core::redact_url(&self.config.url))
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

/// Any Redis failure, as callers see it: the queue cannot be reached.
fn unavailable(err: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A record from its job-hash fields ([`RECORD_FIELDS`]); `None` when the
/// job is not kept.
fn assemble(fields: &[Option<String>]) -> Result<Option<JobRecord>, QueueError> {
    let field = |at: usize| fields.get(at).and_then(Option::as_deref);
    let Some(base) = field(0) else { return Ok(None) };
    let mut record: JobRecord = serde_json::from_str(base).map_err(unavailable)?;
    if let Some(status) = field(1).and_then(JobStatus::parse) {
        record.status = status;
    }
    if let Some(deliveries) = field(2).and_then(|d| d.parse().ok()) {
        record.deliveries = deliveries;
    }
    if let Some(error) = field(3) {
        record.error = Some(serde_json::from_str(error).map_err(unavailable)?);
    }
    if let Some(usage) = field(4) {
        record.usage = Some(serde_json::from_str(usage).map_err(unavailable)?);
    }
    if let Some(attempts) = field(5) {
        record.attempts = serde_json::from_str(&format!("[{attempts}]")).map_err(unavailable)?;
    }
    record.finished_at_ms = field(6).and_then(|at| at.parse().ok());
    Ok(Some(record))
}

/// A listing cursor: the position of the last job on the previous page.
fn encode_cursor(at: u64, id: &str) -> String {
    format!("{at}:{id}")
}

fn decode_cursor(cursor: &str) -> Option<(u64, &str)> {
    let (at, id) = cursor.split_once(':')?;
    Some((at.parse().ok()?, id))
}

impl RedisQueue {
    /// Connects (retrying in the background if Redis is down).
    pub async fn connect(config: RedisQueueConfig) -> Result<Arc<Self>, QueueError> {
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let commands = connection_manager(&client, config.command_timeout).await.map_err(unavailable)?;
        let keys = Keys::new(&config.prefix);
        let queue = &config.queue;
        let common = scripts::Common {
            prefix: keys.prefix().to_owned(),
            running_limit: queue.tenant_concurrency,
            ttl_ms: millis(queue.result_ttl),
            max_deliveries: queue.max_deliveries,
            max_dead_letters: queue.max_dead_letters,
            visibility_ms: millis(queue.visibility_timeout),
            tenant_result_bytes: queue.tenant_result_bytes,
            result_bytes: queue.result_bytes,
            sync_records_per_tenant: queue.sync_records_per_tenant,
        };
        let (finished, _) = broadcast::channel(4096);
        let keep_alive = KeepAlive::start(commands.clone());
        let enqueues = Self::enqueues(&commands, &common);
        let takes = Self::takes(&commands, &common);
        let completions = Self::completions(&commands, &common);
        let queue = Arc::new(Self {
            client,
            config,
            keys,
            common,
            commands,
            enqueues,
            takes,
            completions,
            blocking: Mutex::new(Vec::new()),
            finished,
            tasks: Mutex::new(Vec::new()),
            _keep_alive: keep_alive,
        });
        queue.start_subscriber();
        queue.start_adopting_older_layout();
        Ok(queue)
    }

    /// Admissions run in batches of what front doors sent meanwhile.
    fn enqueues(
        commands: &ConnectionManager,
        common: &scripts::Common,
    ) -> batch::Batcher<scripts::Enqueue, scripts::Admission> {
        let (con, common) = (commands.clone(), common.clone());
        let run: batch::Run<scripts::Enqueue, scripts::Admission> = Arc::new(move |jobs| {
            let (mut con, common) = (con.clone(), common.clone());
            Box::pin(async move { scripts::enqueue(&mut con, &common, &jobs).await })
        });
        // An admission whose caller left stands: the job is queued and runs.
        batch::Batcher::new(BATCH, scripts::Enqueue::weight, run, Arc::new(|_| {}))
    }

    /// Takes run in batches of the workers that asked meanwhile; a job a
    /// batch took for a worker that stopped waiting is given back at once
    /// rather than when its lease runs out.
    fn takes(commands: &ConnectionManager, common: &scripts::Common) -> batch::Batcher<scripts::Take, TakeAnswer> {
        let lost = JobError::worker_lost();
        let (con, shared) = (commands.clone(), common.clone());
        let run: batch::Run<scripts::Take, TakeAnswer> = Arc::new(move |takers| {
            let (mut con, common, lost) = (con.clone(), shared.clone(), lost.clone());
            Box::pin(async move {
                let taken = scripts::take(&mut con, &common, (lost.code.as_str(), &lost.message), &takers).await?;
                let mut taken = taken.into_iter();
                Ok(takers
                    .into_iter()
                    .map(|taker| {
                        let Some((attempt, header, body)) = taken.next() else { return Ok(None) };
                        let mut job: Job = serde_json::from_str(&header).map_err(unavailable)?;
                        job.request.body = body;
                        Ok(Some(Delivery { job, receipt: taker.receipt, attempt }))
                    })
                    .collect())
            })
        });
        let (con, common) = (commands.clone(), common.clone());
        let unclaimed: batch::Unclaimed<TakeAnswer> = Arc::new(move |answer| {
            let Ok(Some(delivery)) = answer else { return };
            let (mut con, common) = (con.clone(), common.clone());
            tokio::spawn(async move {
                let error = JobError::worker_lost();
                let give_back = scripts::Retry {
                    id: &delivery.job.id,
                    receipt: &delivery.receipt,
                    code: error.code.as_str(),
                    message: &error.message,
                    usage: None,
                };
                if let Err(err) = scripts::retry(&mut con, &common, &give_back).await {
                    tracing::warn!(job_id = %delivery.job.id, cause = %err, "cannot give back a job nobody took; it is handed out again when its lease runs out");
                }
            });
        });
        batch::Batcher::new(BATCH, |_| 0, run, unclaimed)
    }

    /// Ends run in batches of what workers sent meanwhile.
    fn completions(commands: &ConnectionManager, common: &scripts::Common) -> batch::Batcher<scripts::Complete, bool> {
        let (con, common) = (commands.clone(), common.clone());
        let run: batch::Run<scripts::Complete, bool> = Arc::new(move |ends| {
            let (mut con, common) = (con.clone(), common.clone());
            Box::pin(async move { scripts::complete(&mut con, &common, &ends).await })
        });
        // An end whose caller left is recorded all the same.
        batch::Batcher::new(BATCH, scripts::Complete::weight, run, Arc::new(|_| {}))
    }

    /// Moves the jobs an older release left in its job stream (the layout
    /// before per-tenant queues) into their tenants' queues: at connect,
    /// then every [`ADOPT_EVERY`] while a front door of the older release
    /// may still be adding to it during a rolling upgrade. No accepted job
    /// is left behind by an upgrade.
    fn start_adopting_older_layout(self: &Arc<Self>) {
        let queue = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let Some(strong) = queue.upgrade() else { return };
                match strong.adopt_older_layout().await {
                    Ok(0) => {}
                    Ok(moved) => {
                        tracing::info!(jobs = moved, "moved jobs queued by an older release into tenant queues")
                    }
                    Err(err) => tracing::debug!(cause = %err, "cannot look for jobs queued by an older release yet"),
                }
                drop(strong);
                tokio::time::sleep(ADOPT_EVERY).await;
            }
        });
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(task);
    }

    /// One pass over the older layout's job stream; returns the jobs moved.
    async fn adopt_older_layout(&self) -> Result<usize, QueueError> {
        let stream = format!("{}:jobs", self.keys.prefix());
        let mut con = self.commands.clone();
        if !con.exists::<_, bool>(&stream).await.map_err(unavailable)? {
            return Ok(0);
        }
        let mut moved = 0;
        loop {
            // Each entry is deleted as it is handled, so every batch starts at the front.
            let batch: StreamRangeReply = con.xrange_count(&stream, "-", "+", 100).await.map_err(unavailable)?;
            if batch.ids.is_empty() {
                break;
            }
            for entry in &batch.ids {
                let id: String = entry.get("id").unwrap_or_default();
                let inline: Option<Vec<u8>> = entry.get("body");
                let header: Option<String> = if id.is_empty() {
                    None
                } else {
                    con.hget(self.keys.job(&JobId(id.clone())), "job").await.map_err(unavailable)?
                };
                let job = header.as_deref().and_then(|header| serde_json::from_str::<Job>(header).ok());
                if job.is_none() && header.is_some() {
                    tracing::warn!(job_id = %id, "a job queued by an older release cannot be read; it is dropped");
                }
                let adopt = scripts::Adopt { entry: &entry.id, id: &id, inline: inline.as_deref(), job: job.as_ref() };
                moved += usize::from(scripts::adopt(&mut con, &self.common, &adopt).await?);
            }
        }
        scripts::drop_empty_stream(&mut con, &stream).await?;
        Ok(moved)
    }

    /// One task per process listens for finished jobs and fans them out to
    /// local waiters; it reconnects by itself after Redis restarts.
    fn start_subscriber(self: &Arc<Self>) {
        let client = self.client.clone();
        let channel = self.keys.done.clone();
        let finished = self.finished.clone();
        let task = tokio::spawn(async move {
            use futures_util::StreamExt;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                if let Ok(id) = message.get_payload::<String>() {
                                    let _ = finished.send(id);
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!(cause = %err, "job-completion subscriber cannot connect; retrying"),
                }
                // Waiters re-check the job itself when a notice may have been missed.
                let _ = finished.send(String::new());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(task);
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection, QueueError> {
        if let Some(con) = self.blocking.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Ok(con);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.command_timeout))
            .set_response_timeout(None);
        self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(unavailable)
    }

    /// Takes the next job by turns for `worker`, if one is ready.
    async fn try_take(&self, worker: &str) -> Result<Option<Delivery>, QueueError> {
        let take = scripts::Take { receipt: uuid::Uuid::new_v4().to_string(), worker: worker.to_owned() };
        self.takes.call(take).await?
    }

    /// Waits up to `nap` for the doorbell: something may be ready to take.
    async fn await_doorbell(&self, nap: Duration) -> Result<(), QueueError> {
        let mut blocking = self.blocking_connection().await?;
        // BLPOP's timeout is in seconds; 0 would block for ever.
        let seconds = format!("{:.3}", nap.max(Duration::from_millis(1)).as_secs_f64());
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&self.keys.ready).arg(seconds);
        let pop = blpop.query_async::<Option<(String, String)>>(&mut blocking);
        match tokio::time::timeout(nap + self.config.command_timeout, pop).await {
            Ok(Ok(_)) => {
                self.blocking.lock().unwrap_or_else(PoisonError::into_inner).push(blocking);
                Ok(())
            }
            // A failed or stuck connection is dropped, not reused.
            Ok(Err(err)) => Err(unavailable(err)),
            Err(_) => Err(unavailable("no answer to BLPOP")),
        }
    }

    /// How long an idle worker blocks before it looks for expired leases.
    fn reclaim_interval(&self) -> Duration {
        (self.config.queue.visibility_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Runs the admission script for `job`: an async one is budgeted and
    /// may carry an idempotency key.
    async fn admit(&self, mut job: Job, budgeted: bool, key: Option<&IdempotencyKey>) -> Result<Submitted, QueueError> {
        let record = serde_json::to_string(&JobRecord::queued(&job)).map_err(unavailable)?;
        let body = std::mem::take(&mut job.request.body);
        let header = serde_json::to_string(&job).map_err(unavailable)?;
        let queue = &self.config.queue;
        let quota = job.limits.queued.map_or(queue.tenant_queue_quota, |quota| quota as usize);
        let admit = scripts::Enqueue {
            id: job.id.clone(),
            tenant: job.tenant.as_str().to_owned(),
            kind: job.kind.as_str(),
            submitted_at_ms: job.submitted_at_ms,
            function: job.function.clone(),
            header,
            body,
            record,
            capacity: queue.capacity,
            queue_bytes: queue.queue_bytes,
            tenant_quota: quota,
            tenant_queue_bytes: queue.tenant_queue_bytes,
            running_limit: job.limits.running.map_or(queue.tenant_concurrency, |limit| limit as usize),
            budgets: budgeted.then_some((queue.tenant_result_bytes, queue.result_bytes)),
            key: key.map(|key| (key.fingerprint.clone(), self.keys.idempotency(&job.tenant, &key.hash))),
        };
        match self.enqueues.call(admit).await? {
            scripts::Admission::Admitted => Ok(Submitted::Accepted),
            scripts::Admission::Existing(id, status) => {
                let status = JobStatus::parse(&status).ok_or_else(|| unavailable(format!("job status {status:?}")))?;
                Ok(Submitted::Existing { id, status })
            }
            scripts::Admission::Conflict => Ok(Submitted::Conflict),
            scripts::Admission::Duplicate => Err(QueueError::Duplicate(job.id.0.clone())),
            scripts::Admission::Full => Err(QueueError::Full { capacity: queue.capacity }),
            scripts::Admission::QueueBytesFull => Err(QueueError::QueueBytesFull { limit: queue.queue_bytes }),
            scripts::Admission::TenantQueueFull => Err(QueueError::TenantQueueFull { limit: quota }),
            scripts::Admission::TenantQueueBytesFull => {
                Err(QueueError::TenantQueueBytesFull { limit: queue.tenant_queue_bytes })
            }
            scripts::Admission::TenantResultsFull => {
                Err(QueueError::TenantResultsFull { limit: queue.tenant_result_bytes })
            }
            scripts::Admission::ResultsFull => Err(QueueError::ResultsFull { limit: queue.result_bytes }),
        }
    }

    /// The records of `ids`, in order, skipping any no longer kept.
    async fn records(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hmget(self.keys.job(id), &RECORD_FIELDS);
        }
        let mut con = self.commands.clone();
        let replies: Vec<Vec<Option<String>>> = pipe.query_async(&mut con).await.map_err(unavailable)?;
        let mut records = Vec::with_capacity(replies.len());
        for fields in &replies {
            records.extend(assemble(fields)?);
        }
        Ok(records)
    }

    /// The share of the queue of each of `tenants`, in order.
    async fn tenant_queues(&self, tenants: &[TenantId]) -> Result<Vec<TenantQueue>, QueueError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for tenant in tenants {
            pipe.hmget(self.keys.tenant(tenant), &["waiting", "bytes", "running"]);
            pipe.zrange_withscores(self.keys.oldest(tenant), 0, 0);
        }
        let mut con = self.commands.clone();
        let replies: Vec<redis::Value> = pipe.query_async(&mut con).await.map_err(unavailable)?;
        let mut queues = Vec::with_capacity(tenants.len());
        let mut replies = replies.into_iter();
        while let (Some(counts), Some(oldest)) = (replies.next(), replies.next()) {
            let (waiting, bytes, running): (Option<u64>, Option<u64>, Option<u64>) =
                redis::from_redis_value(counts).map_err(unavailable)?;
            let oldest: Vec<(String, f64)> = redis::from_redis_value(oldest).map_err(unavailable)?;
            queues.push(TenantQueue {
                queued: waiting.unwrap_or(0),
                queued_bytes: bytes.unwrap_or(0),
                running: running.unwrap_or(0),
                // Scores are whole milliseconds, exact in an f64.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                oldest_queued_at_ms: oldest.first().map(|(_, at)| *at as u64),
            });
        }
        Ok(queues)
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let id = job.id.clone();
        match self.admit(job, false, None).await? {
            Submitted::Accepted => Ok(()),
            // Without a key the script finds no existing job.
            Submitted::Existing { .. } | Submitted::Conflict => Err(QueueError::Duplicate(id.0)),
        }
    }

    async fn submit(&self, job: Job, key: Option<&IdempotencyKey>) -> Result<Submitted, QueueError> {
        self.admit(job, true, key).await
    }

    async fn reserve(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Look before blocking: a doorbell token rung in between stays
            // in the list, so no wake-up is lost.
            if let Some(delivery) = self.try_take(worker).await? {
                return Ok(Some(delivery));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.await_doorbell((deadline - now).min(self.reclaim_interval())).await?;
        }
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        if scripts::extend(&mut con, &self.common, &delivery.job.id, &delivery.receipt).await? {
            Ok(())
        } else {
            Err(QueueError::LeaseLost(delivery.receipt.clone()))
        }
    }

    fn visibility_timeout(&self) -> Duration {
        self.config.queue.visibility_timeout
    }

    fn config(&self) -> QueueConfig {
        self.config.queue
    }

    fn result_ttl(&self) -> Duration {
        self.config.queue.result_ttl
    }

    async fn start(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        // The job was marked running when it was taken, under its new lease.
        Ok(())
    }

    async fn complete(&self, delivery: &Delivery, completion: Completion) -> Result<(), QueueError> {
        let (status, error, usage, output, log) = match completion.capped() {
            Completion::Succeeded { output, usage, log } => {
                (JobStatus::Succeeded, None, Some(usage), Some(output), log)
            }
            Completion::Failed { error, usage, log } => (JobStatus::Failed, Some(error), usage, None, log),
        };
        let error = error.map(|error| serde_json::to_string(&error)).transpose().map_err(unavailable)?;
        let usage = usage.map(|usage| serde_json::to_string(&usage)).transpose().map_err(unavailable)?;
        let log = (!log.is_empty()).then_some(log);
        let end = scripts::Complete {
            id: delivery.job.id.clone(),
            status: status.as_str(),
            error,
            usage,
            output: output.map(|output| (output.body, output.content_type)),
            log,
        };
        // A job that already ended keeps its first outcome; that is no error.
        self.completions.call(end).await?;
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, error: &JobError, usage: Option<Usage>) -> Result<(), QueueError> {
        let error = error.clone().capped();
        let usage = usage.map(|usage| serde_json::to_string(&usage)).transpose().map_err(unavailable)?;
        let give_back = scripts::Retry {
            id: &delivery.job.id,
            receipt: &delivery.receipt,
            code: error.code.as_str(),
            message: &error.message,
            usage: usage.as_deref(),
        };
        let mut con = self.commands.clone();
        match scripts::retry(&mut con, &self.common, &give_back).await? {
            scripts::Retried::LeaseLost => Err(QueueError::LeaseLost(delivery.receipt.clone())),
            scripts::Retried::DeadLettered => {
                tracing::warn!(job_id = %delivery.job.id, code = %error.code, "job dead-lettered");
                Ok(())
            }
            scripts::Retried::AlreadyEnded | scripts::Retried::Requeued => Ok(()),
        }
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        let mut con = self.commands.clone();
        let fields: Vec<Option<String>> = con.hmget(self.keys.job(id), &RECORD_FIELDS).await.map_err(unavailable)?;
        assemble(&fields)
    }

    async fn output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let mut con = self.commands.clone();
        let (body, content_type): (Option<Vec<u8>>, Option<String>) =
            con.hmget(self.keys.job(id), &["output_body", "output_type"]).await.map_err(unavailable)?;
        Ok(body.zip(content_type).map(|(body, content_type)| CallOutput { body, content_type }))
    }

    async fn logs(&self, id: &JobId) -> Result<Option<JobLog>, QueueError> {
        let mut con = self.commands.clone();
        let (tenant, stdout, stderr, cut): (Option<String>, Option<String>, Option<String>, Option<String>) =
            con.hmget(self.keys.job(id), &["tenant", "log_out", "log_err", "log_cut"]).await.map_err(unavailable)?;
        if tenant.is_none() {
            return Ok(None);
        }
        Ok(Some(JobLog {
            stdout: stdout.unwrap_or_default(),
            stderr: stderr.unwrap_or_default(),
            truncated: cut.as_deref() == Some("1"),
        }))
    }

    async fn take_output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let mut con = self.commands.clone();
        let taken = scripts::take_output(&mut con, &self.common, id).await?;
        Ok(taken.map(|(body, content_type)| CallOutput { body, content_type }))
    }

    async fn eviction_risk(&self) -> Result<Option<String>, QueueError> {
        let mut con = self.commands.clone();
        let reply: redis::RedisResult<Vec<String>> =
            redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut con).await;
        match reply {
            Ok(pair) => Ok(pair.get(1).filter(|policy| policy.as_str() != "noeviction").cloned()),
            // Managed servers often disable or rename CONFIG: nothing to tell.
            Err(err) if !(err.is_io_error() || err.is_timeout() || err.is_connection_dropped()) => Ok(None),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Option<JobRecord>, QueueError> {
        // Listen before looking, so a completion in between is not missed.
        let mut finished = self.finished.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let record = self.job(id).await?;
            match &record {
                None => return Ok(None),
                Some(record) if record.status.is_final() => return Ok(Some(record.clone())),
                Some(_) => {}
            }
            loop {
                match tokio::time::timeout_at(deadline, finished.recv()).await {
                    Err(_) => return Ok(record),
                    // A notice for this job, a possible gap (lag, reconnect): look again.
                    Ok(Ok(done)) if done == id.0 || done.is_empty() => break,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(record),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }

    async fn call(&self, job: Job, timeout: Duration) -> Result<Option<SyncEnd>, QueueError> {
        // Listening before the job exists means its end cannot be missed:
        // no look before waiting, and the record and output come in one step.
        let mut finished = self.finished.subscribe();
        let id = job.id.clone();
        self.enqueue(job).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let look = match tokio::time::timeout_at(deadline, finished.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Ok(self.job(&id).await?.map(|record| SyncEnd { record, output: None }));
                }
                // A notice for this job, or a possible gap (lag, reconnect).
                Ok(Ok(done)) => done == id.0 || done.is_empty(),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => true,
            };
            if !look {
                continue;
            }
            let mut con = self.commands.clone();
            let (fields, output) = scripts::end_of(&mut con, &self.common, &id).await?;
            let Some(record) = assemble(&fields)? else { return Ok(None) };
            if record.status.is_final() {
                let output = output.map(|(body, content_type)| CallOutput { body, content_type });
                return Ok(Some(SyncEnd { record, output }));
            }
        }
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        let mut con = self.commands.clone();
        let depth: Option<i64> = con.get(&self.keys.depth).await.map_err(unavailable)?;
        Ok(usize::try_from(depth.unwrap_or(0)).unwrap_or(0))
    }

    async fn tenant_queue(&self, tenant: &TenantId) -> Result<TenantQueue, QueueError> {
        let queues = self.tenant_queues(std::slice::from_ref(tenant)).await?;
        Ok(queues.into_iter().next().unwrap_or_default())
    }

    async fn busy_tenants(&self, limit: usize) -> Result<Vec<(TenantId, TenantQueue)>, QueueError> {
        let mut con = self.commands.clone();
        // Bounded by the tenants with work: each has a job waiting or running.
        let tenants: Vec<String> = con.smembers(&self.keys.busy).await.map_err(unavailable)?;
        let tenants: Vec<TenantId> = tenants.into_iter().map(TenantId::from).collect();
        let queues = self.tenant_queues(&tenants).await?;
        let busy: Vec<(TenantId, TenantQueue)> =
            tenants.into_iter().zip(queues).filter(|(_, queue)| queue.queued + queue.running > 0).collect();
        Ok(crate::busiest_first(busy, limit))
    }

    async fn jobs(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<JobPage, QueueError> {
        let page = scripts::List {
            tenant: tenant.as_str(),
            after: cursor.and_then(decode_cursor),
            status: filter.status.map(JobStatus::as_str),
            function: filter.function.as_deref(),
            limit,
        };
        let mut con = self.commands.clone();
        let (ids, next) = scripts::list(&mut con, &self.common, &page).await?;
        let jobs = self.records(&ids).await?;
        Ok(JobPage { jobs, cursor: next.map(|(at, id)| encode_cursor(at, &id)) })
    }

    async fn cancel(&self, tenant: &TenantId, id: &JobId) -> Result<Cancel, QueueError> {
        let mut con = self.commands.clone();
        Ok(match scripts::cancel(&mut con, &self.common, tenant.as_str(), id).await? {
            scripts::Withdrawal::NotFound => Cancel::NotFound,
            scripts::Withdrawal::TooLate(fields) => assemble(&fields)?.map_or(Cancel::NotFound, Cancel::TooLate),
            scripts::Withdrawal::Withdrawn(fields) => assemble(&fields)?.map_or(Cancel::NotFound, Cancel::Cancelled),
        })
    }

    async fn forget_tenant(&self, tenant: &TenantId) -> Result<u64, QueueError> {
        let mut con = self.commands.clone();
        scripts::forget(&mut con, &self.common, tenant.as_str()).await
    }

    async fn dead_letters(&self) -> Result<Vec<(JobId, JobError)>, QueueError> {
        let mut con = self.commands.clone();
        let reply: StreamRangeReply = con.xrange_all(&self.keys.dead).await.map_err(unavailable)?;
        Ok(reply
            .ids
            .iter()
            .map(|entry| {
                let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
                let code = field("code").parse().unwrap_or(ErrorCode::Internal);
                (JobId(field("id")), JobError { code, message: field("message") })
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        let _: String = redis::cmd("PING").query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    async fn heartbeat(&self, node: &str) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        let _: i64 = con.zadd(&self.keys.nodes, node, now_ms()).await.map_err(unavailable)?;
        Ok(())
    }

    async fn workers(&self) -> Result<usize, QueueError> {
        let ttl = millis(crate::NODE_TTL);
        let mut con = self.commands.clone();
        let (_, count): (i64, usize) = redis::pipe()
            .atomic()
            .zrembyscore(&self.keys.nodes, "-inf", format!("({}", now_ms().saturating_sub(ttl)))
            .zcard(&self.keys.nodes)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(count)
    }
}
