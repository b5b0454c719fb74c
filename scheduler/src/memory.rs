//! The in-memory backend: the embedded default. One mutex-guarded table of
//! jobs, a queue per tenant (sync jobs, then async ones) with a round-robin
//! ring of the tenants whose turn may come, a [`Notify`] to wake idle
//! workers and a [`watch`] channel per job so waiters wake the moment it
//! ends.
//!
//! Leases expire like Redis pending entries: a delivery not settled within
//! the visibility timeout is handed out again (lazily, when a worker next
//! asks). Finished jobs and their outputs are kept for `result_ttl`; the
//! bytes of kept outputs are counted per tenant and in total, so async
//! admission can refuse work once a budget is spent. `Idempotency-Key`s
//! (hashed) live in the same table as the jobs they name, so a key and its
//! job are recorded under one lock.
//!
//! Every deadline is on tokio's clock, so tests run it on paused time and
//! let hours pass in an instant.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use sluice_core::{CallOutput, TenantId};

use crate::job::now_ms;
use crate::{
    Cancel, Completion, Delivery, IdempotencyKey, Job, JobError, JobFilter, JobId, JobKind, JobLog, JobPage, JobRecord,
    JobStatus, Queue, QueueConfig, QueueError, Submitted, TenantQueue, Usage,
};

struct Lease {
    receipt: String,
    expires: Instant,
}

struct Entry {
    job: Job,
    record: JobRecord,
    output: Option<CallOutput>,
    /// Bytes of `output` counted against the tenant's and the queue's budget.
    stored: u64,
    /// What the ending attempt printed; its bytes are counted in the
    /// budgets too, until the entry is dropped.
    log: JobLog,
    lease: Option<Lease>,
    /// Set when the job ends; entries are dropped after it.
    expires: Option<Instant>,
    status: watch::Sender<JobStatus>,
}

/// A recorded `Idempotency-Key`: the request it was used with, its job and
/// when it lapses.
struct KeyRecord {
    fingerprint: String,
    job: JobId,
    expires: Instant,
}

/// One tenant's queue and what it holds.
#[derive(Default)]
struct Tenant {
    /// Waiting sync jobs, oldest first: handed out before `batch`.
    sync: VecDeque<JobId>,
    /// Waiting async jobs, oldest first.
    batch: VecDeque<JobId>,
    /// Bytes of the waiting jobs' bodies.
    waiting_bytes: u64,
    /// Jobs a worker holds.
    running: usize,
    /// How many may run at once (the newest job's limits say).
    running_limit: usize,
    /// Whether the tenant is in the ring of turns.
    in_turn: bool,
}

impl Tenant {
    fn waiting(&self) -> usize {
        self.sync.len() + self.batch.len()
    }

    /// True when the tenant has work it may run now: room under its
    /// running limit, and a sync job, or an async one while the results
    /// it would store fit (`results_fit`).
    fn ready(&self, results_fit: bool) -> bool {
        self.running < self.running_limit && (!self.sync.is_empty() || (results_fit && !self.batch.is_empty()))
    }

    fn lane(&mut self, kind: JobKind) -> &mut VecDeque<JobId> {
        match kind {
            JobKind::Sync => &mut self.sync,
            JobKind::Async => &mut self.batch,
        }
    }
}

#[derive(Default)]
struct State {
    /// The result budgets (from the config): a tenant's async jobs wait
    /// while its stored outputs, or everyone's, fill them.
    tenant_result_bytes: u64,
    result_bytes: u64,
    entries: HashMap<JobId, Entry>,
    tenants: HashMap<TenantId, Tenant>,
    /// Tenants whose turn may come, in order; a tenant is here at most once.
    turns: VecDeque<TenantId>,
    /// Waiting jobs and their bodies' bytes, all tenants together.
    waiting: usize,
    waiting_bytes: u64,
    dead_letters: VecDeque<(JobId, JobError)>,
    /// (tenant, hashed key) → what the key names.
    keys: HashMap<(TenantId, String), KeyRecord>,
    /// Bytes of kept outputs per tenant, and in total.
    stored: HashMap<TenantId, u64>,
    stored_total: u64,
    /// Worker nodes by their last heartbeat.
    nodes: HashMap<String, Instant>,
    next_receipt: u64,
    last_sweep: Option<Instant>,
    /// When ended entries reach the end of their TTL, soonest first; an
    /// entry dropped earlier leaves with its place here, so housekeeping
    /// costs what expires and this holds only what is kept.
    expiries: BTreeSet<(Instant, JobId)>,
    /// When leases lapse, soonest first; an extended or settled lease is
    /// skipped when its old time comes.
    lease_deadlines: BinaryHeap<Reverse<(Instant, JobId)>>,
    /// When `Idempotency-Key`s lapse, soonest first.
    key_expiries: BinaryHeap<Reverse<(Instant, (TenantId, String))>>,
    /// Each tenant's ended sync jobs still kept, oldest first: past
    /// `sync_records_per_tenant` the oldest are dropped before their TTL.
    ended_sync: HashMap<TenantId, VecDeque<JobId>>,
    /// Entries not yet ended (the queue's depth).
    unfinished: usize,
}

impl State {
    /// True while `tenant`'s async outputs may still be stored: a job
    /// taken now cannot push the stored bytes past a budget by more than
    /// the outputs of the jobs running at once.
    fn results_fit(&self, tenant: &TenantId) -> bool {
        self.stored.get(tenant).copied().unwrap_or(0) < self.tenant_result_bytes
            && self.stored_total < self.result_bytes
    }

    /// True when `log` can be kept without taking `tenant`'s or the
    /// queue's stored bytes past their budgets: logs never push outputs out.
    fn log_fits(&self, tenant: &TenantId, log: &JobLog) -> bool {
        let bytes = log.bytes();
        self.stored.get(tenant).copied().unwrap_or(0) + bytes <= self.tenant_result_bytes
            && self.stored_total + bytes <= self.result_bytes
    }

    /// Puts `tenant` in the ring if it has work and room, and is not there yet.
    fn offer_turn(&mut self, tenant: &TenantId) -> bool {
        let fit = self.results_fit(tenant);
        let Some(queue) = self.tenants.get_mut(tenant) else { return false };
        if queue.in_turn || !queue.ready(fit) {
            return false;
        }
        queue.in_turn = true;
        self.turns.push_back(tenant.clone());
        true
    }

    /// Queues the waiting job `id` (of `bytes`) at the back of its lane.
    fn push_waiting(&mut self, tenant: &TenantId, id: JobId, kind: JobKind, bytes: u64) -> bool {
        let queue = self.tenants.entry(tenant.clone()).or_default();
        queue.lane(kind).push_back(id);
        queue.waiting_bytes += bytes;
        self.waiting += 1;
        self.waiting_bytes += bytes;
        self.offer_turn(tenant)
    }

    /// Takes the waiting job `id` out of its tenant's lane (a cancel).
    fn remove_waiting(&mut self, job: &Job) {
        let bytes = job.request.body.len() as u64;
        if let Some(queue) = self.tenants.get_mut(&job.tenant) {
            let lane = queue.lane(job.kind);
            if let Some(at) = lane.iter().position(|id| id == &job.id) {
                lane.remove(at);
                queue.waiting_bytes = queue.waiting_bytes.saturating_sub(bytes);
                self.waiting = self.waiting.saturating_sub(1);
                self.waiting_bytes = self.waiting_bytes.saturating_sub(bytes);
            }
        }
    }

    /// A job of `tenant` a worker held has ended or gone back to waiting.
    fn settle_running(&mut self, tenant: &TenantId) -> bool {
        if let Some(queue) = self.tenants.get_mut(tenant) {
            queue.running = queue.running.saturating_sub(1);
        }
        let offered = self.offer_turn(tenant);
        self.drop_idle(tenant);
        offered
    }

    /// Outputs were released: tenants whose async jobs waited for room get
    /// their turns back. Returns true when any did.
    fn reoffer_turns(&mut self) -> bool {
        let waiting: Vec<TenantId> = self
            .tenants
            .iter()
            .filter(|(_, queue)| !queue.in_turn && !queue.batch.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        let mut offered = false;
        for tenant in waiting {
            offered |= self.offer_turn(&tenant);
        }
        offered
    }

    /// Forgets a tenant's queue once it holds nothing.
    fn drop_idle(&mut self, tenant: &TenantId) {
        if self.tenants.get(tenant).is_some_and(|q| q.waiting() == 0 && q.running == 0 && !q.in_turn) {
            self.tenants.remove(tenant);
        }
    }

    /// The next job by turn: the first tenant in the ring with work and
    /// room gives its oldest sync job, else its oldest async one, and goes
    /// to the back of the ring if it still has both.
    fn next_turn(&mut self) -> Option<JobId> {
        while let Some(tenant) = self.turns.pop_front() {
            let fit = self.results_fit(&tenant);
            let Some(queue) = self.tenants.get_mut(&tenant) else { continue };
            queue.in_turn = false;
            if !queue.ready(fit) {
                self.drop_idle(&tenant);
                continue;
            }
            let next = queue.sync.pop_front().or_else(|| if fit { queue.batch.pop_front() } else { None });
            let Some(id) = next else { continue };
            let bytes = self.entries.get(&id).map_or(0, |entry| entry.job.request.body.len() as u64);
            queue.waiting_bytes = queue.waiting_bytes.saturating_sub(bytes);
            queue.running += 1;
            self.waiting = self.waiting.saturating_sub(1);
            self.waiting_bytes = self.waiting_bytes.saturating_sub(bytes);
            self.offer_turn(&tenant);
            return Some(id);
        }
        None
    }

    /// Books the job `id`, which just ended, for dropping after its TTL
    /// (`expires`), or earlier once its tenant has more than `keep_sync`
    /// newer ended sync jobs.
    fn ended(&mut self, id: &JobId, expires: Instant, keep_sync: usize) {
        self.unfinished = self.unfinished.saturating_sub(1);
        self.expiries.insert((expires, id.clone()));
        let Some(entry) = self.entries.get(id) else { return };
        if entry.job.kind != JobKind::Sync {
            return;
        }
        let tenant = entry.job.tenant.clone();
        let mut ended = self.ended_sync.remove(&tenant).unwrap_or_default();
        ended.push_back(id.clone());
        // A record still being read by its caller (a waiter holds its
        // status, or its output is still to be taken) is never dropped
        // under it: one being read goes back in line, one whose output
        // nobody took is left to its TTL and the result budget.
        let mut being_read = Vec::new();
        while ended.len() + being_read.len() > keep_sync.max(1)
            && let Some(old) = ended.pop_front()
        {
            let Some(entry) = self.entries.get(&old) else { continue };
            if entry.status.receiver_count() > 0 {
                being_read.push(old);
            } else if entry.output.is_none()
                && let Some(entry) = self.entries.remove(&old)
            {
                if let Some(expires) = entry.expires {
                    self.expiries.remove(&(expires, old));
                }
                self.refund(&tenant, entry.kept_bytes());
            }
        }
        for old in being_read.into_iter().rev() {
            ended.push_front(old);
        }
        self.ended_sync.insert(tenant, ended);
    }

    /// Drops the entry `id` at the end of its TTL; false if it had none due.
    fn expire(&mut self, id: &JobId, now: Instant) -> bool {
        let due = self.entries.get(id).is_some_and(|entry| entry.expires.is_some_and(|at| at <= now));
        if !due {
            return false;
        }
        let Some(entry) = self.entries.remove(id) else { return false };
        let tenant = entry.job.tenant.clone();
        if let Some(ended) = self.ended_sync.get_mut(&tenant) {
            // Entries end and expire in the same order, so what expired is
            // at the front; ids already dropped are cleared on the way.
            while ended.front().is_some_and(|kept| kept == id || !self.entries.contains_key(kept)) {
                ended.pop_front();
            }
            if ended.is_empty() {
                self.ended_sync.remove(&tenant);
            }
        }
        self.refund(&tenant, entry.kept_bytes());
        entry.kept_bytes() > 0
    }

    /// `bytes` of `tenant`'s outputs are now kept.
    fn charge(&mut self, tenant: &TenantId, bytes: u64) {
        *self.stored.entry(tenant.clone()).or_default() += bytes;
        self.stored_total += bytes;
    }

    /// `bytes` of `tenant`'s outputs are no longer kept.
    fn refund(&mut self, tenant: &TenantId, bytes: u64) {
        if let Some(stored) = self.stored.get_mut(tenant) {
            *stored = stored.saturating_sub(bytes);
            if *stored == 0 {
                self.stored.remove(tenant);
            }
        }
        self.stored_total = self.stored_total.saturating_sub(bytes);
    }
}

impl Entry {
    /// Bytes the entry holds in the result budgets: its output and its log.
    fn kept_bytes(&self) -> u64 {
        self.stored + self.log.bytes()
    }
}

/// Bytes an output occupies in a budget.
fn output_bytes(output: &CallOutput) -> u64 {
    (output.body.len() + output.content_type.len()) as u64
}

/// Where a job sorts in a listing: newest first, ties by id.
fn listing_position(record: &JobRecord) -> (u64, &str) {
    (record.submitted_at_ms, record.id.as_str())
}

/// A listing cursor: the position of the last job on the previous page.
fn encode_cursor(record: &JobRecord) -> String {
    format!("{}:{}", record.submitted_at_ms, record.id)
}

fn decode_cursor(cursor: &str) -> Option<(u64, String)> {
    let (at, id) = cursor.split_once(':')?;
    Some((at.parse().ok()?, id.to_owned()))
}

/// Housekeeping runs at most this often: calls in between see leases and
/// TTLs at most this stale.
const SWEEP_INTERVAL: Duration = Duration::from_millis(20);

/// The in-memory [`Queue`].
pub struct MemoryQueue {
    config: QueueConfig,
    state: Mutex<State>,
    job_ready: Notify,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue").field("config", &self.config).finish_non_exhaustive()
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        let state = State {
            tenant_result_bytes: config.tenant_result_bytes,
            result_bytes: config.result_bytes,
            ..State::default()
        };
        Self { config, state: Mutex::new(state), job_ready: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can
        // panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands expired leases' jobs out again and drops expired finished
    /// jobs and keys. Each costs only what is due (see the heaps in
    /// `State`), so a node holding many finished jobs sweeps as fast as an
    /// empty one.
    fn housekeep(&self, state: &mut State) {
        let now = Instant::now();
        if state.last_sweep.is_some_and(|last| now.duration_since(last) < SWEEP_INTERVAL) {
            return;
        }
        state.last_sweep = Some(now);
        let mut freed = false;
        while let Some((at, _)) = state.expiries.first()
            && *at <= now
        {
            let Some((_, id)) = state.expiries.pop_first() else { break };
            freed |= state.expire(&id, now);
        }
        if freed && state.reoffer_turns() {
            self.job_ready.notify_waiters();
        }
        while let Some(Reverse((at, _))) = state.key_expiries.peek()
            && *at <= now
        {
            let Some(Reverse((_, slot))) = state.key_expiries.pop() else { break };
            if state.keys.get(&slot).is_some_and(|key| key.expires <= now) {
                state.keys.remove(&slot);
            }
        }
        let lost = JobError::worker_lost();
        while let Some(Reverse((at, _))) = state.lease_deadlines.peek()
            && *at <= now
        {
            let Some(Reverse((_, id))) = state.lease_deadlines.pop() else { break };
            let lapsed = state.entries.get(&id).is_some_and(|entry| {
                !entry.record.status.is_final() && entry.lease.as_ref().is_some_and(|lease| lease.expires <= now)
            });
            if lapsed {
                self.release(state, &id, &lost, None);
            }
        }
    }

    /// Ends a lease: back to its tenant's queue, or dead-lettered when out
    /// of deliveries. `usage` is what the attempt consumed, if it ran.
    fn release(&self, state: &mut State, id: &JobId, last_error: &JobError, usage: Option<Usage>) {
        let max_deliveries = self.config.max_deliveries;
        let ttl = self.config.result_ttl;
        let Some(entry) = state.entries.get_mut(id) else { return };
        entry.lease = None;
        entry.record.attempts.extend(usage);
        let tenant = entry.job.tenant.clone();
        if entry.record.deliveries >= max_deliveries {
            let error = JobError {
                code: last_error.code,
                message: format!("{} (gave up after {} deliveries)", last_error.message, entry.record.deliveries),
            };
            let usage = entry.record.attempts.last().cloned();
            let expires = finish(entry, JobStatus::Failed, Some(error), usage, None, ttl);
            state.ended(id, expires, self.config.sync_records_per_tenant);
            state.dead_letters.push_back((id.clone(), last_error.clone()));
            while state.dead_letters.len() > self.config.max_dead_letters {
                state.dead_letters.pop_front();
            }
            tracing::warn!(job_id = %id, code = %last_error.code, "job dead-lettered");
        } else {
            entry.record.status = JobStatus::Queued;
            entry.status.send_replace(JobStatus::Queued);
            let (kind, bytes) = (entry.job.kind, entry.job.request.body.len() as u64);
            state.push_waiting(&tenant, id.clone(), kind, bytes);
        }
        if state.settle_running(&tenant) || state.waiting > 0 {
            self.job_ready.notify_one();
        }
    }

    /// Queues `job` under the queue's and the tenant's bounds.
    fn admit(&self, state: &mut State, job: Job) -> Result<(), QueueError> {
        if state.entries.contains_key(&job.id) {
            return Err(QueueError::Duplicate(job.id.0));
        }
        let bytes = job.request.body.len() as u64;
        if state.waiting >= self.config.capacity {
            return Err(QueueError::Full { capacity: self.config.capacity });
        }
        if state.waiting_bytes + bytes > self.config.queue_bytes {
            return Err(QueueError::QueueBytesFull { limit: self.config.queue_bytes });
        }
        let quota = job.limits.queued.map_or(self.config.tenant_queue_quota, |quota| quota as usize);
        let queue = state.tenants.entry(job.tenant.clone()).or_default();
        if queue.waiting() >= quota {
            return Err(QueueError::TenantQueueFull { limit: quota });
        }
        if queue.waiting_bytes + bytes > self.config.tenant_queue_bytes {
            return Err(QueueError::TenantQueueBytesFull { limit: self.config.tenant_queue_bytes });
        }
        queue.running_limit = job.limits.running.map_or(self.config.tenant_concurrency, |limit| limit as usize).max(1);
        let (id, tenant, kind) = (job.id.clone(), job.tenant.clone(), job.kind);
        let record = JobRecord::queued(&job);
        let (status, _) = watch::channel(JobStatus::Queued);
        let entry =
            Entry { job, record, output: None, stored: 0, log: JobLog::default(), lease: None, expires: None, status };
        state.entries.insert(id.clone(), entry);
        state.unfinished += 1;
        state.push_waiting(&tenant, id, kind, bytes);
        Ok(())
    }

    fn try_reserve(&self) -> Option<Delivery> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        while let Some(id) = state.next_turn() {
            state.next_receipt += 1;
            let receipt = format!("{}-{}", id, state.next_receipt);
            let expires = Instant::now() + self.config.visibility_timeout;
            let Some(entry) = state.entries.get_mut(&id) else { continue };
            if entry.record.status.is_final() {
                let tenant = entry.job.tenant.clone();
                state.settle_running(&tenant);
                continue;
            }
            entry.record.deliveries += 1;
            entry.lease = Some(Lease { receipt: receipt.clone(), expires });
            let delivery = Delivery { job: entry.job.clone(), receipt, attempt: entry.record.deliveries };
            state.lease_deadlines.push(Reverse((expires, id)));
            return Some(delivery);
        }
        None
    }

    /// The entry for `delivery` if this delivery still holds its lease.
    fn leased<'a>(state: &'a mut State, delivery: &Delivery) -> Result<&'a mut Entry, QueueError> {
        state
            .entries
            .get_mut(&delivery.job.id)
            .filter(|e| e.lease.as_ref().is_some_and(|l| l.receipt == delivery.receipt))
            .ok_or_else(|| QueueError::LeaseLost(delivery.receipt.clone()))
    }
}

fn finish(
    entry: &mut Entry,
    status: JobStatus,
    error: Option<JobError>,
    usage: Option<Usage>,
    output: Option<CallOutput>,
    ttl: Duration,
) -> Instant {
    entry.record.status = status;
    entry.record.error = error;
    entry.record.usage = usage;
    entry.record.finished_at_ms = Some(now_ms());
    entry.stored = output.as_ref().map_or(0, output_bytes);
    entry.output = output;
    entry.lease = None;
    let expires = Instant::now() + ttl;
    entry.expires = Some(expires);
    // The request body is no longer needed once the job has ended.
    entry.job.request.body = Vec::new();
    entry.status.send_replace(status);
    expires
}

#[async_trait::async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        self.admit(&mut state, job)?;
        drop(state);
        self.job_ready.notify_one();
        Ok(())
    }

    async fn submit(&self, job: Job, key: Option<&IdempotencyKey>) -> Result<Submitted, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        let slot = key.map(|key| (job.tenant.clone(), key.hash.clone()));
        if let Some((slot, key)) = slot.as_ref().zip(key)
            && let Some(held) = state.keys.get(slot)
            && let Some(entry) = state.entries.get(&held.job)
        {
            if held.fingerprint != key.fingerprint {
                return Ok(Submitted::Conflict);
            }
            return Ok(Submitted::Existing { id: held.job.clone(), status: entry.record.status });
        }
        let stored = state.stored.get(&job.tenant).copied().unwrap_or(0);
        if stored >= self.config.tenant_result_bytes {
            return Err(QueueError::TenantResultsFull { limit: self.config.tenant_result_bytes });
        }
        if state.stored_total >= self.config.result_bytes {
            return Err(QueueError::ResultsFull { limit: self.config.result_bytes });
        }
        let id = job.id.clone();
        self.admit(&mut state, job)?;
        if let Some((slot, key)) = slot.zip(key) {
            let expires = Instant::now() + self.config.result_ttl;
            state.key_expiries.push(Reverse((expires, slot.clone())));
            state.keys.insert(slot, KeyRecord { fingerprint: key.fingerprint.clone(), job: id, expires });
        }
        drop(state);
        self.job_ready.notify_one();
        Ok(Submitted::Accepted)
    }

    async fn reserve(&self, _worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a job enqueued in between
            // still wakes this worker.
            let notified = self.job_ready.notified();
            if let Some(delivery) = self.try_reserve() {
                return Ok(Some(delivery));
            }
            // Wake periodically to reclaim expired leases even when idle.
            let nap = self.config.visibility_timeout.min(Duration::from_millis(500));
            let until = deadline.min(Instant::now() + nap);
            if tokio::time::timeout_at(until, notified).await.is_err() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut state = self.lock();
        let entry = Self::leased(&mut state, delivery)?;
        let expires = Instant::now() + self.config.visibility_timeout;
        if let Some(lease) = entry.lease.as_mut() {
            lease.expires = expires;
        }
        state.lease_deadlines.push(Reverse((expires, delivery.job.id.clone())));
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.config.visibility_timeout
    }

    fn config(&self) -> QueueConfig {
        self.config
    }

    fn result_ttl(&self) -> Duration {
        self.config.result_ttl
    }

    async fn start(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut state = self.lock();
        let entry = Self::leased(&mut state, delivery)?;
        entry.record.status = JobStatus::Running;
        entry.status.send_replace(JobStatus::Running);
        Ok(())
    }

    async fn complete(&self, delivery: &Delivery, completion: Completion) -> Result<(), QueueError> {
        let ttl = self.config.result_ttl;
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(&delivery.job.id) else { return Ok(()) };
        if entry.record.status.is_final() {
            // Already ended (a duplicate delivery finished first): keep the first outcome.
            return Ok(());
        }
        let held = entry.lease.is_some();
        let (expires, log) = match completion.capped() {
            Completion::Succeeded { output, usage, log } => {
                entry.record.attempts.push(usage.clone());
                (finish(entry, JobStatus::Succeeded, None, Some(usage), Some(output), ttl), log)
            }
            Completion::Failed { error, usage, log } => {
                entry.record.attempts.extend(usage.clone());
                (finish(entry, JobStatus::Failed, Some(error), usage, None, ttl), log)
            }
        };
        let (tenant, stored) = (entry.job.tenant.clone(), entry.stored);
        state.charge(&tenant, stored);
        let log = if state.log_fits(&tenant, &log) { log } else { log.dropped() };
        state.charge(&tenant, log.bytes());
        if let Some(entry) = state.entries.get_mut(&delivery.job.id) {
            entry.log = log;
        }
        state.ended(&delivery.job.id, expires, self.config.sync_records_per_tenant);
        // A job completed after its lease lapsed is waiting again, not running.
        if !held {
            state.remove_waiting(&delivery.job);
        } else if state.settle_running(&tenant) {
            self.job_ready.notify_one();
        }
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, error: &JobError, usage: Option<Usage>) -> Result<(), QueueError> {
        let mut state = self.lock();
        Self::leased(&mut state, delivery)?;
        self.release(&mut state, &delivery.job.id, &error.clone().capped(), usage);
        Ok(())
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        Ok(state.entries.get(id).map(|e| e.record.clone()))
    }

    async fn output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        Ok(state.entries.get(id).and_then(|e| e.output.clone()))
    }

    async fn logs(&self, id: &JobId) -> Result<Option<JobLog>, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        Ok(state.entries.get(id).map(|e| e.log.clone()))
    }

    async fn take_output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        let Some(entry) = state.entries.get_mut(id) else { return Ok(None) };
        let output = entry.output.take();
        let (tenant, stored) = (entry.job.tenant.clone(), std::mem::take(&mut entry.stored));
        state.refund(&tenant, stored);
        if stored > 0 && state.reoffer_turns() {
            self.job_ready.notify_waiters();
        }
        Ok(output)
    }

    async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Option<JobRecord>, QueueError> {
        let Some(mut status) = self.lock().entries.get(id).map(|e| e.status.subscribe()) else {
            return Ok(None);
        };
        let _ = tokio::time::timeout(timeout, status.wait_for(|s| s.is_final())).await;
        self.job(id).await
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        Ok(self.lock().unfinished)
    }

    async fn tenant_queue(&self, tenant: &TenantId) -> Result<TenantQueue, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        let Some(queue) = state.tenants.get(tenant) else { return Ok(TenantQueue::default()) };
        let oldest = queue
            .sync
            .iter()
            .chain(&queue.batch)
            .filter_map(|id| state.entries.get(id))
            .map(|entry| entry.job.submitted_at_ms)
            .min();
        Ok(TenantQueue {
            queued: queue.waiting() as u64,
            queued_bytes: queue.waiting_bytes,
            running: queue.running as u64,
            oldest_queued_at_ms: oldest,
        })
    }

    async fn busy_tenants(&self, limit: usize) -> Result<Vec<(TenantId, TenantQueue)>, QueueError> {
        let tenants: Vec<TenantId> = self.lock().tenants.keys().cloned().collect();
        let mut busy = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let queue = self.tenant_queue(&tenant).await?;
            if queue.queued + queue.running > 0 {
                busy.push((tenant, queue));
            }
        }
        Ok(crate::busiest_first(busy, limit))
    }

    async fn jobs(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<JobPage, QueueError> {
        let after = cursor.and_then(decode_cursor);
        let mut state = self.lock();
        self.housekeep(&mut state);
        let mut matching: Vec<&JobRecord> = state
            .entries
            .values()
            .map(|entry| &entry.record)
            .filter(|record| &record.tenant == tenant)
            .filter(|record| filter.status.is_none_or(|status| record.status == status))
            .filter(|record| filter.function.as_ref().is_none_or(|function| &record.function == function))
            .filter(|record| after.as_ref().is_none_or(|(at, id)| listing_position(record) < (*at, id.as_str())))
            .collect();
        matching.sort_unstable_by(|a, b| listing_position(b).cmp(&listing_position(a)));
        let more = matching.len() > limit;
        matching.truncate(limit);
        let cursor = if more { matching.last().map(|record| encode_cursor(record)) } else { None };
        Ok(JobPage { jobs: matching.into_iter().cloned().collect(), cursor })
    }

    async fn cancel(&self, tenant: &TenantId, id: &JobId) -> Result<Cancel, QueueError> {
        let ttl = self.config.result_ttl;
        let mut state = self.lock();
        self.housekeep(&mut state);
        let Some(entry) = state.entries.get_mut(id).filter(|entry| &entry.job.tenant == tenant) else {
            return Ok(Cancel::NotFound);
        };
        if entry.record.status != JobStatus::Queued || entry.lease.is_some() {
            return Ok(Cancel::TooLate(entry.record.clone()));
        }
        let job = entry.job.clone();
        let expires = finish(entry, JobStatus::Cancelled, None, None, None, ttl);
        let record = entry.record.clone();
        state.ended(id, expires, self.config.sync_records_per_tenant);
        state.remove_waiting(&job);
        state.drop_idle(tenant);
        Ok(Cancel::Cancelled(record))
    }

    async fn forget_tenant(&self, tenant: &TenantId) -> Result<u64, QueueError> {
        let mut state = self.lock();
        let ids: Vec<JobId> =
            state.entries.iter().filter(|(_, entry)| &entry.job.tenant == tenant).map(|(id, _)| id.clone()).collect();
        for id in &ids {
            let Some(entry) = state.entries.remove(id) else { continue };
            if let Some(expires) = entry.expires {
                state.expiries.remove(&(expires, id.clone()));
            }
            if !entry.record.status.is_final() {
                state.unfinished = state.unfinished.saturating_sub(1);
                // Wake anyone waiting on it: the job will never end otherwise.
                entry.status.send_replace(JobStatus::Cancelled);
            }
        }
        state.ended_sync.remove(tenant);
        if let Some(queue) = state.tenants.remove(tenant) {
            state.waiting = state.waiting.saturating_sub(queue.waiting());
            state.waiting_bytes = state.waiting_bytes.saturating_sub(queue.waiting_bytes);
        }
        state.turns.retain(|turn| turn != tenant);
        state.keys.retain(|(owner, _), _| owner != tenant);
        if let Some(stored) = state.stored.remove(tenant) {
            state.stored_total = state.stored_total.saturating_sub(stored);
            if state.reoffer_turns() {
                self.job_ready.notify_waiters();
            }
        }
        Ok(ids.len() as u64)
    }

    async fn dead_letters(&self) -> Result<Vec<(JobId, JobError)>, QueueError> {
        Ok(self.lock().dead_letters.iter().cloned().collect())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn heartbeat(&self, node: &str) -> Result<(), QueueError> {
        self.lock().nodes.insert(node.to_owned(), Instant::now());
        Ok(())
    }

    async fn workers(&self) -> Result<usize, QueueError> {
        let mut state = self.lock();
        state.nodes.retain(|_, seen| seen.elapsed() < crate::NODE_TTL);
        Ok(state.nodes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shared scenarios are in tests/conformance.rs; these are about
    // what only this backend does.

    /// A job of tenant `t` with an empty request.
    fn job(id: &str) -> Job {
        Job {
            id: JobId(id.to_owned()),
            tenant: TenantId::from("t"),
            function: "f".to_owned(),
            version: sluice_core::Version::from("sha256:0"),
            request: sluice_core::CallRequest::default(),
            submitted_at_ms: 1,
            kind: JobKind::Async,
            limits: crate::TenantLimits::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_not_heard_from_within_the_node_ttl_no_longer_counts() {
        let queue = MemoryQueue::new(QueueConfig::default());
        queue.heartbeat("quiet").await.expect("heartbeat");
        tokio::time::advance(crate::NODE_TTL / 2).await;
        queue.heartbeat("chatty").await.expect("heartbeat");
        assert_eq!(queue.workers().await, Ok(2));
        tokio::time::advance(crate::NODE_TTL / 2).await;
        assert_eq!(queue.workers().await, Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_run_of_sync_calls_keeps_only_the_newest_records_and_their_expiries() {
        let queue = MemoryQueue::new(QueueConfig { sync_records_per_tenant: 3, ..QueueConfig::default() });
        for n in 0..100 {
            let id = format!("s{n}");
            queue.enqueue(Job { kind: JobKind::Sync, ..job(&id) }).await.expect("enqueue");
            let delivery = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("a job");
            let output = CallOutput { body: b"out".to_vec(), content_type: "text/plain".to_owned() };
            let usage = Usage::default();
            queue
                .complete(&delivery, Completion::Succeeded { output, usage, log: JobLog::default() })
                .await
                .expect("complete");
            assert!(queue.take_output(&delivery.job.id).await.expect("take").is_some(), "{id}");
        }
        let state = queue.lock();
        let mut kept: Vec<&str> = state.entries.keys().map(|id| id.0.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["s97", "s98", "s99"]);
        assert_eq!((state.expiries.len(), state.unfinished, state.stored_total), (3, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_are_trimmed_to_the_newest_ones() {
        let queue = MemoryQueue::new(QueueConfig { max_deliveries: 1, max_dead_letters: 2, ..QueueConfig::default() });
        for id in ["a", "b", "c"] {
            queue.enqueue(job(id)).await.expect("enqueue");
            let delivery = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("a job");
            queue.retry(&delivery, &JobError::worker_lost(), None).await.expect("dead-lettered");
        }
        let kept: Vec<String> =
            queue.dead_letters().await.expect("dead letters").into_iter().map(|(id, _)| id.0).collect();
        assert_eq!(kept, ["b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_reclaims_an_expired_lease_without_another_call() {
        let queue = std::sync::Arc::new(MemoryQueue::new(QueueConfig {
            visibility_timeout: Duration::from_secs(2),
            ..QueueConfig::default()
        }));
        queue.enqueue(job("a")).await.expect("enqueue");
        let lost = queue.reserve("w1", Duration::ZERO).await.expect("reserve").expect("a job");
        let started = Instant::now();
        let reclaimed = queue.reserve("w2", Duration::from_secs(60)).await.expect("reserve").expect("reclaimed");
        assert_eq!((reclaimed.job.id, reclaimed.attempt), (lost.job.id, 2));
        // Woken by its own periodic look the moment the lease expired, not
        // by the end of its wait.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
