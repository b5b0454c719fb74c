//! The Redis backend: one Stream with a consumer group carries job ids; a
//! hash per job holds its request, record and output; a counter bounds the
//! queue; a pub/sub channel announces finished jobs.
//!
//! | key | what |
//! |---|---|
//! | `{p}:jobs` | stream of `id` (+ `body` when small) entries, consumer group `workers` |
//! | `{p}:job:{id}` | hash: `job` (JSON, no body), `body` (when large), `status`, `deliveries`, `record` (JSON), `output_body`, `output_type`; expires `result_ttl` after the job ends |
//! | `{p}:depth` | jobs accepted and not finished |
//! | `{p}:active:{tenant}` | the tenant's jobs accepted and not finished |
//! | `{p}:dead` | stream of dead-lettered job ids with their last error |
//! | `{p}:done` | channel: ids of jobs that just ended |
//! | `{p}:nodes` | sorted set: worker node → last heartbeat (ms) |
//!
//! Entries stay pending in the group until the job ends, so a worker that
//! dies mid-job loses nothing: after the visibility timeout another worker
//! takes the entry over with `XAUTOCLAIM`. Every state change that must be
//! atomic (admission under the bound, completion, retry, lease checks) is a
//! Lua script. A small body rides inline in the stream entry; a large one
//! lives in the job hash (by reference), so the stream stays small and
//! reclaiming or retrying an entry never copies megabytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script, Value};
use tokio::sync::broadcast;

use sluice_core::{CallOutput, ErrorCode};

use crate::job::now_ms;
use crate::{Completion, Delivery, Job, JobError, JobId, JobRecord, JobStatus, Queue, QueueConfig, QueueError};

const GROUP: &str = "workers";

/// Admission: refuse past the queue's or the tenant's bound or a duplicate
/// id, else store and enqueue, the body inline in the stream entry (small)
/// or in the job hash (large).
const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local depth = tonumber(redis.call('GET', KEYS[1]) or '0')
if depth >= tonumber(ARGV[1]) then return -1 end
local active = tonumber(redis.call('GET', KEYS[4]) or '0')
if active >= tonumber(ARGV[6]) then return -3 end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[2], 'job', ARGV[2], 'record', ARGV[4], 'status', 'queued', 'deliveries', 0)
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[5], 'body', ARGV[3])
else
  redis.call('HSET', KEYS[2], 'job', ARGV[2], 'body', ARGV[3], 'record', ARGV[4], 'status', 'queued', 'deliveries', 0)
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[5])
end
redis.call('INCR', KEYS[1])
redis.call('INCR', KEYS[4])
return 0
";

/// True (1) when `entry` is pending for `consumer`: the lease is still ours.
const HOLDS: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
if ARGV[4] == 'extend' then redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID') end
return 1
";

/// Ends a job once: record, output, expiry, acknowledgement, announcement.
/// A job that already ended keeps its first outcome (0 is returned).
const COMPLETE: &str = r"
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if not status or status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'record', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'output_body', ARGV[6], 'output_type', ARGV[7]) end
redis.call('HDEL', KEYS[1], 'body')
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('DECR', KEYS[3])
if redis.call('DECR', KEYS[4]) <= 0 then redis.call('DEL', KEYS[4]) end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return 1
";

/// Gives a job back: requeued under a new entry (carrying an inline body
/// along), or dead-lettered (with the final record the caller prepared)
/// once it had `max` deliveries.
const RETRY: &str = r"
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return -1 end
local old = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if not status or status == 'succeeded' or status == 'failed' then return 0 end
local deliveries = tonumber(redis.call('HGET', KEYS[1], 'deliveries') or '0')
if deliveries >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'record', ARGV[5])
  redis.call('HDEL', KEYS[1], 'body')
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[7], 'code', ARGV[8], 'message', ARGV[9])
  redis.call('DECR', KEYS[3])
  if redis.call('DECR', KEYS[5]) <= 0 then redis.call('DEL', KEYS[5]) end
  redis.call('PUBLISH', ARGV[10], ARGV[7])
  return 2
end
redis.call('HSET', KEYS[1], 'status', 'queued')
if #old > 0 then
  redis.call('XADD', KEYS[2], '*', unpack(old[1][2]))
else
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[7])
end
return 1
";

/// Takes a delivery: counts it, marks the job running and returns the job
/// and its body by reference (empty when the body rode inline in the entry
/// the caller already holds), or nothing when the job already ended (its
/// entry is then acknowledged). Marking it here saves `start` a round trip.
const TAKE: &str = r"
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'failed' then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
  return false
end
local deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
redis.call('HSET', KEYS[1], 'status', 'running')
return {deliveries, redis.call('HGET', KEYS[1], 'job'), redis.call('HGET', KEYS[1], 'body') or ''}
";

/// A connection manager whose connects and responses time out after
/// `timeout`, so an outage is reported instead of waited out. The queue and
/// the host's state stores both connect this way.
pub async fn connection_manager(client: &Client, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    client.get_connection_manager_with_config(config).await
}

/// Pings a connection every 500 ms until dropped. A connection manager
/// notices a dead connection only when a command fails on it; after an
/// outage the ping takes that failure, so callers do not.
#[derive(Debug)]
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    /// Starts pinging `con`.
    pub fn start(mut con: ConnectionManager) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut con).await;
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where to find Redis and how to name keys.
#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
    /// Bounds and timeouts shared with the in-memory backend.
    pub queue: QueueConfig,
    /// Longest a command may take before the queue reports itself unavailable.
    pub command_timeout: Duration,
    /// Request bodies up to this size ride in the stream entry; larger ones
    /// are kept in the job hash and the entry only names the job.
    pub inline_limit: usize,
}

/// Bodies up to this size go inline by default. Measured with
/// `bench/benches/queue.rs` (one run, 2 cores): inline/by-reference round
/// trip 1.11 at 256 B (within noise), 0.82 at 64 KiB, 0.70 at 1 MiB. Larger
/// bodies still go by reference: a retry or reclaim copies the stream
/// entry, and multi-megabyte entries would sit in the stream while queued.
pub const DEFAULT_INLINE_LIMIT: usize = 1024 * 1024;

impl RedisQueueConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "sluice".to_owned(),
            queue: QueueConfig::default(),
            command_timeout: Duration::from_secs(1),
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }
}

struct Keys {
    stream: String,
    depth: String,
    dead: String,
    done: String,
    nodes: String,
    prefix: String,
}

impl Keys {
    fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    fn active(&self, tenant: &str) -> String {
        format!("{}:active:{tenant}", self.prefix)
    }
}

struct Scripts {
    enqueue: Script,
    holds: Script,
    complete: Script,
    retry: Script,
    take: Script,
}

/// The Redis [`Queue`].
pub struct RedisQueue {
    client: Client,
    config: RedisQueueConfig,
    keys: Keys,
    scripts: Scripts,
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
    next_reclaim: Mutex<std::time::Instant>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").field("url", &self.config.url).field("prefix", &self.config.prefix).finish()
    }
}

fn unavailable(err: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

impl RedisQueue {
    /// Connects (retrying in the background if Redis is down) and makes sure
    /// the stream and its consumer group exist.
    pub async fn connect(config: RedisQueueConfig) -> Result<Arc<Self>, QueueError> {
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let commands = connection_manager(&client, config.command_timeout).await.map_err(unavailable)?;
        let prefix = config.prefix.clone();
        let keys = Keys {
            stream: format!("{prefix}:jobs"),
            depth: format!("{prefix}:depth"),
            dead: format!("{prefix}:dead"),
            done: format!("{prefix}:done"),
            nodes: format!("{prefix}:nodes"),
            prefix,
        };
        let scripts = Scripts {
            enqueue: Script::new(ENQUEUE),
            holds: Script::new(HOLDS),
            complete: Script::new(COMPLETE),
            retry: Script::new(RETRY),
            take: Script::new(TAKE),
        };
        let (finished, _) = broadcast::channel(4096);
        let keep_alive = KeepAlive::start(commands.clone());
        let queue = Arc::new(Self {
            client,
            config,
            keys,
            scripts,
            commands,
            blocking: Mutex::new(Vec::new()),
            finished,
            tasks: Mutex::new(Vec::new()),
            _keep_alive: keep_alive,
            next_reclaim: Mutex::new(std::time::Instant::now()),
        });
        queue.ensure_group().await?;
        queue.start_subscriber();
        Ok(queue)
    }

    async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        match created {
            Ok(_) => Ok(()),
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

    /// Turns a stream entry into a delivery, or `None` if its job already ended.
    async fn take(&self, consumer: &str, entry: Entry) -> Result<Option<Delivery>, QueueError> {
        let (entry_id, job_id) = (entry.id.as_str(), entry.job.as_str());
        let mut con = self.commands.clone();
        let taken: Option<(u32, String, Vec<u8>)> = self
            .scripts
            .take
            .key(self.keys.job(job_id))
            .key(&self.keys.stream)
            .arg(GROUP)
            .arg(entry_id)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let Some((attempt, job_json, body)) = taken else { return Ok(None) };
        let mut job: Job = serde_json::from_str(&job_json).map_err(unavailable)?;
        job.request.body = entry.body.unwrap_or(body);
        let delivery = Delivery { job, receipt: format!("{entry_id}|{consumer}"), attempt };
        if attempt > self.config.queue.max_deliveries {
            // Its earlier workers all vanished: give up with that reason.
            let lost = JobError {
                code: ErrorCode::WorkerLost,
                message: "the worker stopped responding (visibility timeout)".to_owned(),
            };
            self.retry(&delivery, &lost).await?;
            return Ok(None);
        }
        Ok(Some(delivery))
    }

    /// True unless this process found nothing to reclaim moments ago.
    /// Skipping the check then saves healthy reserves a round trip; a dead
    /// worker's job waits at most that moment longer.
    fn reclaim_due(&self) -> bool {
        let next = *self.next_reclaim.lock().unwrap_or_else(PoisonError::into_inner);
        std::time::Instant::now() >= next
    }

    /// Takes over one entry whose worker went quiet, if there is one:
    /// its entry id and job id.
    async fn reclaim(&self, worker: &str) -> Result<Option<Entry>, QueueError> {
        let visibility = u64::try_from(self.config.queue.visibility_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut con = self.commands.clone();
        let claimed: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg(worker)
            .arg(visibility)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if let Value::Array(parts) = &claimed
            && let Some(entries) = parts.get(1)
            && let Some(entry) = first_entry(entries)
        {
            return Ok(Some(entry));
        }
        let pause = (self.config.queue.visibility_timeout / 4).min(Duration::from_secs(1));
        *self.next_reclaim.lock().unwrap_or_else(PoisonError::into_inner) = std::time::Instant::now() + pause;
        Ok(None)
    }

    fn split_receipt(receipt: &str) -> (&str, &str) {
        receipt.split_once('|').unwrap_or((receipt, ""))
    }

    async fn holds(&self, delivery: &Delivery, action: &str) -> Result<(), QueueError> {
        let (entry, consumer) = Self::split_receipt(&delivery.receipt);
        let mut con = self.commands.clone();
        let held: i64 = self
            .scripts
            .holds
            .key(&self.keys.stream)
            .key(self.keys.job(&delivery.job.id.0))
            .arg(GROUP)
            .arg(entry)
            .arg(consumer)
            .arg(action)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        if held == 1 { Ok(()) } else { Err(QueueError::LeaseLost(delivery.receipt.clone())) }
    }

    fn final_record(
        &self,
        delivery: &Delivery,
        status: JobStatus,
        error: Option<JobError>,
        usage: Option<crate::Usage>,
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

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.config.queue.result_ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

/// A stream entry: its id, its job's id and the body if it rode inline.
struct Entry {
    id: String,
    job: String,
    body: Option<Vec<u8>>,
}

/// The first entry in an XREADGROUP / XAUTOCLAIM entry list.
fn first_entry(entries: &Value) -> Option<Entry> {
    let Value::Array(entries) = entries else { return None };
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let [id, fields] = parts.as_slice() else { continue };
        let id: String = redis::from_redis_value_ref(id).ok()?;
        // Values are bytes: an inline body need not be UTF-8.
        let mut fields: HashMap<String, Vec<u8>> = redis::from_redis_value_ref(fields).ok()?;
        if let Some(job) = fields.get("id").and_then(|id| String::from_utf8(id.clone()).ok()) {
            return Some(Entry { id, job, body: fields.remove("body") });
        }
    }
    None
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let record = serde_json::to_string(&JobRecord::queued(&job)).map_err(unavailable)?;
        let body = job.request.body.clone();
        let inline = body.len() <= self.config.inline_limit;
        let mut header = job.clone();
        header.request.body = Vec::new();
        let header = serde_json::to_string(&header).map_err(unavailable)?;
        let mut con = self.commands.clone();
        let admitted: i64 = self
            .scripts
            .enqueue
            .key(&self.keys.depth)
            .key(self.keys.job(&job.id.0))
            .key(&self.keys.stream)
            .key(self.keys.active(&job.tenant))
            .arg(self.config.queue.capacity)
            .arg(header)
            .arg(body)
            .arg(record)
            .arg(&job.id.0)
            .arg(self.config.queue.tenant_concurrency)
            .arg(if inline { "1" } else { "0" })
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        match admitted {
            0 => Ok(()),
            -1 => Err(QueueError::Full { capacity: self.config.queue.capacity }),
            -3 => Err(QueueError::TenantBusy { limit: self.config.queue.tenant_concurrency }),
            _ => Err(QueueError::Duplicate(job.id.0)),
        }
    }

    async fn reserve(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        if self.reclaim_due()
            && let Some(entry) = self.reclaim(worker).await?
        {
            tracing::info!(job_id = %entry.job, worker, "reclaimed a job from a silent worker");
            return self.take(worker, entry).await;
        }
        let mut blocking = self.blocking_connection().await?;
        let block_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP").arg(GROUP).arg(worker).arg("COUNT").arg(1);
        if block_ms > 0 {
            read.arg("BLOCK").arg(block_ms);
        }
        read.arg("STREAMS").arg(&self.keys.stream).arg(">");
        let outcome =
            tokio::time::timeout(wait + self.config.command_timeout, read.query_async::<Value>(&mut blocking)).await;
        let reply = match outcome {
            Ok(Ok(reply)) => {
                self.blocking.lock().unwrap_or_else(PoisonError::into_inner).push(blocking);
                reply
            }
            // A failed or stuck connection is dropped, not reused.
            Ok(Err(err)) => return Err(unavailable(err)),
            Err(_) => return Err(unavailable("no answer to XREADGROUP")),
        };
        let Value::Array(streams) = reply else { return Ok(None) };
        for stream in streams {
            let Value::Array(parts) = stream else { continue };
            if let Some(entries) = parts.get(1)
                && let Some(entry) = first_entry(entries)
            {
                return self.take(worker, entry).await;
            }
        }
        Ok(None)
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.holds(delivery, "extend").await
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
        let (entry, _) = Self::split_receipt(&delivery.receipt);
        let (record, output) = match completion {
            Completion::Succeeded { output, usage } => {
                (self.final_record(delivery, JobStatus::Succeeded, None, Some(usage)), Some(output))
            }
            Completion::Failed { error, usage } => {
                (self.final_record(delivery, JobStatus::Failed, Some(error), usage), None)
            }
        };
        let record_json = serde_json::to_string(&record).map_err(unavailable)?;
        let (has_output, body, content_type) = match output {
            Some(output) => ("1", output.body, output.content_type),
            None => ("0", Vec::new(), String::new()),
        };
        let mut con = self.commands.clone();
        let _: i64 = self
            .scripts
            .complete
            .key(self.keys.job(&delivery.job.id.0))
            .key(&self.keys.stream)
            .key(&self.keys.depth)
            .key(self.keys.active(&delivery.job.tenant))
            .arg(GROUP)
            .arg(entry)
            .arg(record.status.as_str())
            .arg(record_json)
            .arg(has_output)
            .arg(body)
            .arg(content_type)
            .arg(self.ttl_ms())
            .arg(&self.keys.done)
            .arg(&delivery.job.id.0)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, error: &JobError) -> Result<(), QueueError> {
        let (entry, consumer) = Self::split_receipt(&delivery.receipt);
        let dead = JobError {
            code: error.code,
            message: format!("{} (gave up after {} deliveries)", error.message, delivery.attempt),
        };
        let record = self.final_record(delivery, JobStatus::Failed, Some(dead), None);
        let mut con = self.commands.clone();
        let outcome: i64 = self
            .scripts
            .retry
            .key(self.keys.job(&delivery.job.id.0))
            .key(&self.keys.stream)
            .key(&self.keys.depth)
            .key(&self.keys.dead)
            .key(self.keys.active(&delivery.job.tenant))
            .arg(GROUP)
            .arg(entry)
            .arg(consumer)
            .arg(self.config.queue.max_deliveries)
            .arg(serde_json::to_string(&record).map_err(unavailable)?)
            .arg(self.ttl_ms())
            .arg(&delivery.job.id.0)
            .arg(error.code.as_str())
            .arg(&error.message)
            .arg(&self.keys.done)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        if outcome == 2 {
            tracing::warn!(job_id = %delivery.job.id, code = %error.code, "job dead-lettered");
        }
        if outcome == -1 { Err(QueueError::LeaseLost(delivery.receipt.clone())) } else { Ok(()) }
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        let mut con = self.commands.clone();
        let (record, status, deliveries): (Option<String>, Option<String>, Option<u32>) = redis::cmd("HMGET")
            .arg(self.keys.job(&id.0))
            .arg("record")
            .arg("status")
            .arg("deliveries")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
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
        let (body, content_type): (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.job(&id.0))
            .arg("output_body")
            .arg("output_type")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(body.zip(content_type).map(|(body, content_type)| CallOutput { body, content_type }))
    }

    async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Option<JobRecord>, QueueError> {
        // Listen before looking, so a completion in between is not missed.
        let mut finished = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
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
        let depth: Option<i64> =
            redis::cmd("GET").arg(&self.keys.depth).query_async(&mut con).await.map_err(unavailable)?;
        Ok(usize::try_from(depth.unwrap_or(0)).unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        let _: String = redis::cmd("PING").query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    async fn heartbeat(&self, node: &str) -> Result<(), QueueError> {
        let mut con = self.commands.clone();
        let _: i64 = redis::cmd("ZADD")
            .arg(&self.keys.nodes)
            .arg(now_ms())
            .arg(node)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn workers(&self) -> Result<usize, QueueError> {
        let ttl = u64::try_from(crate::NODE_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut con = self.commands.clone();
        let (_, count): (i64, usize) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&self.keys.nodes)
            .arg("-inf")
            .arg(format!("({}", now_ms().saturating_sub(ttl)))
            .cmd("ZCARD")
            .arg(&self.keys.nodes)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(count)
    }
}

impl RedisQueue {
    /// Dead-lettered job ids with their last error code, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<(JobId, JobError)>, QueueError> {
        let mut con = self.commands.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.keys.dead)
            .arg("-")
            .arg("+")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let Value::Array(entries) = reply else { return Ok(Vec::new()) };
        let mut dead = Vec::new();
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let Some(fields) = parts.get(1) else { continue };
            let fields: HashMap<String, String> = redis::from_redis_value_ref(fields).map_err(unavailable)?;
            let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
            dead.push((
                JobId(field("id")),
                JobError { code: field("code").parse().unwrap_or(ErrorCode::Internal), message: field("message") },
            ));
        }
        Ok(dead)
    }
}
