//! What every [`Queue`] backend must do, written once and run against each:
//! the in-memory queue on paused time and the Redis queue on a real
//! `redis-server`. Each scenario is an `async fn` over a [`Backend`]; the
//! `conformance!` macro at the bottom makes one test per backend and
//! scenario (`memory::…`, `redis::…`). A new backend adds itself there.

mod common;

use std::time::Duration;

use common::{Backend, PAST_VISIBILITY, config, job, job_of, success, trapped};
use sluice_core::{CallOutput, ErrorCode};
use sluice_scheduler::{Completion, JobError, JobId, JobStatus, Queue, QueueConfig, QueueError};
use tokio::time::Instant;

/// Long enough that a scenario never waits it out unless it is broken.
const LONG: Duration = Duration::from_secs(5);

/// Short: a reserve that should find nothing gives up after this.
const SHORT: Duration = Duration::from_millis(50);

async fn reserve(queue: &dyn Queue, worker: &str) -> sluice_scheduler::Delivery {
    queue.reserve(worker, LONG).await.expect("reserve").expect("a job")
}

async fn record(queue: &dyn Queue, id: &str) -> sluice_scheduler::JobRecord {
    queue.job(&JobId(id.to_owned())).await.expect("job").expect("kept")
}

async fn a_job_flows_through_the_queue_to_its_output(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let body: Vec<u8> = (0..=255).collect();
    queue.enqueue(job("a", &body)).await.expect("enqueued");
    assert_eq!(queue.depth().await, Ok(1));
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Queued);

    let delivery = reserve(&*queue, "w1").await;
    assert_eq!(delivery.job, job("a", &body), "the body and params survive the round trip");
    assert_eq!(delivery.attempt, 1);
    queue.start(&delivery).await.expect("started");
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Running);
    queue.complete(&delivery, success(b"out")).await.expect("completed");

    let ended = record(&*queue, "a").await;
    assert_eq!((ended.status, ended.deliveries, ended.error), (JobStatus::Succeeded, 1, None));
    assert_eq!(ended.usage.map(|usage| usage.cpu_us), Some(7));
    assert_eq!(
        queue.output(&delivery.job.id).await,
        Ok(Some(CallOutput { body: b"out".to_vec(), content_type: "image/webp".to_owned() }))
    );
    assert_eq!(queue.depth().await, Ok(0));
    assert_eq!(queue.reserve("w1", SHORT).await, Ok(None), "nothing left");
}

async fn jobs_are_handed_out_in_the_order_they_were_accepted(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    for id in ["a", "b", "c"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(reserve(&*queue, "w").await.job.id.0);
    }
    assert_eq!(order, ["a", "b", "c"]);
}

async fn a_failed_job_ends_with_its_error_and_no_output(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    let error = JobError { code: ErrorCode::Timeout, message: "too slow".to_owned() };
    queue.complete(&delivery, Completion::Failed { error: error.clone(), usage: None }).await.expect("completed");
    let ended = record(&*queue, "a").await;
    assert_eq!((ended.status, ended.error, ended.usage), (JobStatus::Failed, Some(error), None));
    assert_eq!(queue.output(&delivery.job.id).await, Ok(None));
    assert_eq!(queue.depth().await, Ok(0));
    assert_eq!(queue.dead_letters().await, Ok(Vec::new()), "a failure that is not retried is no dead letter");
}

async fn a_full_queue_refuses_new_jobs(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    for id in ["a", "b", "c"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    assert_eq!(queue.enqueue(job("d", b"x")).await, Err(QueueError::Full { capacity: 3 }));
}

async fn running_jobs_do_not_count_against_the_capacity(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    for id in ["a", "b", "c"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    let running = reserve(&*queue, "w").await;
    queue.start(&running).await.expect("started");
    queue.enqueue(job("d", b"x")).await.expect("admitted: only two jobs wait");
    assert_eq!(queue.enqueue(job("e", b"x")).await, Err(QueueError::Full { capacity: 3 }));
    assert_eq!(queue.depth().await, Ok(4));
}

async fn a_retried_job_waits_again_and_counts_against_the_capacity(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 1, ..config() }).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    queue.enqueue(job("b", b"x")).await.expect("admitted while a runs");
    let _ = reserve(&*queue, "w").await;
    queue.retry(&delivery, &trapped()).await.expect("retried");
    assert_eq!(queue.enqueue(job("c", b"x")).await, Err(QueueError::Full { capacity: 1 }));
}

async fn a_duplicate_id_is_refused_even_by_a_full_queue(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    for id in ["a", "b", "c"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    assert_eq!(queue.enqueue(job("a", b"x")).await, Err(QueueError::Duplicate("a".to_owned())));
}

async fn a_finished_jobs_id_stays_taken_while_its_record_is_kept(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    assert_eq!(queue.enqueue(job("a", b"x")).await, Err(QueueError::Duplicate("a".to_owned())));
}

async fn a_tenant_at_its_bound_is_refused_until_one_of_its_jobs_ends(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 10, tenant_concurrency: 2, ..config() }).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    queue.enqueue(job_of("t", "b")).await.expect("enqueued");
    assert_eq!(queue.enqueue(job_of("t", "c")).await, Err(QueueError::TenantBusy { limit: 2 }));
    queue.enqueue(job_of("u", "d")).await.expect("another tenant is not affected");

    let first = reserve(&*queue, "w").await;
    assert_eq!(first.job.id.0, "a");
    queue.complete(&first, success(b"out")).await.expect("completed");
    queue.enqueue(job_of("t", "c")).await.expect("admitted once one ended");
    assert_eq!(queue.enqueue(job_of("t", "e")).await, Err(QueueError::TenantBusy { limit: 2 }));
}

async fn a_dead_lettered_job_frees_its_tenants_slot(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_concurrency: 1, ..config() }).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    for _ in 0..2 {
        let delivery = reserve(&*queue, "w").await;
        queue.retry(&delivery, &trapped()).await.expect("retried");
    }
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Failed);
    queue.enqueue(job_of("t", "b")).await.expect("admitted once the dead-lettered job ended");
}

async fn a_retried_job_is_delivered_again_with_the_next_attempt(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"body")).await.expect("enqueued");
    let first = reserve(&*queue, "w").await;
    queue.retry(&first, &trapped()).await.expect("retried");
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Queued);
    let second = reserve(&*queue, "w").await;
    assert_eq!((second.attempt, second.job), (2, job("a", b"body")));
    assert_eq!(queue.dead_letters().await, Ok(Vec::new()));
}

async fn a_job_that_keeps_failing_is_dead_lettered_with_its_last_error(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    for attempt in 1..=2 {
        let delivery = reserve(&*queue, "w").await;
        assert_eq!(delivery.attempt, attempt);
        queue.retry(&delivery, &trapped()).await.expect("retried");
    }
    let ended = record(&*queue, "a").await;
    assert_eq!((ended.status, ended.deliveries), (JobStatus::Failed, 2));
    assert_eq!(
        ended.error,
        Some(JobError {
            code: ErrorCode::FunctionTrapped,
            message: "it trapped (gave up after 2 deliveries)".to_owned()
        })
    );
    assert_eq!(queue.dead_letters().await, Ok(vec![(JobId("a".to_owned()), trapped())]));
    assert_eq!(queue.depth().await, Ok(0));
    assert_eq!(queue.reserve("w", SHORT).await, Ok(None));
}

async fn an_expired_lease_is_handed_to_another_worker(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let lost = reserve(&*queue, "silent").await;
    assert_eq!(queue.reserve("w2", SHORT).await, Ok(None), "still leased");
    backend.elapse(PAST_VISIBILITY).await;
    let reclaimed = reserve(&*queue, "w2").await;
    assert_eq!((reclaimed.job, reclaimed.attempt), (lost.job, 2));
}

async fn the_first_worker_of_a_reclaimed_job_has_lost_its_lease(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let lost = reserve(&*queue, "silent").await;
    backend.elapse(PAST_VISIBILITY).await;
    let reclaimed = reserve(&*queue, "w2").await;
    queue.start(&reclaimed).await.expect("started");
    assert_eq!(queue.extend(&lost).await, Err(QueueError::LeaseLost(lost.receipt.clone())));
    assert_eq!(queue.retry(&lost, &trapped()).await, Err(QueueError::LeaseLost(lost.receipt.clone())));
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Running, "the failed retry changed nothing");
}

async fn a_late_completion_keeps_the_first_outcome(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let lost = reserve(&*queue, "silent").await;
    backend.elapse(PAST_VISIBILITY).await;
    let reclaimed = reserve(&*queue, "w2").await;
    queue.complete(&reclaimed, success(b"second")).await.expect("completed");
    queue.complete(&lost, success(b"late")).await.expect("a late completion is a no-op");
    assert_eq!(queue.output(&lost.job.id).await.expect("output").map(|output| output.body), Some(b"second".to_vec()));
    assert_eq!(queue.depth().await, Ok(0));
}

async fn extending_the_lease_keeps_a_long_job_from_being_reclaimed(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w1").await;
    for _ in 0..5 {
        backend.elapse(Duration::from_millis(150)).await;
        queue.extend(&delivery).await.expect("still ours");
    }
    assert_eq!(queue.reserve("w2", SHORT).await, Ok(None));
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    assert_eq!(record(&*queue, "a").await.deliveries, 1);
}

async fn a_job_whose_workers_all_go_silent_is_dead_lettered_as_worker_lost(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let _first = reserve(&*queue, "silent-1").await;
    backend.elapse(PAST_VISIBILITY).await;
    let _second = reserve(&*queue, "silent-2").await;
    backend.elapse(PAST_VISIBILITY).await;
    assert_eq!(queue.reserve("w3", SHORT).await, Ok(None), "out of deliveries");

    let lost = JobError {
        code: ErrorCode::WorkerLost,
        message: "the worker stopped responding (visibility timeout)".to_owned(),
    };
    let ended = record(&*queue, "a").await;
    assert_eq!((ended.status, ended.deliveries), (JobStatus::Failed, 2));
    let given_up = format!("{} (gave up after 2 deliveries)", lost.message);
    assert_eq!(ended.error, Some(JobError { code: ErrorCode::WorkerLost, message: given_up }));
    assert_eq!(queue.dead_letters().await, Ok(vec![(JobId("a".to_owned()), lost)]));
    assert_eq!(queue.depth().await, Ok(0));
}

async fn a_waiter_wakes_when_the_job_ends(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let worker = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let delivery = queue.reserve("w", LONG).await.expect("reserve").expect("a job");
            tokio::time::sleep(Duration::from_millis(100)).await;
            queue.complete(&delivery, success(b"done")).await.expect("completed");
        })
    };
    let started = Instant::now();
    let ended = queue.wait(&JobId("a".to_owned()), LONG).await.expect("wait").expect("kept");
    assert_eq!(ended.status, JobStatus::Succeeded);
    assert!(started.elapsed() < LONG, "woken by the end of the job, not by the timeout");
    worker.await.expect("worker finished");
}

async fn a_wait_on_a_finished_job_returns_its_record_at_once(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    let started = Instant::now();
    let ended = queue.wait(&JobId("a".to_owned()), LONG).await.expect("wait").expect("kept");
    assert_eq!(ended.status, JobStatus::Succeeded);
    assert!(started.elapsed() < LONG);
}

async fn a_wait_that_times_out_returns_the_unfinished_record(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let waited = queue.wait(&JobId("a".to_owned()), timeout).await.expect("wait").expect("kept");
    assert_eq!(waited.status, JobStatus::Queued);
    assert!(started.elapsed() >= timeout, "returned after {:?}", started.elapsed());
}

async fn a_wait_on_an_unknown_job_returns_nothing(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    assert_eq!(queue.wait(&JobId("nope".to_owned()), LONG).await, Ok(None));
}

async fn an_idle_worker_wakes_when_a_job_arrives(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let worker = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.reserve("w", LONG).await })
    };
    backend.elapse(Duration::from_millis(50)).await;
    let started = Instant::now();
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = worker.await.expect("worker finished").expect("reserve").expect("a job");
    assert_eq!(delivery.job.id.0, "a");
    assert!(started.elapsed() < LONG, "woken by the job, not by the end of its wait");
}

async fn finished_jobs_expire_after_the_result_ttl(backend: &impl Backend) {
    let ttl = Duration::from_secs(1);
    let queue = backend.open(QueueConfig { result_ttl: ttl, ..config() }).await;
    assert_eq!(queue.result_ttl(), ttl);
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Succeeded);
    backend.elapse(ttl + Duration::from_millis(200)).await;
    assert_eq!(queue.job(&delivery.job.id).await, Ok(None));
    assert_eq!(queue.output(&delivery.job.id).await, Ok(None));
    queue.enqueue(job("a", b"x")).await.expect("the id is free again");
}

async fn the_queue_reports_its_visibility_timeout(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    assert_eq!(queue.visibility_timeout(), Duration::from_millis(300));
}

async fn each_worker_node_counts_once(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    assert_eq!(queue.workers().await, Ok(0));
    for node in ["n1", "n2", "n1"] {
        queue.heartbeat(node).await.expect("heartbeat");
    }
    assert_eq!(queue.workers().await, Ok(2));
}

async fn a_reachable_queue_answers_pings(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    assert_eq!(queue.ping().await, Ok(()));
}

/// One test per backend and scenario: `memory::<scenario>` on paused time,
/// `redis::<scenario>` on a `redis-server` of its own.
macro_rules! conformance {
    ($($scenario:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $scenario() {
                    super::$scenario(&crate::common::Memory).await;
                }
            )+
        }

        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(&crate::common::Redis::start()).await;
                }
            )+
        }
    };
}

conformance!(
    a_job_flows_through_the_queue_to_its_output,
    jobs_are_handed_out_in_the_order_they_were_accepted,
    a_failed_job_ends_with_its_error_and_no_output,
    a_full_queue_refuses_new_jobs,
    running_jobs_do_not_count_against_the_capacity,
    a_retried_job_waits_again_and_counts_against_the_capacity,
    a_duplicate_id_is_refused_even_by_a_full_queue,
    a_finished_jobs_id_stays_taken_while_its_record_is_kept,
    a_tenant_at_its_bound_is_refused_until_one_of_its_jobs_ends,
    a_dead_lettered_job_frees_its_tenants_slot,
    a_retried_job_is_delivered_again_with_the_next_attempt,
    a_job_that_keeps_failing_is_dead_lettered_with_its_last_error,
    an_expired_lease_is_handed_to_another_worker,
    the_first_worker_of_a_reclaimed_job_has_lost_its_lease,
    a_late_completion_keeps_the_first_outcome,
    extending_the_lease_keeps_a_long_job_from_being_reclaimed,
    a_job_whose_workers_all_go_silent_is_dead_lettered_as_worker_lost,
    a_waiter_wakes_when_the_job_ends,
    a_wait_on_a_finished_job_returns_its_record_at_once,
    a_wait_that_times_out_returns_the_unfinished_record,
    a_wait_on_an_unknown_job_returns_nothing,
    an_idle_worker_wakes_when_a_job_arrives,
    finished_jobs_expire_after_the_result_ttl,
    the_queue_reports_its_visibility_timeout,
    each_worker_node_counts_once,
    a_reachable_queue_answers_pings,
);
