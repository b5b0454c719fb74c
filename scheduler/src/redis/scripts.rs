//! The Lua scripts behind every state change that must be atomic
//! (admission under the bounds, taking a delivery, lease checks, completion,
//! retry), each beside the one Rust function that runs it. The functions
//! take their keys from [`Keys`] and their arguments as structs with named
//! fields, and pass them in the order the script names them in its first
//! lines, so the order is written down once, next to the script.
//!
//! Counters are decremented with `decr`, which deletes a counter that
//! reaches zero: an idle deployment leaves no keys behind, and a counter
//! that drifted below zero (say, after an AOF lost its last second) heals
//! at the next job instead of admitting jobs past the bound forever.

use std::sync::LazyLock;

use redis::Script;
use redis::aio::ConnectionManager;

use super::keys::{GROUP, Keys};
use super::unavailable;
use crate::{IdempotencyKey, JobId, QueueError};
use sluice_core::TenantId;

/// Shared helpers: releasing a counter, and the accounting of kept outputs.
///
/// Every kept output is a member `{bytes}|{job}|{tenant}` of the results
/// sorted set, scored by when its job hash expires, and its bytes are
/// counted in the result-bytes hash (`t:{tenant}` and `total`). Whoever
/// touches the accounting first drops members whose expiry has passed and
/// refunds their bytes, so the counts follow the job hashes' TTLs without
/// a sweeper; an output taken early is refunded by whoever takes it.
const DECR: &str = r"
local function decr(key)
  if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function refund(totals_key, member)
  local bytes, tenant = string.match(member, '^(%d+)|[^|]*|(.*)$')
  if not bytes then return end
  bytes = tonumber(bytes)
  if redis.call('HINCRBY', totals_key, 't:' .. tenant, -bytes) <= 0 then redis.call('HDEL', totals_key, 't:' .. tenant) end
  if redis.call('HINCRBY', totals_key, 'total', -bytes) <= 0 then redis.call('HDEL', totals_key, 'total') end
end
local function trim_results(results_key, totals_key)
  local expired = redis.call('ZRANGEBYSCORE', results_key, '-inf', now_ms(), 'LIMIT', 0, 256)
  for _, member in ipairs(expired) do
    refund(totals_key, member)
    redis.call('ZREM', results_key, member)
  end
end
";

/// A script with the shared helpers in front of `body`.
fn script(body: &str) -> Script {
    Script::new(&format!("{DECR}{body}"))
}

/// Admission, in one step: an `Idempotency-Key` that already names a kept
/// job returns it (or a conflict); else refuse (async jobs) past the
/// tenant's or the queue's result budget, or a duplicate id, or past the
/// queue's or the tenant's bound; else store the job, enqueue it, the body inline
/// in the stream entry (small) or in the job hash (large), and record the
/// key. Answers `{code, job, status}`.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local depth_key, waiting_key, job_key, stream_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local results_key, totals_key, idem_key = KEYS[6], KEYS[7], KEYS[8]
local id, header, body, record, inline = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'
local capacity, tenant_limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local budgeted, tenant, tenant_budget, total_budget = ARGV[8] == '1', ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local has_key, fingerprint, key_ttl_ms, job_prefix = ARGV[12] == '1', ARGV[13], ARGV[14], ARGV[15]
if has_key then
  local held = redis.call('GET', idem_key)
  if held then
    local seen, existing = string.match(held, '^(%S+) (%S+)$')
    local status = existing and redis.call('HGET', job_prefix .. existing, 'status')
    if status then
      if seen ~= fingerprint then return {7, '', ''} end
      return {6, existing, status}
    end
  end
end
if budgeted then
  trim_results(results_key, totals_key)
  if tonumber(redis.call('HGET', totals_key, 't:' .. tenant) or '0') >= tenant_budget then return {4, '', ''} end
  if tonumber(redis.call('HGET', totals_key, 'total') or '0') >= total_budget then return {5, '', ''} end
end
if redis.call('EXISTS', job_key) == 1 then return {1, '', ''} end
if tonumber(redis.call('GET', waiting_key) or '0') >= capacity then return {2, '', ''} end
if tonumber(redis.call('GET', active_key) or '0') >= tenant_limit then return {3, '', ''} end
if inline then
  redis.call('HSET', job_key, 'job', header, 'record', record, 'status', 'queued', 'deliveries', 0)
  redis.call('XADD', stream_key, '*', 'id', id, 'body', body)
else
  redis.call('HSET', job_key, 'job', header, 'body', body, 'record', record, 'status', 'queued', 'deliveries', 0)
  redis.call('XADD', stream_key, '*', 'id', id)
end
redis.call('INCR', depth_key)
redis.call('INCR', waiting_key)
redis.call('INCR', active_key)
if has_key then redis.call('SET', idem_key, fingerprint .. ' ' .. id, 'PX', key_ttl_ms) end
return {0, '', ''}
",
    )
});

/// A job to admit.
pub(super) struct Enqueue<'a> {
    /// The job's id.
    pub id: &'a JobId,
    /// Its tenant, whose unfinished jobs are counted.
    pub tenant: &'a TenantId,
    /// The job as JSON, without its body.
    pub header: &'a str,
    /// The request body.
    pub body: &'a [u8],
    /// True to carry the body in the stream entry, false to keep it in the job hash.
    pub inline: bool,
    /// The job's record as JSON, while it is queued.
    pub record: &'a str,
    /// Most jobs that may wait at once.
    pub capacity: usize,
    /// Most unfinished jobs the tenant may have.
    pub tenant_limit: usize,
    /// For async jobs, the (tenant, total) result budgets in bytes; a sync
    /// job's output is taken at once and is not budgeted.
    pub budgets: Option<(u64, u64)>,
    /// The idempotency key to look up and record, with how long it is kept, ms.
    pub key: Option<(&'a IdempotencyKey, u64)>,
}

/// What [`enqueue`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admission {
    /// Stored and queued.
    Admitted,
    /// A job with this id is already kept.
    Duplicate,
    /// The queue is at its bound.
    Full,
    /// The tenant is at its bound.
    TenantBusy,
    /// The tenant's kept outputs use its budget.
    TenantResultsFull,
    /// All kept outputs use the queue's budget.
    ResultsFull,
    /// The key names this kept job, for the same request.
    Existing(JobId, String),
    /// The key names a kept job for another request.
    Conflict,
}

/// Admits `job` or says why not.
pub(super) async fn enqueue(
    con: &mut ConnectionManager,
    keys: &Keys,
    job: &Enqueue<'_>,
) -> Result<Admission, QueueError> {
    let job_key = keys.job(job.id);
    let (has_key, fingerprint, key_ttl_ms, idem_key) = match job.key {
        Some((key, ttl_ms)) => ("1", key.fingerprint.as_str(), ttl_ms, keys.idempotency(job.tenant, &key.hash)),
        // The script reads no key then; any name of this deployment will do.
        None => ("0", "", 1, job_key.clone()),
    };
    let (budgeted, tenant_budget, total_budget) = match job.budgets {
        Some((tenant, total)) => ("1", tenant, total),
        None => ("0", u64::MAX, u64::MAX),
    };
    let (code, existing, status): (i64, String, String) = ENQUEUE
        .key(&keys.depth)
        .key(&keys.waiting)
        .key(&job_key)
        .key(&keys.stream)
        .key(keys.active(job.tenant))
        .key(&keys.results)
        .key(&keys.result_bytes)
        .key(idem_key)
        .arg(job.id.as_str())
        .arg(job.header)
        .arg(job.body)
        .arg(job.record)
        .arg(if job.inline { "1" } else { "0" })
        .arg(job.capacity)
        .arg(job.tenant_limit)
        .arg(budgeted)
        .arg(job.tenant.as_str())
        .arg(tenant_budget)
        .arg(total_budget)
        .arg(has_key)
        .arg(fingerprint)
        .arg(key_ttl_ms)
        .arg(keys.job_prefix())
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    match code {
        0 => Ok(Admission::Admitted),
        1 => Ok(Admission::Duplicate),
        2 => Ok(Admission::Full),
        3 => Ok(Admission::TenantBusy),
        4 => Ok(Admission::TenantResultsFull),
        5 => Ok(Admission::ResultsFull),
        6 => Ok(Admission::Existing(JobId(existing), status)),
        7 => Ok(Admission::Conflict),
        other => Err(unexpected("enqueue", other)),
    }
}

/// Takes a delivery: counts it, marks the job running and returns the job
/// and its body by reference (empty when the body rode inline in the entry
/// the caller already holds). A job that already ended has its entry
/// acknowledged instead; a job already handed out `max_deliveries` times
/// (its workers all went silent) is left for the caller to dead-letter.
/// Marking the job running here saves `start` a round trip.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local job_key, stream_key, waiting_key = KEYS[1], KEYS[2], KEYS[3]
local group, entry, max_deliveries = ARGV[1], ARGV[2], tonumber(ARGV[3])
local status = redis.call('HGET', job_key, 'status')
if not status or status == 'succeeded' or status == 'failed' then
  redis.call('XACK', stream_key, group, entry)
  redis.call('XDEL', stream_key, entry)
  return false
end
local deliveries = tonumber(redis.call('HGET', job_key, 'deliveries') or '0')
if deliveries >= max_deliveries then
  return {0, deliveries, redis.call('HGET', job_key, 'job'), ''}
end
if status == 'queued' then decr(waiting_key) end
deliveries = redis.call('HINCRBY', job_key, 'deliveries', 1)
redis.call('HSET', job_key, 'status', 'running')
return {1, deliveries, redis.call('HGET', job_key, 'job'), redis.call('HGET', job_key, 'body') or ''}
",
    )
});

/// A stream entry to take.
pub(super) struct Take<'a> {
    /// The entry's job.
    pub job: &'a JobId,
    /// The entry's id in the stream.
    pub entry: &'a str,
    /// Deliveries before a job is dead-lettered.
    pub max_deliveries: u32,
}

/// What [`take`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Taken {
    /// The job already ended; its entry is acknowledged.
    Ended,
    /// The job is the caller's to run.
    Delivered {
        /// Deliveries so far, this one included.
        attempt: u32,
        /// The job as JSON, without its body.
        header: String,
        /// The body when it is kept by reference; empty when it is inline.
        body: Vec<u8>,
    },
    /// The job was handed out `max_deliveries` times and never settled.
    Exhausted {
        /// Deliveries so far.
        deliveries: u32,
        /// The job as JSON, without its body.
        header: String,
    },
}

/// Takes the entry the caller just read or claimed.
pub(super) async fn take(con: &mut ConnectionManager, keys: &Keys, entry: &Take<'_>) -> Result<Taken, QueueError> {
    let taken: Option<(u8, u32, String, Vec<u8>)> = TAKE
        .key(keys.job(entry.job))
        .key(&keys.stream)
        .key(&keys.waiting)
        .arg(GROUP)
        .arg(entry.entry)
        .arg(entry.max_deliveries)
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    Ok(match taken {
        None => Taken::Ended,
        Some((1, attempt, header, body)) => Taken::Delivered { attempt, header, body },
        Some((_, deliveries, header, _)) => Taken::Exhausted { deliveries, header },
    })
}

/// Renews a lease: true when `entry` is still pending for `consumer`, whose
/// idle time is then reset so no other worker reclaims it.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local stream_key = KEYS[1]
local group, entry, consumer = ARGV[1], ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', stream_key, group, entry, entry, 1)
if #pending == 0 or pending[1][2] ~= consumer then return 0 end
redis.call('XCLAIM', stream_key, group, consumer, 0, entry, 'JUSTID')
return 1
",
    )
});

/// A lease to renew.
pub(super) struct Extend<'a> {
    /// The delivered entry's id in the stream.
    pub entry: &'a str,
    /// The consumer that holds it.
    pub consumer: &'a str,
}

/// Renews the lease; false when it is no longer held.
pub(super) async fn extend(con: &mut ConnectionManager, keys: &Keys, lease: &Extend<'_>) -> Result<bool, QueueError> {
    let held: i64 = EXTEND
        .key(&keys.stream)
        .arg(GROUP)
        .arg(lease.entry)
        .arg(lease.consumer)
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    Ok(held == 1)
}

/// Ends a job once: record, output, expiry, acknowledgement, announcement.
/// A job that already ended keeps its first outcome (0 is returned).
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local job_key, stream_key, depth_key, waiting_key, active_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local results_key, totals_key = KEYS[6], KEYS[7]
local group, entry, id, final_status, record = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local has_output, output_body, output_type = ARGV[6] == '1', ARGV[7], ARGV[8]
local ttl_ms, done_channel, tenant = ARGV[9], ARGV[10], ARGV[11]
local status = redis.call('HGET', job_key, 'status')
redis.call('XACK', stream_key, group, entry)
redis.call('XDEL', stream_key, entry)
if not status or status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', job_key, 'status', final_status, 'record', record)
if has_output then
  trim_results(results_key, totals_key)
  local bytes = #output_body + #output_type
  local member = bytes .. '|' .. id .. '|' .. tenant
  redis.call('ZADD', results_key, now_ms() + tonumber(ttl_ms), member)
  redis.call('HINCRBY', totals_key, 't:' .. tenant, bytes)
  redis.call('HINCRBY', totals_key, 'total', bytes)
  redis.call('HSET', job_key, 'output_body', output_body, 'output_type', output_type, 'output_member', member)
end
redis.call('HDEL', job_key, 'body')
redis.call('PEXPIRE', job_key, ttl_ms)
decr(depth_key)
if status == 'queued' then decr(waiting_key) end
decr(active_key)
redis.call('PUBLISH', done_channel, id)
return 1
",
    )
});

/// A job's end.
pub(super) struct Complete<'a> {
    /// The job's id.
    pub id: &'a JobId,
    /// Its tenant, whose unfinished jobs are counted.
    pub tenant: &'a TenantId,
    /// The delivered entry's id in the stream.
    pub entry: &'a str,
    /// `succeeded` or `failed`.
    pub status: &'a str,
    /// The final record as JSON.
    pub record: &'a str,
    /// The output's body and media type, when it succeeded.
    pub output: Option<(&'a [u8], &'a str)>,
    /// How long the record and output are kept, ms.
    pub ttl_ms: u64,
}

/// Records the job's end; false when it had already ended.
pub(super) async fn complete(con: &mut ConnectionManager, keys: &Keys, end: &Complete<'_>) -> Result<bool, QueueError> {
    let (has_output, body, content_type) = match end.output {
        Some((body, content_type)) => ("1", body, content_type),
        None => ("0", &[][..], ""),
    };
    let ended: i64 = COMPLETE
        .key(keys.job(end.id))
        .key(&keys.stream)
        .key(&keys.depth)
        .key(&keys.waiting)
        .key(keys.active(end.tenant))
        .key(&keys.results)
        .key(&keys.result_bytes)
        .arg(GROUP)
        .arg(end.entry)
        .arg(end.id.as_str())
        .arg(end.status)
        .arg(end.record)
        .arg(has_output)
        .arg(body)
        .arg(content_type)
        .arg(end.ttl_ms)
        .arg(&keys.done)
        .arg(end.tenant.as_str())
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    Ok(ended == 1)
}

/// Gives a job back: requeued under a new entry (carrying an inline body
/// along), or dead-lettered (with the final record the caller prepared)
/// once it had `max_deliveries` deliveries. -1 when the lease is lost.
static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local job_key, stream_key, depth_key, waiting_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, active_key = KEYS[5], KEYS[6]
local group, entry, consumer, id, max_deliveries = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local dead_record, ttl_ms, code, message, done_channel = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local max_dead = ARGV[11]
local pending = redis.call('XPENDING', stream_key, group, entry, entry, 1)
if #pending == 0 or pending[1][2] ~= consumer then return -1 end
local old = redis.call('XRANGE', stream_key, entry, entry)
local status = redis.call('HGET', job_key, 'status')
redis.call('XACK', stream_key, group, entry)
redis.call('XDEL', stream_key, entry)
if not status or status == 'succeeded' or status == 'failed' then return 0 end
local deliveries = tonumber(redis.call('HGET', job_key, 'deliveries') or '0')
if deliveries >= max_deliveries then
  redis.call('HSET', job_key, 'status', 'failed', 'record', dead_record)
  redis.call('HDEL', job_key, 'body')
  redis.call('PEXPIRE', job_key, ttl_ms)
  redis.call('XADD', dead_key, 'MAXLEN', '~', max_dead, '*', 'id', id, 'code', code, 'message', message)
  decr(depth_key)
  if status == 'queued' then decr(waiting_key) end
  decr(active_key)
  redis.call('PUBLISH', done_channel, id)
  return 2
end
if status ~= 'queued' then redis.call('INCR', waiting_key) end
redis.call('HSET', job_key, 'status', 'queued')
if #old > 0 then
  redis.call('XADD', stream_key, '*', unpack(old[1][2]))
else
  redis.call('XADD', stream_key, '*', 'id', id)
end
return 1
",
    )
});

/// A job to give back.
pub(super) struct Retry<'a> {
    /// The job's id.
    pub id: &'a JobId,
    /// Its tenant, whose unfinished jobs are counted.
    pub tenant: &'a TenantId,
    /// The delivered entry's id in the stream.
    pub entry: &'a str,
    /// The consumer that holds it.
    pub consumer: &'a str,
    /// Deliveries before the job is dead-lettered.
    pub max_deliveries: u32,
    /// The record as JSON should the job be dead-lettered.
    pub dead_record: &'a str,
    /// How long a dead-lettered job's record is kept, ms.
    pub ttl_ms: u64,
    /// The last error's code, for the dead-letter stream.
    pub code: &'a str,
    /// The last error's message, for the dead-letter stream.
    pub message: &'a str,
    /// Dead letters kept (approximately: the stream is trimmed by whole nodes).
    pub max_dead_letters: usize,
}

/// What [`retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retried {
    /// The delivery was no longer held; nothing changed.
    LeaseLost,
    /// The job had already ended; the entry is acknowledged.
    AlreadyEnded,
    /// Queued again for another attempt.
    Requeued,
    /// Out of deliveries: ended `failed` and dead-lettered.
    DeadLettered,
}

/// Requeues or dead-letters the job.
pub(super) async fn retry(con: &mut ConnectionManager, keys: &Keys, job: &Retry<'_>) -> Result<Retried, QueueError> {
    let code: i64 = RETRY
        .key(keys.job(job.id))
        .key(&keys.stream)
        .key(&keys.depth)
        .key(&keys.waiting)
        .key(&keys.dead)
        .key(keys.active(job.tenant))
        .arg(GROUP)
        .arg(job.entry)
        .arg(job.consumer)
        .arg(job.id.as_str())
        .arg(job.max_deliveries)
        .arg(job.dead_record)
        .arg(job.ttl_ms)
        .arg(job.code)
        .arg(job.message)
        .arg(&keys.done)
        .arg(job.max_dead_letters)
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    match code {
        -1 => Ok(Retried::LeaseLost),
        0 => Ok(Retried::AlreadyEnded),
        1 => Ok(Retried::Requeued),
        2 => Ok(Retried::DeadLettered),
        other => Err(unexpected("retry", other)),
    }
}

/// Takes a job's output: returns it and deletes it from the job hash,
/// refunding its bytes. The record stays for the job TTL.
static TAKE_OUTPUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local job_key, results_key, totals_key = KEYS[1], KEYS[2], KEYS[3]
local output = redis.call('HMGET', job_key, 'output_body', 'output_type', 'output_member')
if not output[1] then return false end
if output[3] and redis.call('ZREM', results_key, output[3]) == 1 then refund(totals_key, output[3]) end
redis.call('HDEL', job_key, 'output_body', 'output_type', 'output_member')
return {output[1], output[2] or ''}
",
    )
});

/// Takes job `id`'s output, if it is kept.
pub(super) async fn take_output(
    con: &mut ConnectionManager,
    keys: &Keys,
    id: &JobId,
) -> Result<Option<(Vec<u8>, String)>, QueueError> {
    TAKE_OUTPUT
        .key(keys.job(id))
        .key(&keys.results)
        .key(&keys.result_bytes)
        .invoke_async(con)
        .await
        .map_err(unavailable)
}

fn unexpected(script: &str, code: i64) -> QueueError {
    QueueError::Unavailable(format!("the {script} script answered {code}, which this version does not know"))
}
