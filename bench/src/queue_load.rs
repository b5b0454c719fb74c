//! Tiny jobs through a queue as fast as producers and workers can move
//! them: what one Redis sustains (P10). Shared by the `queue` bench and the
//! report so both measure the same thing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_core::{CallOutput, CallRequest, Outcome, TenantId, Version};
use sluice_scheduler::{Completion, Job, JobId, JobKind, JobLog, Queue, QueueConfig, TenantLimits, Usage};

/// A queue configuration that only the queue's own speed limits: no
/// per-tenant concurrency cap, and room for the whole backlog.
pub fn unthrottled_config() -> QueueConfig {
    QueueConfig {
        tenant_concurrency: usize::MAX,
        tenant_queue_quota: 1_000_000,
        capacity: 1_000_000,
        ..QueueConfig::default()
    }
}

/// A sync job of one tenant with a `size`-byte request body.
pub fn job_of(size: usize) -> Job {
    Job {
        id: JobId::random(),
        tenant: TenantId::from("bench"),
        function: "echo".to_owned(),
        version: Version::from("sha256:0"),
        request: CallRequest { body: vec![7; size], content_type: String::new(), params: Vec::new() },
        submitted_at_ms: sluice_scheduler::now_ms(),
        kind: JobKind::Sync,
        limits: TenantLimits::default(),
    }
}

/// A job with a 256-byte body: what a small call carries.
pub fn tiny_job() -> Job {
    job_of(256)
}

/// A successful completion with a 256-byte output.
pub fn done() -> Completion {
    Completion::Succeeded {
        output: CallOutput { body: vec![9; 256], content_type: "application/octet-stream".to_owned() },
        usage: Usage { outcome: Outcome::Ok, ..Usage::default() },
        log: JobLog::default(),
    }
}

/// How long a number of tiny jobs took from the first enqueue to the last
/// completion.
#[derive(Debug, Clone, Copy)]
pub struct QueueThroughput {
    /// Jobs moved.
    pub jobs: usize,
    /// Producers enqueueing them at once.
    pub producers: usize,
    /// Workers reserving and completing them at once.
    pub workers: usize,
    /// From the first enqueue to the last completion.
    pub elapsed: Duration,
}

impl QueueThroughput {
    /// Jobs per second.
    pub fn per_second(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Moves `jobs` tiny jobs through `queue`: `producers` tasks enqueue them
/// while `workers` tasks reserve and complete them. Fails when the queue
/// refuses a job or a worker sees an error, or when the jobs are not all
/// completed within `deadline`.
pub async fn tiny_jobs(
    queue: &Arc<dyn Queue>,
    jobs: usize,
    producers: usize,
    workers: usize,
    deadline: Duration,
) -> anyhow::Result<QueueThroughput> {
    let completed = Arc::new(AtomicUsize::new(0));
    // Nanoseconds from the start to the last completion (not to when the
    // workers notice there is nothing left, which waits out a reserve).
    let last_done_ns = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + deadline;
    let worker_tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (queue, completed, last_done_ns) =
                (Arc::clone(queue), Arc::clone(&completed), Arc::clone(&last_done_ns));
            tokio::spawn(async move {
                let name = format!("w{w}");
                while completed.load(Ordering::Acquire) < jobs && Instant::now() < stop_at {
                    let reserved = queue.reserve(&name, Duration::from_millis(50)).await.context("reserve")?;
                    if let Some(delivery) = reserved {
                        queue.complete(&delivery, done()).await.context("complete")?;
                        if completed.fetch_add(1, Ordering::AcqRel) + 1 == jobs {
                            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                            last_done_ns.store(ns, Ordering::Release);
                        }
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let producer_tasks: Vec<_> = (0..producers)
        .map(|p| {
            let queue = Arc::clone(queue);
            let share = jobs / producers + usize::from(p < jobs % producers);
            tokio::spawn(async move {
                for _ in 0..share {
                    queue.enqueue(tiny_job()).await.context("enqueue")?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for producer in producer_tasks {
        producer.await.context("producer task")??;
    }
    for worker in worker_tasks {
        worker.await.context("worker task")??;
    }
    let moved = completed.load(Ordering::Acquire);
    anyhow::ensure!(moved == jobs, "only {moved} of {jobs} jobs completed within {deadline:?}");
    let elapsed = Duration::from_nanos(last_done_ns.load(Ordering::Acquire));
    Ok(QueueThroughput { jobs, producers, workers, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_is_moved_and_timed_on_the_memory_queue() {
        let queue = sluice_scheduler::connect("memory:", unthrottled_config(), "").await.expect("memory queue");
        let moved = tiny_jobs(&queue, 103, 4, 8, Duration::from_secs(30)).await.expect("moved");
        assert_eq!((moved.jobs, moved.producers, moved.workers), (103, 4, 8));
        assert!(moved.elapsed > Duration::ZERO && moved.per_second().is_finite());
        assert!(queue.reserve("after", Duration::from_millis(10)).await.expect("reserve").is_none(), "none left");
    }
}
