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

use sluice_core::{ErrorCode, Outcome};
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
/// cores between calls at a finer grain than a guest's yields. The slot
/// threads run at [`priority::SLOT_NICENESS`] below the HTTP threads.
pub struct SlotRuntime(Option<tokio::runtime::Runtime>);

impl SlotRuntime {
    /// A runtime with one thread per slot.
    pub fn new(slots: usize) -> std::io::Result<Self> {
        Ok(Self(Some(priority::lowered_runtime("sluice-slot", slots, priority::SLOT_NICENESS)?)))
    }

    /// Where slots are spawned.
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for SlotRuntime {
    fn drop(&mut self) {
        // Dropped from async code (a node's drain), where waiting for the
        // threads would block a runtime thread; they end on their own.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
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
    runtime: &tokio::runtime::Handle,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for slot in 0..slots {
        let platform = Arc::clone(&platform);
        let name = format!("{node}/{slot}");
        let stop = stop.clone();
        set.spawn_on(async move { run_slot(platform, name, drain, stop).await }, runtime);
    }
    set
}

async fn run_slot(platform: Arc<Platform>, name: String, drain: Drain, stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        if drain == Drain::InFlight && *stop.borrow() {
            return;
        }
        match platform.queue.reserve(&name, IDLE_WAIT).await {
            Ok(Some(delivery)) => {
                backoff = Duration::from_millis(250);
                run_job(&platform, delivery).await;
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

    let completion = match invocation.result {
        Ok(output) => Completion::Succeeded { output, usage: invocation.usage },
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
        Err(err) => Completion::Failed { error: err.to_job_error(), usage: Some(invocation.usage) },
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
