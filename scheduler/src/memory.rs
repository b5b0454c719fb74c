//! The in-memory backend: the embedded default. One mutex-guarded table of
//! jobs, a FIFO of waiting ids, a [`Notify`] to wake idle workers and a
//! [`watch`] channel per job so waiters wake the moment it ends.
//!
//! Leases expire like Redis pending entries: a delivery not settled within
//! the visibility timeout is handed out again (lazily, when a worker next
//! asks). Finished jobs and their outputs are kept for `result_ttl`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use sluice_core::{CallOutput, ErrorCode};

use crate::job::now_ms;
use crate::{Completion, Delivery, Job, JobError, JobId, JobRecord, JobStatus, Queue, QueueError};

/// Bounds and timeouts of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most jobs that may wait at once; more are refused with `Full`.
    pub capacity: usize,
    /// How long a delivery is held before it is handed out again.
    pub visibility_timeout: Duration,
    /// Deliveries before a job is dead-lettered.
    pub max_deliveries: u32,
    /// How long finished jobs and outputs are kept.
    pub result_ttl: Duration,
    /// Jobs one tenant may have queued or running at once; more are refused
    /// with `TenantBusy`. Counted by the queue so every front door and
    /// worker sees one number.
    pub tenant_concurrency: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            visibility_timeout: Duration::from_secs(60),
            max_deliveries: 3,
            result_ttl: Duration::from_secs(3600),
            tenant_concurrency: 16,
        }
    }
}

struct Lease {
    receipt: String,
    expires: Instant,
}

struct Entry {
    job: Job,
    record: JobRecord,
    output: Option<CallOutput>,
    lease: Option<Lease>,
    /// Set when the job ends; entries are dropped after it.
    expires: Option<Instant>,
    status: watch::Sender<JobStatus>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<JobId>,
    entries: HashMap<JobId, Entry>,
    dead_letters: Vec<(JobId, JobError)>,
    /// Unfinished jobs per tenant.
    active: HashMap<String, usize>,
    /// Worker nodes by their last heartbeat.
    nodes: HashMap<String, Instant>,
    next_receipt: u64,
    last_sweep: Option<Instant>,
}

impl State {
    /// A job of `tenant` ended: it no longer counts against its concurrency.
    fn settle_tenant(&mut self, tenant: &str) {
        if let Some(count) = self.active.get_mut(tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.active.remove(tenant);
            }
        }
    }
}

/// Housekeeping scans every entry, so it runs at most this often: calls in
/// between see leases and TTLs at most this stale.
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
        Self { config, state: Mutex::new(State::default()), job_ready: Notify::new() }
    }

    /// Jobs dead-lettered so far, with their last error.
    pub fn dead_letters(&self) -> Vec<(JobId, JobError)> {
        self.lock().dead_letters.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can
        // panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands expired leases' jobs out again and drops expired finished jobs.
    fn housekeep(&self, state: &mut State) {
        let now = Instant::now();
        if state.last_sweep.is_some_and(|last| now.duration_since(last) < SWEEP_INTERVAL) {
            return;
        }
        state.last_sweep = Some(now);
        state.entries.retain(|_, entry| entry.expires.is_none_or(|at| at > now));
        let expired: Vec<JobId> = state
            .entries
            .iter()
            .filter(|(_, e)| !e.record.status.is_final() && e.lease.as_ref().is_some_and(|l| l.expires <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let lost = JobError {
            code: ErrorCode::WorkerLost,
            message: "the worker stopped responding (visibility timeout)".to_owned(),
        };
        for id in expired {
            self.release(state, &id, &lost);
        }
    }

    /// Ends a lease: back to the ready queue, or dead-lettered when out of deliveries.
    fn release(&self, state: &mut State, id: &JobId, last_error: &JobError) {
        let max_deliveries = self.config.max_deliveries;
        let ttl = self.config.result_ttl;
        let Some(entry) = state.entries.get_mut(id) else { return };
        entry.lease = None;
        if entry.record.deliveries >= max_deliveries {
            let error = JobError {
                code: last_error.code,
                message: format!("{} (gave up after {} deliveries)", last_error.message, entry.record.deliveries),
            };
            finish(entry, JobStatus::Failed, Some(error), None, None, ttl);
            let tenant = entry.job.tenant.clone();
            state.dead_letters.push((id.clone(), last_error.clone()));
            state.settle_tenant(&tenant);
            tracing::warn!(job_id = %id, code = %last_error.code, "job dead-lettered");
        } else {
            entry.record.status = JobStatus::Queued;
            entry.status.send_replace(JobStatus::Queued);
            state.ready.push_back(id.clone());
            self.job_ready.notify_one();
        }
    }

    fn try_reserve(&self) -> Option<Delivery> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        while let Some(id) = state.ready.pop_front() {
            state.next_receipt += 1;
            let receipt = format!("{}-{}", id, state.next_receipt);
            let expires = Instant::now() + self.config.visibility_timeout;
            let Some(entry) = state.entries.get_mut(&id) else { continue };
            if entry.record.status.is_final() {
                continue;
            }
            entry.record.deliveries += 1;
            entry.lease = Some(Lease { receipt: receipt.clone(), expires });
            return Some(Delivery { job: entry.job.clone(), receipt, attempt: entry.record.deliveries });
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
    usage: Option<crate::Usage>,
    output: Option<CallOutput>,
    ttl: Duration,
) {
    entry.record.status = status;
    entry.record.error = error;
    entry.record.usage = usage;
    entry.record.finished_at_ms = Some(now_ms());
    entry.output = output;
    entry.lease = None;
    entry.expires = Some(Instant::now() + ttl);
    // The request body is no longer needed once the job has ended.
    entry.job.request.body = Vec::new();
    entry.status.send_replace(status);
}

#[async_trait::async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        if state.ready.len() >= self.config.capacity {
            return Err(QueueError::Full { capacity: self.config.capacity });
        }
        if state.entries.contains_key(&job.id) {
            return Err(QueueError::Duplicate(job.id.0));
        }
        let limit = self.config.tenant_concurrency;
        let active = state.active.entry(job.tenant.clone()).or_default();
        if *active >= limit {
            return Err(QueueError::TenantBusy { limit });
        }
        *active += 1;
        let id = job.id.clone();
        let record = JobRecord::queued(&job);
        let (status, _) = watch::channel(JobStatus::Queued);
        state.entries.insert(id.clone(), Entry { job, record, output: None, lease: None, expires: None, status });
        state.ready.push_back(id);
        drop(state);
        self.job_ready.notify_one();
        Ok(())
    }

    async fn reserve(&self, _worker: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a job enqueued in between
            // still wakes this worker.
            let notified = self.job_ready.notified();
            if let Some(delivery) = self.try_reserve() {
                return Ok(Some(delivery));
            }
            // Wake periodically to reclaim expired leases even when idle.
            let nap = self.config.visibility_timeout.min(Duration::from_millis(500));
            let until = deadline.min(tokio::time::Instant::now() + nap);
            if tokio::time::timeout_at(until, notified).await.is_err() && tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut state = self.lock();
        let entry = Self::leased(&mut state, delivery)?;
        if let Some(lease) = entry.lease.as_mut() {
            lease.expires = Instant::now() + self.config.visibility_timeout;
        }
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.config.visibility_timeout
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
        match completion {
            Completion::Succeeded { output, usage } => {
                finish(entry, JobStatus::Succeeded, None, Some(usage), Some(output), ttl);
            }
            Completion::Failed { error, usage } => finish(entry, JobStatus::Failed, Some(error), usage, None, ttl),
        }
        let tenant = entry.job.tenant.clone();
        state.settle_tenant(&tenant);
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, error: &JobError) -> Result<(), QueueError> {
        let mut state = self.lock();
        Self::leased(&mut state, delivery)?;
        self.release(&mut state, &delivery.job.id, error);
        Ok(())
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        let mut state = self.lock();
        self.housekeep(&mut state);
        Ok(state.entries.get(id).map(|e| e.record.clone()))
    }

    async fn output(&self, id: &JobId) -> Result<Option<CallOutput>, QueueError> {
        let state = self.lock();
        Ok(state.entries.get(id).and_then(|e| e.output.clone()))
    }

    async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Option<JobRecord>, QueueError> {
        let Some(mut status) = self.lock().entries.get(id).map(|e| e.status.subscribe()) else {
            return Ok(None);
        };
        let _ = tokio::time::timeout(timeout, status.wait_for(|s| s.is_final())).await;
        self.job(id).await
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        let state = self.lock();
        Ok(state.entries.values().filter(|e| !e.record.status.is_final()).count())
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
    use crate::Usage;
    use sluice_core::{CallRequest, Outcome};

    fn job(id: &str) -> Job {
        Job {
            id: JobId(id.to_owned()),
            tenant: "t".to_owned(),
            function: "f".to_owned(),
            version: "sha256:0".to_owned(),
            request: CallRequest { body: b"in".to_vec(), content_type: String::new(), params: Vec::new() },
            submitted_at_ms: 1,
        }
    }

    fn config() -> QueueConfig {
        QueueConfig {
            capacity: 2,
            visibility_timeout: Duration::from_millis(50),
            max_deliveries: 2,
            result_ttl: Duration::from_secs(60),
            tenant_concurrency: 16,
        }
    }

    fn success() -> Completion {
        Completion::Succeeded {
            output: CallOutput { body: b"out".to_vec(), content_type: "text/plain".to_owned() },
            usage: Usage { outcome: Outcome::Ok, ..Usage::default() },
        }
    }

    #[tokio::test]
    async fn a_tenant_at_its_concurrency_bound_is_refused_until_a_job_ends() {
        let queue = MemoryQueue::new(QueueConfig { capacity: 10, tenant_concurrency: 1, ..config() });
        queue.enqueue(job("a")).await.expect("enqueue");
        assert_eq!(queue.enqueue(job("b")).await, Err(QueueError::TenantBusy { limit: 1 }));
        let other = Job { tenant: "u".to_owned(), ..job("c") };
        queue.enqueue(other).await.expect("another tenant is not affected");
        let first = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("a job");
        queue.complete(&first, success()).await.expect("complete");
        queue.enqueue(job("b")).await.expect("admitted once the first ended");
    }

    #[tokio::test]
    async fn jobs_flow_in_order_and_end_with_their_output() {
        let queue = MemoryQueue::new(config());
        queue.enqueue(job("a")).await.expect("enqueue");
        queue.enqueue(job("b")).await.expect("enqueue");
        assert_eq!(queue.depth().await.expect("depth"), 2);
        let first = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("a job");
        assert_eq!((first.job.id.0.as_str(), first.attempt), ("a", 1));
        queue.start(&first).await.expect("start");
        assert_eq!(queue.job(&first.job.id).await.expect("job").expect("kept").status, JobStatus::Running);
        queue.complete(&first, success()).await.expect("complete");
        let record = queue.job(&first.job.id).await.expect("job").expect("kept");
        assert_eq!(record.status, JobStatus::Succeeded);
        assert_eq!(queue.output(&first.job.id).await.expect("output").expect("kept").body, b"out");
        assert_eq!(queue.depth().await.expect("depth"), 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_duplicate_id_is_refused() {
        let queue = MemoryQueue::new(config());
        queue.enqueue(job("a")).await.expect("enqueue");
        assert_eq!(queue.enqueue(job("a")).await, Err(QueueError::Duplicate("a".to_owned())));
        queue.enqueue(job("b")).await.expect("enqueue");
        assert_eq!(queue.enqueue(job("c")).await, Err(QueueError::Full { capacity: 2 }));
    }

    #[tokio::test]
    async fn an_expired_lease_is_handed_out_again_then_dead_lettered() {
        let queue = MemoryQueue::new(config());
        queue.enqueue(job("a")).await.expect("enqueue");
        let first = queue.reserve("w1", Duration::ZERO).await.expect("reserve").expect("job");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let second = queue.reserve("w2", Duration::ZERO).await.expect("reserve").expect("reclaimed");
        assert_eq!(second.attempt, 2);
        assert_eq!(queue.complete(&first, success()).await, Ok(()), "a late completion is accepted once");
        assert_eq!(queue.job(&first.job.id).await.expect("job").expect("kept").status, JobStatus::Succeeded);
        assert_eq!(queue.extend(&first).await, Err(QueueError::LeaseLost(first.receipt.clone())));

        queue.enqueue(job("b")).await.expect("enqueue");
        let trapped = JobError { code: ErrorCode::FunctionTrapped, message: "it trapped".to_owned() };
        for _ in 0..2 {
            let delivery = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("job");
            queue.retry(&delivery, &trapped).await.expect("retry");
        }
        let record = queue.job(&JobId("b".to_owned())).await.expect("job").expect("kept");
        assert_eq!(record.status, JobStatus::Failed);
        let error = record.error.expect("a reason");
        assert_eq!(error.code, ErrorCode::FunctionTrapped);
        assert_eq!(error.message, "it trapped (gave up after 2 deliveries)");
        assert_eq!(queue.dead_letters(), vec![(JobId("b".to_owned()), trapped)]);
    }

    #[tokio::test]
    async fn extending_a_lease_keeps_a_long_job() {
        let queue = MemoryQueue::new(config());
        queue.enqueue(job("a")).await.expect("enqueue");
        let delivery = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("job");
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            queue.extend(&delivery).await.expect("still held");
        }
        assert_eq!(queue.reserve("w2", Duration::ZERO).await.expect("reserve"), None);
    }

    #[tokio::test]
    async fn waiters_wake_when_the_job_ends_and_workers_when_a_job_arrives() {
        let queue = std::sync::Arc::new(MemoryQueue::new(config()));
        let worker = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let delivery = queue.reserve("w", Duration::from_secs(5)).await.expect("reserve").expect("job");
                queue.complete(&delivery, success()).await.expect("complete");
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.enqueue(job("a")).await.expect("enqueue");
        let record = queue.wait(&JobId("a".to_owned()), Duration::from_secs(5)).await.expect("wait").expect("kept");
        assert_eq!(record.status, JobStatus::Succeeded);
        worker.await.expect("worker finished");
        assert_eq!(queue.wait(&JobId("nope".to_owned()), Duration::ZERO).await.expect("wait"), None);
    }

    #[tokio::test]
    async fn finished_jobs_expire_after_the_ttl() {
        let queue = MemoryQueue::new(QueueConfig { result_ttl: Duration::from_millis(30), ..config() });
        queue.enqueue(job("a")).await.expect("enqueue");
        let delivery = queue.reserve("w", Duration::ZERO).await.expect("reserve").expect("job");
        queue.complete(&delivery, success()).await.expect("complete");
        assert!(queue.job(&delivery.job.id).await.expect("job").is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(queue.job(&delivery.job.id).await.expect("job"), None);
        assert_eq!(queue.output(&delivery.job.id).await.expect("output"), None);
    }
}
