//! Worker slots: each takes a job from the queue, runs it in the sandbox,
//! logs its usage and settles the delivery. Only what may be the node's
//! fault is retried (load shedding before the guest ran, a function not
//! loadable yet, a lost worker); whatever the guest did (a trap, an error,
//! a limit) is final on the first attempt. Every attempt that ran guest
//! code is billed once; a shed one is not.
//!
//! Slots live inside `sluice serve` (embedded) or in `sluice worker`
//! processes that share a Redis queue. On shutdown a slot either keeps
//! taking jobs until the queue is empty ([`Drain::Queue`], for the
//! in-memory queue, which would otherwise lose them) or stops claiming and
//! only finishes what it holds ([`Drain::InFlight`], for Redis, where the
//! rest waits for other workers).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::{ErrorCode, Outcome, TenantId};
use sluice_scheduler::{Completion, Delivery, JobError, JobId, NODE_HEARTBEAT, QueueConfig};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::node::{BackendConfig, Node};
use crate::platform::{Platform, PlatformConfig};
use crate::priority;

/// How long an idle slot waits on the queue before checking for shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Longest pause between attempts while the queue is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a slot holds a job it had to shed (no instance slot free)
/// before returning it, times its delivery count: returned at once, it
/// would be taken again while the pool is still full and use up its
/// deliveries within milliseconds.
const SHED_BACKOFF: Duration = Duration::from_millis(200);

/// Worker slots a node runs by default: two per core. One tenant runs at
/// most one job per core (the queue's default `tenant_concurrency`), so
/// however deep its backlog, half the slots stay free for other tenants'
/// calls, which then share the cores instead of waiting for a slot.
pub fn default_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// What a slot does once asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Keep taking jobs until the queue has none left.
    Queue,
    /// Stop claiming; finish only the job in hand.
    InFlight,
}

/// The threads worker slots run on, apart from the ones serving HTTP: a
/// guest computing for its whole time slice then never delays accepting,
/// parsing or answering a request, and the operating system shares the
/// cores between calls at a finer grain than a guest's yields.
///
/// There are two sets. A tenant's first running job on this node runs on
/// the `first` threads, at [`priority::SLOT_NICENESS`] below the HTTP
/// threads; any further job it runs at once goes to the `extra` threads,
/// lower still ([`priority::EXTRA_SLOT_NICENESS`]). The operating system
/// shares cores between threads, not tenants: with equal priorities a
/// tenant running two long jobs would get two thirds of the cores against
/// another's one short call, and that call would wait for a time slice.
/// Lower priority costs nothing when the cores are free.
pub struct SlotRuntime {
    first: Option<tokio::runtime::Runtime>,
    extra: Option<tokio::runtime::Runtime>,
}

impl SlotRuntime {
    /// Runtimes with one thread per slot each.
    pub fn new(slots: usize) -> std::io::Result<Self> {
        Ok(Self {
            first: Some(priority::lowered_runtime("sluice-slot", slots, priority::SLOT_NICENESS)?),
            extra: Some(priority::lowered_runtime("sluice-slot-extra", slots, priority::EXTRA_SLOT_NICENESS)?),
        })
    }

    /// Where slots are spawned.
    pub fn handles(&self) -> Option<SlotHandles> {
        Some(SlotHandles { first: self.first.as_ref()?.handle().clone(), extra: self.extra.as_ref()?.handle().clone() })
    }
}

impl Drop for SlotRuntime {
    fn drop(&mut self) {
        // Dropped from async code (a node's drain), where waiting for the
        // threads would block a runtime thread; they end on their own.
        for runtime in [self.first.take(), self.extra.take()].into_iter().flatten() {
            runtime.shutdown_background();
        }
    }
}

/// Handles to a [`SlotRuntime`]'s two sets of threads.
#[derive(Debug, Clone)]
pub struct SlotHandles {
    /// Where slots wait for jobs and run each tenant's first job.
    pub first: tokio::runtime::Handle,
    /// Where a tenant's further jobs run while its first still does.
    pub extra: tokio::runtime::Handle,
}

/// How many jobs each tenant is running on this node, to choose the
/// threads a job runs on (see [`SlotRuntime`]).
#[derive(Debug, Default)]
pub struct RunningJobs(std::sync::Mutex<std::collections::HashMap<TenantId, usize>>);

impl RunningJobs {
    /// Counts a job of `tenant` as running until the guard drops; the guard
    /// says whether it is the tenant's only one.
    pub fn enter(self: &Arc<Self>, tenant: &TenantId) -> RunningJob {
        let mut running = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = running.entry(tenant.clone()).or_default();
        *count += 1;
        RunningJob { jobs: Arc::clone(self), tenant: tenant.clone(), first: *count == 1 }
    }
}

/// One job counted in [`RunningJobs`].
#[derive(Debug)]
pub struct RunningJob {
    jobs: Arc<RunningJobs>,
    tenant: TenantId,
    first: bool,
}

impl RunningJob {
    /// Whether no other job of the tenant was running when this one began.
    pub fn is_first(&self) -> bool {
        self.first
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        let mut running = self.jobs.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = running.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

/// Starts `slots` workers named `{node}/{n}` on `runtime`; they stop once
/// `stop` turns true, draining as `drain` says.
pub fn spawn_slots(
    platform: Arc<Platform>,
    slots: usize,
    node: &str,
    drain: Drain,
    stop: watch::Receiver<bool>,
    runtime: &SlotHandles,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let running = Arc::new(RunningJobs::default());
    for slot in 0..slots {
        let slot = Slot {
            platform: Arc::clone(&platform),
            name: format!("{node}/{slot}"),
            running: Arc::clone(&running),
            extra: runtime.extra.clone(),
        };
        let stop = stop.clone();
        set.spawn_on(async move { run_slot(slot, drain, stop).await }, &runtime.first);
    }
    set
}

/// What one worker slot works with.
struct Slot {
    platform: Arc<Platform>,
    name: String,
    running: Arc<RunningJobs>,
    /// Where a job runs when its tenant already runs another here.
    extra: tokio::runtime::Handle,
}

impl Slot {
    /// Runs `delivery` on the threads its tenant's running jobs call for.
    async fn run(&self, delivery: Delivery) {
        let running = self.running.enter(&delivery.job.tenant);
        if running.is_first() {
            run_job(&self.platform, delivery).await;
        } else {
            let platform = Arc::clone(&self.platform);
            let id = delivery.job.id.clone();
            if let Err(err) = self.extra.spawn(async move { run_job(&platform, delivery).await }).await {
                // The job's lease expires and it is delivered again.
                tracing::error!(worker = %self.name, job_id = %id, cause = %err, "a job's task ended abnormally");
            }
        }
        drop(running);
    }
}

async fn run_slot(slot: Slot, drain: Drain, stop: watch::Receiver<bool>) {
    let Slot { platform, name, .. } = &slot;
    let mut backoff = Duration::from_millis(250);
    loop {
        if drain == Drain::InFlight && *stop.borrow() {
            return;
        }
        match platform.queue.reserve(name, IDLE_WAIT).await {
            Ok(Some(delivery)) => {
                backoff = Duration::from_millis(250);
                slot.run(delivery).await;
            }
            Ok(None) if *stop.borrow() => return,
            Ok(None) => backoff = Duration::from_millis(250),
            Err(err) => {
                tracing::error!(worker = %name, cause = %err, retry_in_ms = backoff.as_millis(), "cannot reserve a job; backing off");
                if *stop.borrow() {
                    return;
                }
                // Wake early on shutdown; the queue reconnects by itself.
                let mut stop = stop.clone();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Runs one delivery to its end.
#[tracing::instrument(skip_all, fields(job_id = %delivery.job.id, tenant = %delivery.job.tenant, function = %delivery.job.function))]
pub async fn run_job(platform: &Platform, delivery: Delivery) {
    let queue = &platform.queue;
    if let Err(err) = queue.start(&delivery).await {
        tracing::warn!(cause = %err, "lost the job before starting it");
        return;
    }
    let job = &delivery.job;
    let function = match platform.function(job.version.as_str()).await {
        Ok(function) => function,
        Err(err) => {
            // Possibly transient (bytes not yet replicated, a full disk): retry.
            let error = JobError { code: ErrorCode::FunctionUnavailable, message: format!("{err:#}") };
            tracing::error!(cause = %error.message, "cannot load the job's function");
            if let Err(queue_err) = queue.retry(&delivery, &error, None).await {
                tracing::warn!(cause = %queue_err, "cannot return the job for a retry");
            }
            return;
        }
    };
    let request = job.request.clone();
    let limits = platform.call_limits(&job.limits);

    // Keep the lease while a long call runs, so it is never handed to a second worker.
    let heartbeat = async {
        // Three renewals per visibility timeout: one late or lost renewal
        // does not cost the lease.
        let every = (queue.visibility_timeout() / 3).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(every).await;
            if let Err(err) = queue.extend(&delivery).await {
                tracing::warn!(cause = %err, "cannot extend the job's lease");
            }
        }
    };
    let invocation = tokio::select! {
        invocation = platform.runtime.invoke_with(&function, request, &limits) => invocation,
        () = heartbeat => unreachable!("the heartbeat never ends"),
    };

    let outcome = invocation.usage.outcome;
    platform.metrics.observe_invocation(&job.function, outcome.as_str(), invocation.usage.wall_us as f64 / 1e6);
    // Shed before any guest code ran (no instance slot was free): nothing
    // to bill, and the job is tried again.
    let ran = outcome != Outcome::Failed(ErrorCode::Overloaded);
    if ran {
        let billed = attempt_billing_id(&job.id, delivery.attempt);
        if let Err(err) = platform.stores.usage.record(&billed, &job.tenant, &job.function, &invocation.usage).await {
            // Not settling the job now means it is retried after the
            // visibility timeout and that attempt billed: billed late
            // rather than never.
            tracing::error!(cause = %err, "cannot log usage; leaving the job to be retried");
            return;
        }
    }
    if !invocation.log.stderr.is_empty() {
        tracing::debug!(stderr = %invocation.log.stderr, "function stderr");
    }

    let log = invocation.log.into_job_log();
    let completion = match invocation.result {
        Ok(output) => Completion::Succeeded { output, usage: invocation.usage, log },
        Err(err) if err.code().is_retried() => {
            if !ran {
                tokio::time::sleep(SHED_BACKOFF * delivery.attempt.max(1)).await;
            }
            let usage = ran.then_some(invocation.usage);
            if let Err(queue_err) = queue.retry(&delivery, &err.to_job_error(), usage).await {
                tracing::warn!(cause = %queue_err, "cannot return the job for a retry");
            }
            return;
        }
        Err(err) => Completion::Failed { error: err.to_job_error(), usage: Some(invocation.usage), log },
    };
    settle_with(platform, &delivery, completion).await;
}

/// The id `attempt` of job `id` is billed under: every attempt that ran
/// guest code is billed once, however often a worker repeats the record
/// (the ledger keeps one entry per id).
pub fn attempt_billing_id(id: &JobId, attempt: u32) -> JobId {
    JobId(format!("{id}#{attempt}"))
}

async fn settle_with(platform: &Platform, delivery: &Delivery, completion: Completion) {
    if let Err(err) = platform.queue.complete(delivery, completion).await {
        tracing::error!(cause = %err, "cannot record the job's outcome");
    }
}

/// Announces `node` to the queue now, then every [`NODE_HEARTBEAT`] from a
/// task the caller aborts when the node stops.
pub async fn start_heartbeat(platform: &Arc<Platform>, node: String) -> tokio::task::JoinHandle<()> {
    if let Err(err) = platform.queue.heartbeat(&node).await {
        tracing::warn!(cause = %err, "cannot send the node heartbeat");
    }
    let platform = Arc::clone(platform);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(NODE_HEARTBEAT).await;
            if let Err(err) = platform.queue.heartbeat(&node).await {
                tracing::warn!(cause = %err, "cannot send the node heartbeat");
            }
        }
    })
}

/// Settings of a worker node (`sluice worker`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Sandbox limits and where the compiled-artifact cache lives.
    pub platform: PlatformConfig,
    /// Visibility timeout, deliveries and TTLs; must match the front doors'.
    pub queue: QueueConfig,
    /// The shared queue and state (a worker needs Redis).
    pub backend: BackendConfig,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long shutdown waits for jobs in hand.
    pub drain_timeout: Duration,
    /// This node's name in the queue (consumer names are `{name}/{slot}`).
    pub name: String,
}

/// Runs a worker node until `shutdown` resolves: then it stops claiming,
/// finishes the jobs in hand (within the drain timeout) and returns.
/// `on_start` is told once the node is taking jobs.
pub async fn run_node(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(),
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.backend.redis_url.is_some(),
        "a worker node needs the shared Redis (--redis): an in-process queue is reachable only inside `sluice serve`"
    );
    let node = Node::start(config.platform, config.queue, &config.backend, config.concurrency, config.name).await?;
    tracing::info!(node = %node.name, concurrency = config.concurrency, "worker taking jobs");
    on_start();

    shutdown.await;
    tracing::info!("stopping: no new jobs; finishing the ones in hand");
    node.drain(tokio::time::Instant::now() + config.drain_timeout).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tenants_first_running_job_counts_as_first() {
        let running = Arc::new(RunningJobs::default());
        let (a, b) = (TenantId("a".to_owned()), TenantId("b".to_owned()));
        let first_of_a = running.enter(&a);
        let second_of_a = running.enter(&a);
        let first_of_b = running.enter(&b);
        assert!(first_of_a.is_first());
        assert!(!second_of_a.is_first());
        assert!(first_of_b.is_first());
        drop(first_of_a);
        // One of a's jobs still runs, so the next is not its first.
        assert!(!running.enter(&a).is_first());
        drop(second_of_a);
        assert!(running.enter(&a).is_first());
        drop(first_of_b);
        assert!(running.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty());
    }
}
