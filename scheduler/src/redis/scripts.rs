//! The Lua scripts behind every state change that must be atomic
//! (admission under the bounds, taking a delivery by turns, lease checks,
//! completion, retry, cancel, forgetting a tenant), each beside the one
//! Rust function that runs it. Every script starts with [`PRELUDE`]: the
//! arguments all of them share ([`Common`], `ARGV[1..9]`), the key names
//! (the table in the module docs) and the helpers that keep the tenants'
//! queues, the ring of turns and the counters consistent. A script's own
//! arguments follow from `ARGV[10]`, in the order its first lines name them,
//! so the order is written down once, next to the script. The admission,
//! take and end scripts handle a batch: one group of arguments per job, so
//! that one run serves every caller that was waiting for it.
//!
//! Counters are decremented with `add`/`hadd`, which delete a counter that
//! reaches zero: an idle deployment leaves no keys behind, and a counter
//! that drifted below zero (say, after an AOF lost its last second) heals
//! at the next job instead of admitting jobs past the bound forever.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};

use super::unavailable;
use crate::{JobId, JobLog, QueueError};

/// What every script starts with: shared arguments, key names, helpers.
///
/// A tenant's queue is two lists of waiting job ids (`sync`, then `async`)
/// plus a hash of its counts (`waiting`, `bytes`, `running`), its running
/// `limit` (the newest job's) and `turn` (1 while it is in the ring). The
/// ring `turns` holds each tenant whose turn may come at most once; taking
/// pops the front tenant and, if it still has work and room, pushes it to
/// the back. Whatever may let a take succeed (a job waiting, a running slot
/// freed) counts a token for the doorbell list `ready`, on which idle
/// workers block; a script pushes its tokens once, as it ends (the list is
/// trimmed to 64). Each script reads the clock once.
///
/// Kept outputs are members `{bytes}|{job}|{tenant}` of the results sorted
/// set, scored by when their job hash expires, and counted in the
/// result-bytes hash (`t:{tenant}` and `total`). Whoever touches the
/// accounting first drops members whose expiry has passed and refunds them,
/// so the counts follow the job hashes' TTLs without a sweeper.
const PRELUDE: &str = r"
local P, DEFAULT_LIMIT, TTL_MS = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local MAX_DELIVERIES, MAX_DEAD, VISIBILITY_MS = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local TENANT_RESULTS, ALL_RESULTS = tonumber(ARGV[7]), tonumber(ARGV[8])
local KEEP_SYNC = tonumber(ARGV[9])
local K_DEPTH, K_WAITING, K_WAITING_BYTES = P .. ':depth', P .. ':waiting', P .. ':waiting_bytes'
local K_TURNS, K_BUSY, K_LEASES, K_READY = P .. ':turns', P .. ':busy', P .. ':leases', P .. ':ready'
local K_RESULTS, K_RESULT_BYTES, K_DEAD, K_DONE = P .. ':results', P .. ':result_bytes', P .. ':dead', P .. ':done'
local K_PARKED = P .. ':parked'
local function k_job(id) return P .. ':job:' .. id end
local function k_tenant(t) return P .. ':tenant:' .. t end
local function k_lane(t, kind) return P .. ':lane:' .. kind .. ':' .. t end
local function k_oldest(t) return P .. ':oldest:' .. t end
local function k_index(t) return P .. ':index:' .. t end
local function k_ended_sync(t) return P .. ':ended_sync:' .. t end
local RECORD = {'record', 'status', 'deliveries', 'error', 'usage', 'attempts', 'finished'}

local function num(v) if not v then return 0 end return tonumber(v) or 0 end
-- n == 0 is skipped: Lua writes a negated zero as -0, which Redis refuses as an integer.
local function add(key, n)
  if n == 0 then return end
  if redis.call('INCRBY', key, n) <= 0 then redis.call('DEL', key) end
end
local function hadd(key, field, n)
  if n == 0 then return end
  if redis.call('HINCRBY', key, field, n) <= 0 then redis.call('HDEL', key, field) end
end
-- One clock reading per script: a script runs in one instant anyway.
local NOW
local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end
local function is_final(s) return s == 'succeeded' or s == 'failed' or s == 'cancelled' end
local function record_of(jk) return redis.call('HMGET', jk, unpack(RECORD)) end

local function refund(member)
  local bytes, tenant = string.match(member, '^(%d+)|[^|]*|(.*)$')
  if not bytes then return end
  hadd(K_RESULT_BYTES, 't:' .. tenant, -tonumber(bytes))
  hadd(K_RESULT_BYTES, 'total', -tonumber(bytes))
end
local TRIMMED = false
local function trim_results()
  if TRIMMED then return end
  TRIMMED = true
  local expired = redis.call('ZRANGEBYSCORE', K_RESULTS, '-inf', now_ms(), 'LIMIT', 0, 256)
  for _, member in ipairs(expired) do
    refund(member)
    redis.call('ZREM', K_RESULTS, member)
  end
end

-- Doorbell tokens are counted and pushed once, as the script ends
-- (see `script`): one token per take that may now succeed, at most 64.
local RINGS = 0
local function ring() RINGS = RINGS + 1 end
local function flush_rings()
  if RINGS == 0 then return end
  local tokens = {}
  for i = 1, math.min(RINGS, 64) do tokens[i] = '1' end
  if redis.call('LPUSH', K_READY, unpack(tokens)) > 64 then redis.call('LTRIM', K_READY, 0, 63) end
end
-- Takes job hash jk's output: {body, type} (or false), deleted from the
-- hash and refunded; the record stays for the job TTL.
local function take_output(jk)
  local output = redis.call('HMGET', jk, 'output_body', 'output_type', 'output_member')
  if not output[1] then return false end
  if output[3] and redis.call('ZREM', K_RESULTS, output[3]) == 1 then
    refund(output[3])
    -- Room again: wake a worker for a tenant whose async jobs waited for it.
    if redis.call('SCARD', K_PARKED) > 0 then ring() end
  end
  redis.call('HDEL', jk, 'output_body', 'output_type', 'output_member')
  return {output[1], output[2] or ''}
end
-- True while t's async outputs may still be stored: a job taken now
-- cannot push the stored bytes past a budget by more than the outputs of
-- the jobs running at once.
local function results_fit(t)
  local f = redis.call('HMGET', K_RESULT_BYTES, 't:' .. t, 'total')
  return num(f[1]) < TENANT_RESULTS and num(f[2]) < ALL_RESULTS
end
-- t has room under its running limit (running of limit), and a sync job,
-- or an async one whose output fits the budgets. Async work held back only
-- by the budgets parks t until outputs are released. `ready` reads the
-- counts itself and also answers whether t is in the ring now.
local function ready_with(t, running, limit)
  if running >= limit then return false end
  if redis.call('LLEN', k_lane(t, 'sync')) > 0 then return true end
  if redis.call('LLEN', k_lane(t, 'async')) == 0 then return false end
  if results_fit(t) then return true end
  redis.call('SADD', K_PARKED, t)
  return false
end
local function ready(t)
  local f = redis.call('HMGET', k_tenant(t), 'running', 'limit', 'turn')
  local limit = DEFAULT_LIMIT
  if f[2] then limit = tonumber(f[2]) end
  return ready_with(t, num(f[1]), limit), f[3] == '1'
end
-- Puts t in the ring if it has work and room; true when it is there and ready.
local function offer_turn(t)
  local is_ready, in_ring = ready(t)
  if not is_ready then return false end
  if not in_ring then
    redis.call('SREM', K_PARKED, t)
    redis.call('HSET', k_tenant(t), 'turn', '1')
    redis.call('RPUSH', K_TURNS, t)
  end
  return true
end
-- Forgets t's counts once it holds nothing; its listing lapses with its last records.
local function drop_idle(t)
  local th = k_tenant(t)
  local f = redis.call('HMGET', th, 'waiting', 'running', 'turn')
  if num(f[1]) == 0 and num(f[2]) == 0 and f[3] ~= '1' then
    redis.call('DEL', th)
    redis.call('SREM', K_BUSY, t)
    redis.call('SREM', K_PARKED, t)
    redis.call('PEXPIRE', k_index(t), TTL_MS)
  end
end
-- busy: t is known to be in K_BUSY already (its counts hash exists).
local function push_waiting(id, t, kind, bytes, submitted, busy)
  redis.call('RPUSH', k_lane(t, kind), id)
  redis.call('ZADD', k_oldest(t), submitted, id)
  local th = k_tenant(t)
  redis.call('HINCRBY', th, 'waiting', 1)
  redis.call('HINCRBY', th, 'bytes', bytes)
  if not busy then redis.call('SADD', K_BUSY, t) end
  redis.call('INCR', K_WAITING)
  redis.call('INCRBY', K_WAITING_BYTES, bytes)
  if offer_turn(t) then ring() end
end
local function remove_waiting(id, t, kind, bytes)
  if redis.call('LREM', k_lane(t, kind), 1, id) == 0 then return end
  redis.call('ZREM', k_oldest(t), id)
  local th = k_tenant(t)
  hadd(th, 'waiting', -1)
  hadd(th, 'bytes', -bytes)
  add(K_WAITING, -1)
  add(K_WAITING_BYTES, -bytes)
end
-- A job of t a worker held has ended or gone back to waiting.
local function settle_running(t)
  hadd(k_tenant(t), 'running', -1)
  -- A tenant given a turn has work: it is not idle.
  if offer_turn(t) then ring() else drop_idle(t) end
end
local function append_attempt(jk, usage)
  local attempts = redis.call('HGET', jk, 'attempts')
  if attempts then attempts = attempts .. ',' .. usage else attempts = usage end
  redis.call('HSET', jk, 'attempts', attempts, 'last_usage', usage)
end
-- A sync job of t just ended: past KEEP_SYNC newer ones, the oldest
-- ended sync records are dropped before their TTL (their callers had the
-- answer on the connection). One whose output is still to be taken is left
-- to its TTL and the result budget; the others lapse after a short grace,
-- so a caller reading its record right now still finds it. At most a few
-- are dropped per job, so each costs the same however far behind.
local function trim_ended_sync(id, kind, t)
  if kind ~= 'sync' then return end
  local kept = k_ended_sync(t)
  local length = redis.call('RPUSH', kept, id)
  redis.call('PEXPIRE', kept, TTL_MS)
  local grace = math.min(TTL_MS, SYNC_RECORD_GRACE_MS)
  for _ = 1, 4 do
    if length <= KEEP_SYNC then return end
    length = length - 1
    local old = redis.call('LPOP', kept)
    local ok = k_job(old)
    -- LT: only a record that would outlive the grace is cut short.
    if redis.call('HEXISTS', ok, 'output_body') == 0 and redis.call('PEXPIRE', ok, grace, 'LT') == 1 then
      redis.call('ZREM', k_index(t), old)
    end
  end
end
-- Ends job id (of kind `kind`) once, in one write of its hash: status,
-- error, usage, `fields` (more field/value pairs), output (budgeted); then
-- expiry and notice.
local function finish(id, jk, t, kind, status, err, usage, out_body, out_type, fields)
  local set = fields or {}
  table.insert(set, 'status')
  table.insert(set, status)
  table.insert(set, 'finished')
  table.insert(set, now_ms())
  if err then
    table.insert(set, 'error')
    table.insert(set, err)
  end
  if usage then
    table.insert(set, 'usage')
    table.insert(set, usage)
  end
  if out_body then
    trim_results()
    local bytes = #out_body + #out_type
    local member = bytes .. '|' .. id .. '|' .. t
    redis.call('ZADD', K_RESULTS, now_ms() + TTL_MS, member)
    redis.call('HINCRBY', K_RESULT_BYTES, 't:' .. t, bytes)
    redis.call('HINCRBY', K_RESULT_BYTES, 'total', bytes)
    for _, v in ipairs({'output_body', out_body, 'output_type', out_type, 'output_member', member}) do
      table.insert(set, v)
    end
  end
  redis.call('HSET', jk, unpack(set))
  redis.call('HDEL', jk, 'body', 'lease', 'worker', 'taken')
  redis.call('ZREM', K_LEASES, id)
  redis.call('PEXPIRE', jk, TTL_MS)
  trim_ended_sync(id, kind, t)
  add(K_DEPTH, -1)
  redis.call('PUBLISH', K_DONE, id)
end
-- Ends a lease: back to the tenant's queue, or dead-lettered when out of
-- deliveries. usage is what the attempt consumed, if it ran.
local function release(id, code, message, usage)
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'tenant', 'kind', 'bytes', 'submitted', 'deliveries', 'status')
  redis.call('ZREM', K_LEASES, id)
  if not f[1] then return 0 end
  redis.call('HDEL', jk, 'lease', 'worker', 'taken')
  if is_final(f[6]) then return 0 end
  if usage then append_attempt(jk, usage) end
  local t, result = f[1], 1
  local deliveries = num(f[5])
  if deliveries >= MAX_DELIVERIES then
    local given_up = message .. ' (gave up after ' .. string.format('%d', deliveries) .. ' deliveries)'
    local last = redis.call('HGET', jk, 'last_usage')
    finish(id, jk, t, f[2], 'failed', cjson.encode({code = code, message = given_up}), last or nil, nil, nil)
    redis.call('XADD', K_DEAD, 'MAXLEN', '~', MAX_DEAD, '*', 'id', id, 'code', code, 'message', message)
    result = 2
  else
    redis.call('HSET', jk, 'status', 'queued')
    push_waiting(id, t, f[2], num(f[3]), f[4], false)
  end
  settle_running(t)
  return result
end
";

/// A script with [`PRELUDE`] in front of `body`; `body` runs as a
/// function, so the doorbell tokens it counted are pushed however it returns.
fn script(body: &str) -> Script {
    let grace_ms = crate::SYNC_RECORD_GRACE.as_millis().to_string();
    let source =
        format!("{PRELUDE}local function main()\n{body}\nend\nlocal answer = main()\nflush_rings()\nreturn answer\n");
    Script::new(&source.replace("SYNC_RECORD_GRACE_MS", &grace_ms))
}

/// The arguments every script takes first (`ARGV[1..9]`).
#[derive(Debug, Clone)]
pub(super) struct Common {
    /// The deployment's key prefix.
    pub prefix: String,
    /// Jobs a tenant may run at once when its jobs say nothing.
    pub running_limit: usize,
    /// How long finished jobs, outputs and idempotency keys are kept, ms.
    pub ttl_ms: u64,
    /// Deliveries before a job is dead-lettered.
    pub max_deliveries: u32,
    /// Dead letters kept (approximately: the stream is trimmed by whole nodes).
    pub max_dead_letters: usize,
    /// How long a delivery is held, ms.
    pub visibility_ms: u64,
    /// Bytes of async outputs one tenant may have stored before its async
    /// jobs wait.
    pub tenant_result_bytes: u64,
    /// Bytes of outputs all tenants may have stored before async jobs wait.
    pub result_bytes: u64,
    /// Ended sync jobs' records kept per tenant before their TTL.
    pub sync_records_per_tenant: usize,
}

impl Common {
    /// An invocation of `script` with the shared arguments in place.
    fn invoke<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(self.running_limit.max(1))
            .arg(self.ttl_ms.max(1))
            .arg(self.max_deliveries)
            .arg(self.max_dead_letters)
            .arg(self.visibility_ms.max(1))
            .arg(self.tenant_result_bytes)
            .arg(self.result_bytes)
            .arg(self.sync_records_per_tenant.max(1));
        invocation
    }
}

/// A job's record as the scripts return it: the fields of
/// [`super::RECORD_FIELDS`], in that order.
pub(super) type RecordFields = Vec<Option<String>>;

/// Admission of one or more jobs, each in one step and in order (a batch
/// is what concurrent callers sent meanwhile): an `Idempotency-Key` that
/// already names a kept job returns it (or a conflict); else refuse (async
/// jobs) past the tenant's or the queue's result budget, a duplicate id,
/// past the queue's bounds, past the tenant's; else store the job, queue it
/// in its tenant's lane, index it for listing and record the key. Each job
/// takes [`ENQUEUE_ARGS`] arguments; answers `{code, job, status}` per job.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &r"
local function admit(a)
  local id, header, body, record = ARGV[a + 0], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local tenant, kind, submitted, fn = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local capacity, queue_bytes, quota = tonumber(ARGV[a + 8]), tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
  local tenant_bytes, limit = tonumber(ARGV[a + 11]), ARGV[a + 12]
  local budgeted, tenant_budget, total_budget = ARGV[a + 13] == '1', tonumber(ARGV[a + 14]), tonumber(ARGV[a + 15])
  local has_key, fingerprint, idem_key = ARGV[a + 16] == '1', ARGV[a + 17], ARGV[a + 18]
  if has_key then
    local held = redis.call('GET', idem_key)
    if held then
      local seen, existing = string.match(held, '^(%S+) (%S+)$')
      local status = existing and redis.call('HGET', k_job(existing), 'status')
      if status then
        if seen ~= fingerprint then return {7, '', ''} end
        return {6, existing, status}
      end
    end
  end
  if budgeted then
    trim_results()
    if num(redis.call('HGET', K_RESULT_BYTES, 't:' .. tenant)) >= tenant_budget then return {4, '', ''} end
    if num(redis.call('HGET', K_RESULT_BYTES, 'total')) >= total_budget then return {5, '', ''} end
  end
  local jk = k_job(id)
  if redis.call('EXISTS', jk) == 1 then return {1, '', ''} end
  local bytes = #body
  if num(redis.call('GET', K_WAITING)) >= capacity then return {2, '', ''} end
  if num(redis.call('GET', K_WAITING_BYTES)) + bytes > queue_bytes then return {8, '', ''} end
  local mine = redis.call('HMGET', k_tenant(tenant), 'waiting', 'bytes', 'limit')
  if num(mine[1]) >= quota then return {3, '', ''} end
  if num(mine[2]) + bytes > tenant_bytes then return {9, '', ''} end
  redis.call('HSET', jk, 'job', header, 'body', body, 'record', record, 'status', 'queued', 'deliveries', 0,
    'tenant', tenant, 'kind', kind, 'bytes', bytes, 'submitted', submitted, 'function', fn)
  -- Every busy tenant's counts hash holds its limit: without one, the
  -- tenant was idle, its index may be expiring and it is not in K_BUSY.
  local busy = mine[3] ~= false
  if mine[3] ~= limit then redis.call('HSET', k_tenant(tenant), 'limit', limit) end
  local index = k_index(tenant)
  -- A record lives at least TTL from its submission (shorter ones leave the
  -- index as they are cut short), so only entries older than that may be stale.
  local stale = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. (now_ms() - TTL_MS), 'LIMIT', 0, 2)
  for _, old in ipairs(stale) do
    if redis.call('EXISTS', k_job(old)) == 0 then redis.call('ZREM', index, old) end
  end
  redis.call('ZADD', index, submitted, id)
  if not busy then redis.call('PERSIST', index) end
  redis.call('INCR', K_DEPTH)
  push_waiting(id, tenant, kind, bytes, submitted, busy)
  if has_key then
    redis.call('SET', idem_key, fingerprint .. ' ' .. id, 'PX', TTL_MS)
    redis.call('HSET', jk, 'idem', idem_key)
  end
  return {0, '', ''}
end
local answers = {}
local a = 10
while ARGV[a] do
  answers[#answers + 1] = admit(a)
  a = a + ENQUEUE_ARGS
end
return answers
"
        .replace("ENQUEUE_ARGS", &ENQUEUE_ARGS.to_string()),
    )
});

/// Arguments each job of an [`ENQUEUE`] batch takes.
const ENQUEUE_ARGS: usize = 19;

/// A job to admit, owned so that it can wait for the next batch.
#[derive(Debug)]
pub(super) struct Enqueue {
    /// The job's id.
    pub id: JobId,
    /// Its tenant.
    pub tenant: String,
    /// `sync` or `async`: the lane it waits in.
    pub kind: &'static str,
    /// When it was accepted, ms (orders the tenant's listing).
    pub submitted_at_ms: u64,
    /// The function's name, for filtered listings.
    pub function: String,
    /// The job as JSON, without its body.
    pub header: String,
    /// The request body.
    pub body: Vec<u8>,
    /// The job's record as JSON, as it was accepted.
    pub record: String,
    /// Most jobs that may wait at once, all tenants.
    pub capacity: usize,
    /// Most body bytes that may wait at once, all tenants.
    pub queue_bytes: u64,
    /// Most jobs the tenant may have waiting.
    pub tenant_quota: usize,
    /// Most body bytes the tenant may have waiting.
    pub tenant_queue_bytes: u64,
    /// Jobs the tenant may run at once, from now on.
    pub running_limit: usize,
    /// For async jobs, the (tenant, total) result budgets in bytes; a sync
    /// job's output is taken at once and is not budgeted.
    pub budgets: Option<(u64, u64)>,
    /// The idempotency key's fingerprint and its Redis key, to look up and record.
    pub key: Option<(String, String)>,
}

impl Enqueue {
    /// Bytes this job adds to a batch's arguments.
    pub fn weight(&self) -> usize {
        self.body.len() + self.header.len() + self.record.len()
    }
}

/// What [`enqueue`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admission {
    /// Stored and queued.
    Admitted,
    /// A job with this id is already kept.
    Duplicate,
    /// The queue holds as many waiting jobs as it may.
    Full,
    /// Waiting bodies fill the queue's byte bound.
    QueueBytesFull,
    /// The tenant has as many jobs waiting as it may.
    TenantQueueFull,
    /// The tenant's waiting bodies fill its byte bound.
    TenantQueueBytesFull,
    /// The tenant's kept outputs use its budget.
    TenantResultsFull,
    /// All kept outputs use the queue's budget.
    ResultsFull,
    /// The key names this kept job, for the same request.
    Existing(JobId, String),
    /// The key names a kept job for another request.
    Conflict,
}

/// Admits `jobs` in order, in one script run; answers each one's admission.
pub(super) async fn enqueue(
    con: &mut ConnectionManager,
    common: &Common,
    jobs: &[Enqueue],
) -> Result<Vec<Admission>, QueueError> {
    let mut invocation = common.invoke(&ENQUEUE);
    for job in jobs {
        let (has_key, fingerprint, idem_key) = match &job.key {
            Some((fingerprint, name)) => ("1", fingerprint.as_str(), name.as_str()),
            None => ("0", "", ""),
        };
        let (budgeted, tenant_budget, total_budget) = match job.budgets {
            Some((tenant, total)) => ("1", tenant, total),
            None => ("0", u64::MAX, u64::MAX),
        };
        invocation
            .arg(job.id.as_str())
            .arg(&job.header)
            .arg(&job.body)
            .arg(&job.record)
            .arg(&job.tenant)
            .arg(job.kind)
            .arg(job.submitted_at_ms)
            .arg(&job.function)
            .arg(job.capacity)
            .arg(job.queue_bytes)
            .arg(job.tenant_quota)
            .arg(job.tenant_queue_bytes)
            .arg(job.running_limit.max(1))
            .arg(budgeted)
            .arg(tenant_budget)
            .arg(total_budget)
            .arg(has_key)
            .arg(fingerprint)
            .arg(idem_key);
    }
    let answers: Vec<(i64, String, String)> = invocation.invoke_async(con).await.map_err(unavailable)?;
    answers
        .into_iter()
        .map(|(code, existing, status)| match code {
            0 => Ok(Admission::Admitted),
            1 => Ok(Admission::Duplicate),
            2 => Ok(Admission::Full),
            3 => Ok(Admission::TenantQueueFull),
            4 => Ok(Admission::TenantResultsFull),
            5 => Ok(Admission::ResultsFull),
            6 => Ok(Admission::Existing(JobId(existing), status)),
            7 => Ok(Admission::Conflict),
            8 => Ok(Admission::QueueBytesFull),
            9 => Ok(Admission::TenantQueueBytesFull),
            other => Err(unexpected("enqueue", other)),
        })
        .collect()
}

/// Takes the next jobs by turns, one per waiting worker (a batch is the
/// workers that asked meanwhile), in the order they asked; stops early when
/// nothing is ready. Each take: the front tenant of the ring that has work
/// and room gives its oldest sync job, else its oldest async one, and goes
/// to the back of the ring if it still has both. The job is counted as
/// delivered, marked running (saving `start` a round trip) and leased under
/// that worker's receipt. Before taking, at most every [`HOUSEKEEPING`]
/// (over all nodes), a few jobs whose lease expired are handed out again
/// or dead-lettered; and while tenants are parked, expired outputs are
/// refunded and the parked tenants get their turn back. Answers
/// `{attempt, job, body}` per job taken.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &r"
local lost_code, lost_message = ARGV[10], ARGV[11]
local every = math.max(1, math.min(HOUSEKEEPING_MS, math.floor(VISIBILITY_MS / 4)))
if redis.call('SET', P .. ':housekeeping', '1', 'PX', every, 'NX') then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now_ms(), 'LIMIT', 0, 64)) do
    release(id, lost_code, lost_message, nil)
  end
end
if redis.call('SCARD', K_PARKED) > 0 then
  -- Outputs may have expired or been taken: parked tenants get their turn back.
  trim_results()
  for _, t in ipairs(redis.call('SRANDMEMBER', K_PARKED, 64)) do
    offer_turn(t)
  end
end
local function take_one(receipt, worker)
  while true do
    local t = redis.call('LPOP', K_TURNS)
    if not t then
      -- Nothing is ready: any doorbell tokens are stale.
      redis.call('DEL', K_READY)
      RINGS = 0
      return nil
    end
    local th = k_tenant(t)
    local counts = redis.call('HMGET', th, 'running', 'limit')
    local running, limit = num(counts[1]), DEFAULT_LIMIT
    if counts[2] then limit = tonumber(counts[2]) end
    local id
    if ready_with(t, running, limit) then
      id = redis.call('LPOP', k_lane(t, 'sync'))
      if not id and results_fit(t) then id = redis.call('LPOP', k_lane(t, 'async')) end
      -- The counts drifted from the lanes: heal them.
      if not id then redis.call('HDEL', th, 'waiting', 'bytes') end
    end
    if id then
      local jk = k_job(id)
      local f = redis.call('HMGET', jk, 'bytes', 'status', 'job', 'body')
      redis.call('ZREM', k_oldest(t), id)
      hadd(th, 'waiting', -1)
      hadd(th, 'bytes', -num(f[1]))
      add(K_WAITING, -1)
      add(K_WAITING_BYTES, -num(f[1]))
      -- An id whose job is gone or ended is skipped.
      local queued = f[2] == 'queued'
      if queued then
        redis.call('HINCRBY', th, 'running', 1)
        running = running + 1
      end
      if ready_with(t, running, limit) then
        -- To the back of the ring; its turn flag stays set.
        redis.call('RPUSH', K_TURNS, t)
        ring()
      else
        redis.call('HDEL', th, 'turn')
        if not queued then drop_idle(t) end
      end
      if queued then
        local attempt = redis.call('HINCRBY', jk, 'deliveries', 1)
        local now = now_ms()
        redis.call('HSET', jk, 'status', 'running', 'lease', receipt, 'worker', worker, 'taken', now)
        redis.call('ZADD', K_LEASES, now + VISIBILITY_MS, id)
        return {attempt, f[3], f[4] or ''}
      end
    else
      redis.call('HDEL', th, 'turn')
      drop_idle(t)
    end
  end
end
local taken = {}
local a = 12
while ARGV[a] do
  local one = take_one(ARGV[a], ARGV[a + 1])
  if not one then break end
  taken[#taken + 1] = one
  a = a + 2
end
return taken
"
        .replace("HOUSEKEEPING_MS", &HOUSEKEEPING.as_millis().to_string()),
    )
});

/// How often takes look for expired leases, at most (and at most every
/// quarter visibility timeout); one `SET NX` in between.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_millis(100);

/// A worker waiting for a job, owned so that it can wait for the next batch.
#[derive(Debug)]
pub(super) struct Take {
    /// The receipt the lease is held under.
    pub receipt: String,
    /// The worker taking it (for operators looking at a job hash).
    pub worker: String,
}

/// A job taken: its attempt, its JSON without the body, and the body.
pub(super) type Taken = (u32, String, Vec<u8>);

/// Takes a job for each of `takers` in order while any is ready; the
/// answer is one shorter than `takers` for each taker left without one.
/// `lost` is why a job whose lease expired lost it: code and message.
pub(super) async fn take(
    con: &mut ConnectionManager,
    common: &Common,
    lost: (&str, &str),
    takers: &[Take],
) -> Result<Vec<Taken>, QueueError> {
    let mut invocation = common.invoke(&TAKE);
    invocation.arg(lost.0).arg(lost.1);
    for taker in takers {
        invocation.arg(&taker.receipt).arg(&taker.worker);
    }
    invocation.invoke_async(con).await.map_err(unavailable)
}

/// Renews a lease: true when job `id` is still leased under `receipt`.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id, receipt = ARGV[10], ARGV[11]
if redis.call('HGET', k_job(id), 'lease') ~= receipt then return 0 end
redis.call('ZADD', K_LEASES, 'XX', now_ms() + VISIBILITY_MS, id)
return 1
",
    )
});

/// Renews the lease; false when it is no longer held.
pub(super) async fn extend(
    con: &mut ConnectionManager,
    common: &Common,
    id: &JobId,
    receipt: &str,
) -> Result<bool, QueueError> {
    let held: i64 =
        common.invoke(&EXTEND).arg(id.as_str()).arg(receipt).invoke_async(con).await.map_err(unavailable)?;
    Ok(held == 1)
}

/// Ends one or more jobs (a batch is what concurrent workers sent
/// meanwhile), each once and in order. A job that already ended keeps its
/// first outcome (0 is answered for it, 1 otherwise). A job still leased
/// frees its tenant's running slot; one whose lease lapsed and that waits
/// again leaves its lane. Each job takes [`COMPLETE_ARGS`] arguments.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &r"
-- Adds job id's log (its two streams and whether they were cut) to
-- `fields`, its text counted in t's result budget after its output
-- (`out_bytes`); when the budgets have no room, only the mark that it was cut.
local function keep_log(id, t, out, err, cut, out_bytes, fields)
  trim_results()
  local bytes = #out + #err
  local f = redis.call('HMGET', K_RESULT_BYTES, 't:' .. t, 'total')
  if num(f[1]) + out_bytes + bytes > TENANT_RESULTS or num(f[2]) + out_bytes + bytes > ALL_RESULTS then
    table.insert(fields, 'log_cut')
    table.insert(fields, '1')
    return
  end
  if bytes > 0 then
    local member = bytes .. '|' .. id .. ':log|' .. t
    redis.call('ZADD', K_RESULTS, now_ms() + TTL_MS, member)
    redis.call('HINCRBY', K_RESULT_BYTES, 't:' .. t, bytes)
    redis.call('HINCRBY', K_RESULT_BYTES, 'total', bytes)
    table.insert(fields, 'log_member')
    table.insert(fields, member)
  end
  for _, v in ipairs({'log_out', out, 'log_err', err, 'log_cut', cut}) do table.insert(fields, v) end
end
local function complete(a)
  local id, status, err, usage = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local has_output, out_body, out_type = ARGV[a + 4] == '1', ARGV[a + 5], ARGV[a + 6]
  local log_out, log_err, log_cut = ARGV[a + 7], ARGV[a + 8], ARGV[a + 9]
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'tenant', 'kind', 'bytes', 'status', 'lease', 'attempts')
  if not f[1] or is_final(f[4]) then return 0 end
  local t = f[1]
  local fields
  if usage ~= '' then
    local attempts = usage
    if f[6] then attempts = f[6] .. ',' .. usage end
    fields = {'attempts', attempts, 'last_usage', usage}
  else
    usage = nil
  end
  if err == '' then err = nil end
  if not has_output then out_body, out_type = nil, nil end
  if log_cut ~= '' then
    fields = fields or {}
    keep_log(id, t, log_out, log_err, log_cut, has_output and (#out_body + #out_type) or 0, fields)
  end
  local held = f[5]
  if not held then remove_waiting(id, t, f[2], num(f[3])) end
  finish(id, jk, t, f[2], status, err, usage, out_body, out_type, fields)
  if held then settle_running(t) else drop_idle(t) end
  return 1
end
local ended = {}
local a = 10
while ARGV[a] do
  ended[#ended + 1] = complete(a)
  a = a + COMPLETE_ARGS
end
return ended
"
        .replace("COMPLETE_ARGS", &COMPLETE_ARGS.to_string()),
    )
});

/// Arguments each job of a [`COMPLETE`] batch takes.
const COMPLETE_ARGS: usize = 10;

/// A job's end, owned so that it can wait for the next batch.
#[derive(Debug)]
pub(super) struct Complete {
    /// The job's id.
    pub id: JobId,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    /// The error as JSON, when it failed.
    pub error: Option<String>,
    /// What the attempt consumed as JSON, when it ran.
    pub usage: Option<String>,
    /// The output's body and media type, when it succeeded.
    pub output: Option<(Vec<u8>, String)>,
    /// What the attempt printed; `None` when it printed nothing.
    pub log: Option<JobLog>,
}

impl Complete {
    /// Bytes this end adds to a batch's arguments.
    pub fn weight(&self) -> usize {
        self.output.as_ref().map_or(0, |(body, content_type)| body.len() + content_type.len())
            + self.error.as_ref().map_or(0, String::len)
            + self.usage.as_ref().map_or(0, String::len)
            + self.log.as_ref().map_or(0, |log| log.stdout.len() + log.stderr.len())
    }
}

/// Records the ends of `jobs` in order, in one script run; for each, false
/// when it had already ended.
pub(super) async fn complete(
    con: &mut ConnectionManager,
    common: &Common,
    jobs: &[Complete],
) -> Result<Vec<bool>, QueueError> {
    let mut invocation = common.invoke(&COMPLETE);
    for end in jobs {
        let (has_output, body, content_type) = match &end.output {
            Some((body, content_type)) => ("1", body.as_slice(), content_type.as_str()),
            None => ("0", &[][..], ""),
        };
        invocation
            .arg(end.id.as_str())
            .arg(end.status)
            .arg(end.error.as_deref().unwrap_or(""))
            .arg(end.usage.as_deref().unwrap_or(""))
            .arg(has_output)
            .arg(body)
            .arg(content_type);
        match &end.log {
            Some(log) => invocation.arg(&log.stdout).arg(&log.stderr).arg(if log.truncated { "1" } else { "0" }),
            None => invocation.arg("").arg("").arg(""),
        };
    }
    let ended: Vec<i64> = invocation.invoke_async(con).await.map_err(unavailable)?;
    Ok(ended.into_iter().map(|ended| ended == 1).collect())
}

/// Gives a job back under its lease: the attempt's usage recorded, then
/// queued again at the back of its lane, or dead-lettered once it had
/// `max_deliveries` deliveries. -1 when the lease is lost.
static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id, receipt, code, message, usage = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
if redis.call('HGET', k_job(id), 'lease') ~= receipt then return -1 end
if usage == '' then usage = nil end
return release(id, code, message, usage)
",
    )
});

/// A job to give back.
pub(super) struct Retry<'a> {
    /// The job's id.
    pub id: &'a JobId,
    /// The receipt its lease is held under.
    pub receipt: &'a str,
    /// The error's code.
    pub code: &'a str,
    /// The error's message (capped).
    pub message: &'a str,
    /// What the attempt consumed as JSON, when it ran guest code.
    pub usage: Option<&'a str>,
}

/// What [`retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retried {
    /// The delivery was no longer held; nothing changed.
    LeaseLost,
    /// The job had already ended.
    AlreadyEnded,
    /// Queued again for another attempt.
    Requeued,
    /// Out of deliveries: ended `failed` and dead-lettered.
    DeadLettered,
}

/// Requeues or dead-letters the job.
pub(super) async fn retry(
    con: &mut ConnectionManager,
    common: &Common,
    job: &Retry<'_>,
) -> Result<Retried, QueueError> {
    let code: i64 = common
        .invoke(&RETRY)
        .arg(job.id.as_str())
        .arg(job.receipt)
        .arg(job.code)
        .arg(job.message)
        .arg(job.usage.unwrap_or(""))
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

/// Withdraws a waiting, untaken job of the tenant: it leaves its lane and
/// ends `cancelled`. Answers `{0}` (no such job of the tenant), `{1,
/// record}` (cancelled) or `{2, record}` (taken or ended: left alone).
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant, id = ARGV[10], ARGV[11]
local jk = k_job(id)
local f = redis.call('HMGET', jk, 'tenant', 'kind', 'bytes', 'status', 'lease')
if f[1] ~= tenant then return {0, {}} end
if f[4] ~= 'queued' or f[5] then return {2, record_of(jk)} end
remove_waiting(id, tenant, f[2], num(f[3]))
finish(id, jk, tenant, f[2], 'cancelled', nil, nil, nil, nil)
drop_idle(tenant)
return {1, record_of(jk)}
",
    )
});

/// What [`cancel`] did, with the job's record fields.
pub(super) enum Withdrawal {
    /// No such job of the tenant.
    NotFound,
    /// Withdrawn: it ended `cancelled`.
    Withdrawn(RecordFields),
    /// Taken or ended already.
    TooLate(RecordFields),
}

/// Withdraws `tenant`'s job `id` if it still waits.
pub(super) async fn cancel(
    con: &mut ConnectionManager,
    common: &Common,
    tenant: &str,
    id: &JobId,
) -> Result<Withdrawal, QueueError> {
    let (code, fields): (i64, RecordFields) =
        common.invoke(&CANCEL).arg(tenant).arg(id.as_str()).invoke_async(con).await.map_err(unavailable)?;
    match code {
        0 => Ok(Withdrawal::NotFound),
        1 => Ok(Withdrawal::Withdrawn(fields)),
        2 => Ok(Withdrawal::TooLate(fields)),
        other => Err(unexpected("cancel", other)),
    }
}

/// Forgets a tenant: every kept job of its index (records, outputs with
/// their budget, idempotency keys, leases), its lanes, counts, turn and
/// index. A running job's worker later finds no job: its completion is a
/// no-op. Answers how many jobs were forgotten.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant = ARGV[10]
local index = k_index(tenant)
local count = 0
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'tenant', 'status', 'output_member', 'idem', 'log_member')
  if f[1] == tenant then
    count = count + 1
    if not is_final(f[2]) then
      add(K_DEPTH, -1)
      redis.call('ZREM', K_LEASES, id)
      redis.call('PUBLISH', K_DONE, id)
    end
    if f[3] and redis.call('ZREM', K_RESULTS, f[3]) == 1 then refund(f[3]) end
    if f[5] and redis.call('ZREM', K_RESULTS, f[5]) == 1 then refund(f[5]) end
    if f[4] then redis.call('DEL', f[4]) end
    redis.call('DEL', jk)
  end
end
local mine = redis.call('HMGET', k_tenant(tenant), 'waiting', 'bytes')
add(K_WAITING, -num(mine[1]))
add(K_WAITING_BYTES, -num(mine[2]))
redis.call('DEL', k_tenant(tenant), k_lane(tenant, 'sync'), k_lane(tenant, 'async'), k_oldest(tenant), index,
  k_ended_sync(tenant))
redis.call('LREM', K_TURNS, 0, tenant)
redis.call('SREM', K_BUSY, tenant)
redis.call('SREM', K_PARKED, tenant)
-- Its outputs' bytes are free: others' async jobs may run again.
if redis.call('SCARD', K_PARKED) > 0 then ring() end
return count
",
    )
});

/// Forgets `tenant`; returns the jobs forgotten.
pub(super) async fn forget(con: &mut ConnectionManager, common: &Common, tenant: &str) -> Result<u64, QueueError> {
    common.invoke(&FORGET).arg(tenant).invoke_async(con).await.map_err(unavailable)
}

/// Moves one entry of the job stream of the layout before per-tenant
/// queues into its tenant's queue, keeping the job's id: the entry goes,
/// and a job that has not ended (waiting, or held by a worker of the older
/// layout, which no longer runs) gets the fields of the current layout and
/// waits as an async job (its caller, if it was a sync call, went with the
/// old front door). The older layout counted it in `depth` (still right),
/// in `waiting` while it waited, and in `active:{tenant}`; those counts
/// move with it. A job already moved by another node, ended, or expired is
/// left alone. Answers 1 when a job was moved.
static ADOPT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local entry, id, has_inline, inline = ARGV[10], ARGV[11], ARGV[12] == '1', ARGV[13]
local tenant, submitted, fn = ARGV[14], ARGV[15], ARGV[16]
redis.call('XDEL', P .. ':jobs', entry)
if id == '' or tenant == '' then return 0 end
local jk = k_job(id)
local f = redis.call('HMGET', jk, 'job', 'body', 'status', 'tenant')
if not f[1] or f[4] or is_final(f[3]) then return 0 end
if f[3] == 'queued' then add(K_WAITING, -1) end
add(P .. ':active:' .. tenant, -1)
local body = f[2]
if not body then
  if has_inline then body = inline else body = '' end
end
local bytes = #body
redis.call('HSET', jk, 'body', body, 'status', 'queued', 'tenant', tenant, 'kind', 'async', 'bytes', bytes,
  'submitted', submitted, 'function', fn)
local index = k_index(tenant)
redis.call('ZADD', index, submitted, id)
redis.call('PERSIST', index)
push_waiting(id, tenant, 'async', bytes, submitted, false)
return 1
",
    )
});

/// One entry of the older layout's job stream to move.
pub(super) struct Adopt<'a> {
    /// The stream entry's id.
    pub entry: &'a str,
    /// The job id it names (empty when it names none).
    pub id: &'a str,
    /// The body, when it rode in the entry rather than the job hash.
    pub inline: Option<&'a [u8]>,
    /// The job as its hash describes it; `None` when it cannot be read.
    pub job: Option<&'a crate::Job>,
}

/// Moves one entry of the older layout's stream; true when a job moved.
pub(super) async fn adopt(con: &mut ConnectionManager, common: &Common, adopt: &Adopt<'_>) -> Result<bool, QueueError> {
    let (tenant, submitted, function) = match adopt.job {
        Some(job) => (job.tenant.as_str(), job.submitted_at_ms, job.function.as_str()),
        None => ("", 0, ""),
    };
    let moved: i64 = common
        .invoke(&ADOPT)
        .arg(adopt.entry)
        .arg(adopt.id)
        .arg(if adopt.inline.is_some() { "1" } else { "0" })
        .arg(adopt.inline.unwrap_or_default())
        .arg(tenant)
        .arg(submitted)
        .arg(function)
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    Ok(moved == 1)
}

/// Deletes the older layout's job stream once it is empty (atomically, so
/// an entry an older front door adds meanwhile is kept for the next pass).
static DROP_EMPTY_STREAM: LazyLock<Script> = LazyLock::new(|| {
    Script::new("if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end return 0")
});

/// Deletes `stream` if it is empty.
pub(super) async fn drop_empty_stream(con: &mut ConnectionManager, stream: &str) -> Result<(), QueueError> {
    let _: i64 = DROP_EMPTY_STREAM.key(stream).invoke_async(con).await.map_err(unavailable)?;
    Ok(())
}

/// Lists a tenant's kept jobs newest first (by submission time, then id,
/// the order of its index), after the cursor position, matching the
/// filters; index entries whose job has expired are pruned on the way. At
/// most 1000 entries are looked at per call, so a page may come back short
/// with a cursor. Answers `{more, cursor_at, cursor_id, ids}`.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant, at, after, status, fn, limit = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], tonumber(ARGV[15])
local index = k_index(tenant)
local max = '+inf'
if at ~= '' then max = at end
local found, positions, budget, offset = {}, {}, 1000, 0
local last_at, last_id = '', ''
while budget > 0 and #found <= limit do
  local batch = redis.call('ZREVRANGEBYSCORE', index, max, '-inf', 'WITHSCORES', 'LIMIT', offset, 100)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if budget == 0 or #found > limit then break end
    budget = budget - 1
    offset = offset + 1
    if not (at ~= '' and tonumber(score) == tonumber(at) and id >= after) then
      local f = redis.call('HMGET', k_job(id), 'status', 'function')
      if not f[1] then
        redis.call('ZREM', index, id)
        offset = offset - 1
      elseif (status == '' or f[1] == status) and (fn == '' or f[2] == fn) then
        table.insert(found, id)
        table.insert(positions, score)
      end
    end
    last_at, last_id = score, id
  end
end
if #found > limit then
  table.remove(found)
  return {1, positions[limit] or '', found[limit] or '', found}
end
if budget == 0 then return {1, last_at, last_id, found} end
return {0, '', '', found}
",
    )
});

/// Which page of which tenant's jobs to list.
pub(super) struct List<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Start after this position (submission ms, id), newest first.
    pub after: Option<(u64, &'a str)>,
    /// Only jobs with this status.
    pub status: Option<&'a str>,
    /// Only jobs of this function.
    pub function: Option<&'a str>,
    /// Jobs on the page.
    pub limit: usize,
}

/// A page of job ids, and where the next page starts (when there is one).
pub(super) type Listed = (Vec<JobId>, Option<(u64, String)>);

/// Lists one page of a tenant's job ids.
pub(super) async fn list(con: &mut ConnectionManager, common: &Common, page: &List<'_>) -> Result<Listed, QueueError> {
    let (at, after) = page.after.map_or((String::new(), ""), |(at, id)| (at.to_string(), id));
    let (more, cursor_at, cursor_id, ids): (i64, String, String, Vec<String>) = common
        .invoke(&LIST)
        .arg(page.tenant)
        .arg(at)
        .arg(after)
        .arg(page.status.unwrap_or(""))
        .arg(page.function.unwrap_or(""))
        .arg(page.limit)
        .invoke_async(con)
        .await
        .map_err(unavailable)?;
    let cursor = (more == 1).then(|| cursor_at.parse().ok().map(|at| (at, cursor_id))).flatten();
    Ok((ids.into_iter().map(JobId).collect(), cursor))
}

/// Takes a job's output: returns it and deletes it from the job hash,
/// refunding its bytes. The record stays for the job TTL.
static TAKE_OUTPUT: LazyLock<Script> = LazyLock::new(|| script("return take_output(k_job(ARGV[10]))"));

/// Takes job `id`'s output, if it is kept.
pub(super) async fn take_output(
    con: &mut ConnectionManager,
    common: &Common,
    id: &JobId,
) -> Result<Option<(Vec<u8>, String)>, QueueError> {
    common.invoke(&TAKE_OUTPUT).arg(id.as_str()).invoke_async(con).await.map_err(unavailable)
}

/// A job's record and, once it succeeded, its output, taken in the same
/// step: what a sync caller needs when its job's end is announced.
/// Answers `{record fields, {body, type} or nil}`.
static END_OF: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local jk = k_job(ARGV[10])
local record = record_of(jk)
local output = false
if record[2] == 'succeeded' then output = take_output(jk) end
return {record, output}
",
    )
});

/// Job `id`'s record fields, and its output when it succeeded (taken).
pub(super) async fn end_of(
    con: &mut ConnectionManager,
    common: &Common,
    id: &JobId,
) -> Result<(RecordFields, Option<(Vec<u8>, String)>), QueueError> {
    common.invoke(&END_OF).arg(id.as_str()).invoke_async(con).await.map_err(unavailable)
}

fn unexpected(script: &str, code: i64) -> QueueError {
    QueueError::Unavailable(format!("the {script} script answered {code}, which this version does not know"))
}
