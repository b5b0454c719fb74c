//! The Redis backend: one Stream with a consumer group carries job ids; a
//! hash per job holds its request, record and output; counters bound the
//! queue; a pub/sub channel announces finished jobs.
//!
//! | key | what |
//! |---|---|
//! | `{p}:jobs` | stream of `id` (+ `body` when small) entries, consumer group `workers` |
//! | `{p}:job:{id}` | hash: `job` (JSON, no body), `body` (when large), `status`, `deliveries`, `record` (JSON), `output_body`, `output_type`, `output_member`; expires `result_ttl` after the job ends |
//! | `{p}:idem:{tenant}:{sha256}` | an `Idempotency-Key` (hashed): `{fingerprint} {job}`; expires `result_ttl` after submission |
//! | `{p}:results` | sorted set: kept outputs `{bytes}\|{job}\|{tenant}` by expiry (ms) |
//! | `{p}:result_bytes` | hash: bytes of kept outputs, `t:{tenant}` and `total` |
//! | `{p}:depth` | jobs accepted and not finished |
//! | `{p}:waiting` | jobs waiting for a worker (bounded by the capacity) |
//! | `{p}:active:{tenant}` | the tenant's jobs accepted and not finished |
//! | `{p}:dead` | stream of dead-lettered job ids with their last error, trimmed to about `max_dead_letters` |
//! | `{p}:done` | channel: ids of jobs that just ended |
//! | `{p}:nodes` | sorted set: worker node → last heartbeat (ms) |
//!
//! Entries stay pending in the group until the job ends, so a worker that
//! dies mid-job loses nothing: after the visibility timeout another worker
//! takes the entry over with `XAUTOCLAIM`. Every state change that must be
//! atomic (admission under the bounds, completion, retry, lease checks) is a
//! Lua script ([`scripts`]). A small body rides inline in the stream entry;
//! a large one lives in the job hash (by reference), so the stream stays
//! small and reclaiming or retrying an entry never copies megabytes.
//!
//! Submodules: [`config`] (settings), [`connection`] (the connection recipe
//! the host's stores share), `keys` (key names), `scripts` (the Lua and its
//! typed callers), `entry` (stream entries from typed replies).

pub mod config;
pub mod connection;
mod entry;
mod keys;
mod scripts;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamRangeReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig, Client};
use tokio::sync::broadcast;
use tokio::time::Instant;

use sluice_core::{CallOutput, ErrorCode, TenantId};

use crate::job::now_ms;
use crate::{
    Cancel, Completion, Delivery, IdempotencyKey, Job, JobError, JobFilter, JobId, JobPage, JobRecord, JobStatus,
    Queue, QueueError, Submitted, TenantQueue, Usage,
};
pub use config::{DEFAULT_INLINE_LIMIT, DEFAULT_PREFIX, RedisQueueConfig};
pub use connection::{KeepAlive, connection_manager};
use entry::Entry;
use keys::{GROUP, Keys};

/// The Redis [`Queue`].
pub struct RedisQueue {
    client: Client,
    config: RedisQueueConfig,
    keys: Keys,
    commands: ConnectionManager,
    /// Dedicated connections for blocking reads: a `BLOCK`ing command would
    /// stall every other command sharing a multiplexed connection.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// Ids of finished jobs, fed by one subscriber task per process.
    finished: broadcast::Sender<String>,
    /// The subscriber task, stopped when the queue is dropped.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Keeps `commands` checked while the queue lives.
    _keep_alive: KeepAlive,
    /// When reserves next look for entries of silent workers.
    next_reclaim: Mutex<Instant>,
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

/// A receipt is `{entry}|{consumer}`: which stream entry was handed to whom.
fn split_receipt(receipt: &str) -> (&str, &str) {
    receipt.split_once('|').unwrap_or((receipt, ""))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisQueue {
    /// Connects (retrying in the background if Redis is down) and makes sure
    /// the stream and its consumer group exist.
    pub async fn connect(config: RedisQueueConfig) -> Result<Arc<Self>, QueueError> {
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let commands = connection_manager(&client, config.command_timeout).await.map_err(unavailable)?;
        let keys = Keys::new(&config.prefix);
        let (finished, _) = broadcast::channel(4096);
        let keep_alive = KeepAlive::start(commands.clone());
        let queue = Arc::new(Self {
            client,
            config,
            keys,
            commands,
            blocking: Mutex::new(Vec::new()),
            finished,
            tasks: Mutex::new(Vec::new()),
            _keep_alive: keep_alive,
            next_reclaim: Mutex::new(Instant::now()),
        });
        queue.ensure_group().await?;
        queue.start_subscriber();
        Ok(queue)
    }

    async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        let created: redis::RedisResult<()> = con.xgroup_create_mkstream(&self.keys.stream, GROUP, "0").await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.to_string().contains("BUSYGROUP") => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
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

    /// Turns a stream entry into a delivery, or `None` if its job already
    /// ended or was just dead-lettered.
    async fn take(&self, consumer: &str, entry: Entry) -> Result<Option<Delivery>, QueueError> {
        let mut con = self.commands.clone();
        let max_deliveries = self.config.queue.max_deliveries;
        let take = scripts::Take { job: &entry.job, entry: &entry.id, max_deliveries };
        let receipt = format!("{}|{consumer}", entry.id);
        match scripts::take(&mut con, &self.keys, &take).await? {
            scripts::Taken::Ended => Ok(None),
            scripts::Taken::Delivered { attempt, header, body } => {
                let mut job: Job = serde_json::from_str(&header).map_err(unavailable)?;
                job.request.body = entry.body.unwrap_or(body);
                Ok(Some(Delivery { job, receipt, attempt }))
            }
            scripts::Taken::Exhausted { deliveries, header } => {
                // Every worker it was handed to went silent: give up with that reason.
                let job: Job = serde_json::from_str(&header).map_err(unavailable)?;
                self.retry(&Delivery { job, receipt, attempt: deliveries }, &JobError::worker_lost(), None).await?;
                Ok(None)
            }
        }
    }

    /// True unless this process found nothing to reclaim moments ago.
    /// Skipping the check then saves healthy reserves a round trip; a dead
    /// worker's job waits at most that moment longer.
    fn reclaim_due(&self) -> bool {
        Instant::now() >= *self.next_reclaim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes over one entry whose worker went quiet, if there is one.
    async fn reclaim(&self, worker: &str) -> Result<Option<Entry>, QueueError> {
        let visibility = millis(self.config.queue.visibility_timeout);
        let mut con = self.commands.clone();
        let options = StreamAutoClaimOptions::default().count(1);
        let claimed: StreamAutoClaimReply = con
            .xautoclaim_options(&self.keys.stream, GROUP, worker, visibility, "0-0", options)
            .await
            .map_err(unavailable)?;
        if let Some(entry) = Entry::first_claimed(&claimed) {
            return Ok(Some(entry));
        }
        let pause = (self.config.queue.visibility_timeout / 4).min(Duration::from_secs(1));
        *self.next_reclaim.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now() + pause;
        Ok(None)
    }

    /// Reads the next new entry for `worker`, blocking up to `wait`.
    async fn read_new(&self, worker: &str, wait: Duration) -> Result<Option<Entry>, QueueError> {
        let mut blocking = self.blocking_connection().await?;
        let mut options = StreamReadOptions::default().group(GROUP, worker).count(1);
        let block_ms = usize::try_from(wait.as_millis()).unwrap_or(usize::MAX);
        if block_ms > 0 {
            options = options.block(block_ms);
        }
        let streams = [&self.keys.stream];
        let read = blocking.xread_options(&streams, &[">"], &options);
        let reply: Option<StreamReadReply> = match tokio::time::timeout(wait + self.config.command_timeout, read).await
        {
            Ok(Ok(reply)) => {
                self.blocking.lock().unwrap_or_else(PoisonError::into_inner).push(blocking);
                reply
            }
            // A failed or stuck connection is dropped, not reused.
            Ok(Err(err)) => return Err(unavailable(err)),
            Err(_) => return Err(unavailable("no answer to XREADGROUP")),
        };
        Ok(reply.as_ref().and_then(Entry::first_read))
    }

    fn final_record(
        &self,
        delivery: &Delivery,
        status: JobStatus,
        error: Option<JobError>,
        usage: Option<Usage>,
    ) -> JobRecord {
        JobRecord {
            status,
            error,
            usage,
            deliveries: delivery.attempt,
            finished_at_ms: Some(now_ms()),
            ..JobRecord::queued(&delivery.job)
        }
    }

    /// Runs the admission script for `job`: an async one is budgeted and
    /// may carry an idempotency key.
    async fn admit(&self, job: &Job, budgeted: bool, key: Option<&IdempotencyKey>) -> Result<Submitted, QueueError> {
        let record = serde_json::to_string(&JobRecord::queued(job)).map_err(unavailable)?;
        let mut header = job.clone();
        header.request.body = Vec::new();
        let header = serde_json::to_string(&header).map_err(unavailable)?;
        let queue = &self.config.queue;
        let admit = scripts::Enqueue {
            id: &job.id,
            tenant: &job.tenant,
            header: &header,
            body: &job.request.body,
            inline: job.request.body.len() <= self.config.inline_limit,
            record: &record,
            capacity: queue.capacity,
            tenant_limit: queue.tenant_queue_quota,
            budgets: budgeted.then_some((queue.tenant_result_bytes, queue.result_bytes)),
            key: key.map(|key| (key, self.ttl_ms())),
        };
        let mut con = self.commands.clone();
        match scripts::enqueue(&mut con, &self.keys, &admit).await? {
            scripts::Admission::Admitted => Ok(Submitted::Accepted),
            scripts::Admission::Existing(id, status) => {
                let status = JobStatus::parse(&status).ok_or_else(|| unavailable(format!("job status {status:?}")))?;
                Ok(Submitted::Existing { id, status })
            }
            scripts::Admission::Conflict => Ok(Submitted::Conflict),
            scripts::Admission::Duplicate => Err(QueueError::Duplicate(job.id.0.clone())),
            scripts::Admission::Full => Err(QueueError::Full { capacity: queue.capacity }),
            scripts::Admission::TenantBusy => Err(QueueError::TenantQueueFull { limit: queue.tenant_queue_quota }),
            scripts::Admission::TenantResultsFull => {
                Err(QueueError::TenantResultsFull { limit: queue.tenant_result_bytes })
            }
            scripts::Admission::ResultsFull => Err(QueueError::ResultsFull { limit: queue.result_bytes }),
        }
    }

    fn ttl_ms(&self) -> u64 {
        millis(self.config.queue.result_ttl).max(1)
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
        match self.admit(&job, false, None).await? {
            Submitted::Accepted => Ok(()),
            // Without a key the script finds no existing job.
            Submitted::Existing { .. } | Submitted::Conflict => Err(QueueError::Duplicate(job.id.0)),
        }
    }

    async fn submit(&self, job: Job, key: Option<&IdempotencyKey>) -> Result<Submitted, QueueError> {
        self.admit(&job, true, key).await
    }

    async fn reserve(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        if self.reclaim_due()
            && let Some(entry) = self.reclaim(worker).await?
        {
            tracing::info!(job_id = %entry.job, worker, "reclaimed a job from a silent worker");
            return self.take(worker, entry).await;
        }
        match self.read_new(worker, wait).await? {
            Some(entry) => self.take(worker, entry).await,
            None => Ok(None),
        }
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let (entry, consumer) = split_receipt(&delivery.receipt);
        let mut con = self.commands.clone();
        if scripts::extend(&mut con, &self.keys, &scripts::Extend { entry, consumer }).await? {
            Ok(())
        } else {
            Err(QueueError::LeaseLost(delivery.receipt.clone()))
        }
    }

    fn visibility_timeout(&self) -> Duration {
        self.config.queue.visibility_timeout
    }

    fn result_ttl(&self) -> Duration {
        self.config.queue.result_ttl
    }

    async fn start(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        // The job was marked running when it was taken, under its new lease.
        Ok(())
    }

    async fn complete(&self, delivery: &Delivery, completion: Completion) -> Result<(), QueueError> {
        let (entry, _) = split_receipt(&delivery.receipt);
        let (record, output) = match completion.capped() {
            Completion::Succeeded { output, usage } => {
                (self.final_record(delivery, JobStatus::Succeeded, None, Some(usage)), Some(output))
            }
            Completion::Failed { error, usage } => {
                (self.final_record(delivery, JobStatus::Failed, Some(error), usage), None)
            }
        };
        let record_json = serde_json::to_string(&record).map_err(unavailable)?;
        let end = scripts::Complete {
            id: &delivery.job.id,
            tenant: &delivery.job.tenant,
            entry,
            status: record.status.as_str(),
            record: &record_json,
            output: output.as_ref().map(|output| (output.body.as_slice(), output.content_type.as_str())),
            ttl_ms: self.ttl_ms(),
        };
        let mut con = self.commands.clone();
        // A job that already ended keeps its first outcome; that is no error.
        scripts::complete(&mut con, &self.keys, &end).await?;
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, error: &JobError, _usage: Option<Usage>) -> Result<(), QueueError> {
        let (entry, consumer) = split_receipt(&delivery.receipt);
        let error = &error.clone().capped();
        let dead = JobError {
            code: error.code,
            message: format!("{} (gave up after {} deliveries)", error.message, delivery.attempt),
        };
        let dead_record = serde_json::to_string(&self.final_record(delivery, JobStatus::Failed, Some(dead), None))
            .map_err(unavailable)?;
        let give_back = scripts::Retry {
            id: &delivery.job.id,
            tenant: &delivery.job.tenant,
            entry,
            consumer,
            max_deliveries: self.config.queue.max_deliveries,
            dead_record: &dead_record,
            ttl_ms: self.ttl_ms(),
            code: error.code.as_str(),
            message: &error.message,
            max_dead_letters: self.config.queue.max_dead_letters,
        };
        let mut con = self.commands.clone();
        match scripts::retry(&mut con, &self.keys, &give_back).await? {
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
        let (record, status, deliveries): (Option<String>, Option<String>, Option<u32>) =
            con.hmget(self.keys.job(id), &["record", "status", "deliveries"]).await.map_err(unavailable)?;
        let Some(record) = record else { return Ok(None) };
        let mut record: JobRecord = serde_json::from_str(&record).map_err(unavailable)?;
        // `status` and `deliveries` change without rewriting the record.
        if let Some(status) = status.as_deref().and_then(JobStatus::parse) {
            record.status = status;
        }
        if let Some(deliveries) = deliveries {
            record.deliveries = record.deliveries.max(deliveries);
        }
        Ok(Some(record))
    }

    async fn output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let mut con = self.commands.clone();
        let (body, content_type): (Option<Vec<u8>>, Option<String>) =
            con.hmget(self.keys.job(id), &["output_body", "output_type"]).await.map_err(unavailable)?;
        Ok(body.zip(content_type).map(|(body, content_type)| CallOutput { body, content_type }))
    }

    async fn take_output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let mut con = self.commands.clone();
        let taken = scripts::take_output(&mut con, &self.keys, id).await?;
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

    async fn depth(&self) -> Result<usize, QueueError> {
        let mut con = self.commands.clone();
        let depth: Option<i64> = con.get(&self.keys.depth).await.map_err(unavailable)?;
        Ok(usize::try_from(depth.unwrap_or(0)).unwrap_or(0))
    }

    async fn tenant_queue(&self, _tenant: &TenantId) -> Result<TenantQueue, QueueError> {
        Err(unavailable("per-tenant queues are not built yet"))
    }

    async fn busy_tenants(&self, _limit: usize) -> Result<Vec<(TenantId, TenantQueue)>, QueueError> {
        Err(unavailable("per-tenant queues are not built yet"))
    }

    async fn jobs(
        &self,
        _tenant: &TenantId,
        _filter: &JobFilter,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> Result<JobPage, QueueError> {
        Err(unavailable("per-tenant queues are not built yet"))
    }

    async fn cancel(&self, _tenant: &TenantId, _id: &JobId) -> Result<Cancel, QueueError> {
        Err(unavailable("per-tenant queues are not built yet"))
    }

    async fn forget_tenant(&self, _tenant: &TenantId) -> Result<u64, QueueError> {
        Err(unavailable("per-tenant queues are not built yet"))
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
