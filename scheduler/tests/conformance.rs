//! What every [`Queue`] backend must do, written once and run against each:
//! the in-memory queue on paused time and the Redis queue on a real
//! `redis-server`. Each scenario is an `async fn` over a [`Backend`]; the
//! `conformance!` macro at the bottom makes one test per backend and
//! scenario (`memory::…`, `redis::…`). A new backend adds itself there.

mod common;

use std::time::Duration;

use common::{Backend, PAST_VISIBILITY, config, job, job_of, key, success, sync_job_of, trapped, trapped_usage};
use sluice_core::{CallOutput, ErrorCode};
use sluice_scheduler::{
    Cancel, Completion, JobError, JobFilter, JobId, JobLog, JobPage, JobStatus, MAX_GUEST_TEXT, Queue, QueueConfig,
    QueueError, SYNC_RECORD_GRACE, Submitted, TenantLimits, TenantQueue,
};
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

async fn a_job_with_an_empty_body_is_taken_retried_and_cancelled_like_any_other(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"")).await.expect("enqueued");
    let first = reserve(&*queue, "w").await;
    queue.retry(&first, &trapped(), None).await.expect("retried");
    let second = reserve(&*queue, "w").await;
    assert_eq!((second.attempt, second.job.request.body.len()), (2, 0));
    queue.complete(&second, success(b"")).await.expect("completed");
    queue.enqueue(job("b", b"")).await.expect("enqueued");
    assert!(matches!(queue.cancel(&"t".into(), &JobId("b".to_owned())).await, Ok(Cancel::Cancelled(_))));
    assert_eq!(queue.depth().await, Ok(0));
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
    queue
        .complete(&delivery, Completion::Failed { error: error.clone(), usage: None, log: JobLog::default() })
        .await
        .expect("completed");
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
    queue.retry(&delivery, &trapped(), None).await.expect("retried");
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

async fn a_burst_within_the_tenant_quota_is_accepted_whole(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, tenant_queue_quota: 5, ..config() }).await;
    for n in 0..5 {
        queue.enqueue(job_of("t", &format!("a{n}"))).await.expect("within the quota");
    }
    assert_eq!(queue.enqueue(job_of("t", "a5")).await, Err(QueueError::TenantQueueFull { limit: 5 }));
    queue.enqueue(job_of("u", "b")).await.expect("another tenant is not affected");
}

async fn a_tenants_quota_counts_waiting_jobs_not_running_ones(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, tenant_queue_quota: 2, ..config() }).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    queue.enqueue(job_of("t", "b")).await.expect("enqueued");
    assert_eq!(queue.enqueue(job_of("t", "c")).await, Err(QueueError::TenantQueueFull { limit: 2 }));
    let first = reserve(&*queue, "w").await;
    assert_eq!(first.job.id.0, "a");
    queue.enqueue(job_of("t", "c")).await.expect("admitted once one was taken");
}

async fn a_tenants_byte_quota_refuses_bodies_past_it(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, tenant_queue_bytes: 10, ..config() }).await;
    queue.enqueue(job("a", b"123456")).await.expect("within the bytes");
    assert_eq!(queue.enqueue(job("b", b"123456")).await, Err(QueueError::TenantQueueBytesFull { limit: 10 }));
    let other = sluice_scheduler::Job { tenant: "u".into(), ..job("c", b"123456") };
    queue.enqueue(other).await.expect("another tenant is not affected");
    let _ = reserve(&*queue, "w").await;
    queue.enqueue(job("b", b"123456")).await.expect("admitted once the first body was taken");
}

async fn the_queue_wide_byte_bound_refuses_every_tenant(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, queue_bytes: 10, ..config() }).await;
    queue.enqueue(job("a", b"123456")).await.expect("within the bytes");
    let other = sluice_scheduler::Job { tenant: "u".into(), ..job("b", b"123456") };
    assert_eq!(queue.enqueue(other).await, Err(QueueError::QueueBytesFull { limit: 10 }));
}

async fn tenants_with_waiting_work_take_turns(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    for id in ["a1", "a2", "a3"] {
        queue.enqueue(job_of("t", id)).await.expect("enqueued");
    }
    queue.enqueue(job_of("u", "b1")).await.expect("enqueued");
    queue.enqueue(job_of("v", "c1")).await.expect("enqueued");
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(reserve(&*queue, "w").await.job.id.0);
    }
    assert_eq!(order, ["a1", "b1", "c1", "a2", "a3"], "a backlog does not hold up a tenant with one job");
}

async fn a_tenant_at_its_running_limit_waits_while_others_run(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, tenant_concurrency: 1, ..config() }).await;
    queue.enqueue(job_of("t", "a1")).await.expect("enqueued");
    queue.enqueue(job_of("t", "a2")).await.expect("enqueued");
    queue.enqueue(job_of("u", "b1")).await.expect("enqueued");
    let first = reserve(&*queue, "w1").await;
    assert_eq!(first.job.id.0, "a1");
    assert_eq!(reserve(&*queue, "w2").await.job.id.0, "b1");
    assert_eq!(queue.reserve("w3", SHORT).await, Ok(None), "t already runs its one job");
    queue.complete(&first, success(b"out")).await.expect("completed");
    assert_eq!(reserve(&*queue, "w3").await.job.id.0, "a2");
}

async fn a_worker_waiting_for_work_wakes_when_a_running_limit_frees(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, tenant_concurrency: 1, ..config() }).await;
    queue.enqueue(job_of("t", "a1")).await.expect("enqueued");
    queue.enqueue(job_of("t", "a2")).await.expect("enqueued");
    let first = reserve(&*queue, "w1").await;
    let waiting = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.reserve("w2", LONG).await })
    };
    backend.elapse(Duration::from_millis(100)).await;
    queue.complete(&first, success(b"out")).await.expect("completed");
    let second = waiting.await.expect("joined").expect("reserve").expect("a job");
    assert_eq!(second.job.id.0, "a2");
}

async fn sync_jobs_go_before_async_ones_within_a_tenant(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    queue.enqueue(job_of("t", "a1")).await.expect("enqueued");
    queue.enqueue(job_of("t", "a2")).await.expect("enqueued");
    queue.enqueue(sync_job_of("t", "s1")).await.expect("enqueued");
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(reserve(&*queue, "w").await.job.id.0);
    }
    assert_eq!(order, ["s1", "a1", "a2"]);
}

async fn a_jobs_tenant_limits_override_the_queue_defaults(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    let limited = |id: &str| sluice_scheduler::Job {
        limits: TenantLimits { running: Some(1), queued: Some(2), ..TenantLimits::default() },
        ..job_of("t", id)
    };
    queue.enqueue(limited("a1")).await.expect("enqueued");
    queue.enqueue(limited("a2")).await.expect("enqueued");
    assert_eq!(queue.enqueue(limited("a3")).await, Err(QueueError::TenantQueueFull { limit: 2 }));
    let _ = reserve(&*queue, "w1").await;
    assert_eq!(queue.reserve("w2", SHORT).await, Ok(None), "the tenant may run one job at once");
}

async fn a_dead_lettered_job_frees_its_tenants_slot(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_concurrency: 1, ..config() }).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    for _ in 0..2 {
        let delivery = reserve(&*queue, "w").await;
        queue.retry(&delivery, &trapped(), None).await.expect("retried");
    }
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Failed);
    queue.enqueue(job_of("t", "b")).await.expect("enqueued");
    assert_eq!(reserve(&*queue, "w").await.job.id.0, "b", "the dead-lettered job no longer holds the slot");
}

async fn every_attempt_that_ran_is_recorded(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let first = reserve(&*queue, "w").await;
    queue.retry(&first, &trapped(), Some(trapped_usage())).await.expect("retried");
    assert_eq!(record(&*queue, "a").await.attempts, vec![trapped_usage()]);
    let second = reserve(&*queue, "w").await;
    queue.complete(&second, success(b"out")).await.expect("completed");
    let ended = record(&*queue, "a").await;
    let Completion::Succeeded { usage, .. } = success(b"out") else { unreachable!("a success") };
    assert_eq!(ended.attempts, vec![trapped_usage(), usage.clone()]);
    assert_eq!(ended.usage, Some(usage));
}

async fn an_attempt_shed_before_it_ran_is_not_recorded(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let first = reserve(&*queue, "w").await;
    let shed = JobError { code: ErrorCode::Overloaded, message: "no slot".to_owned() };
    queue.retry(&first, &shed, None).await.expect("retried");
    let second = reserve(&*queue, "w").await;
    queue.complete(&second, success(b"out")).await.expect("completed");
    assert_eq!(record(&*queue, "a").await.attempts.len(), 1);
}

async fn a_waiting_job_can_be_cancelled_and_never_runs(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.wait(&JobId("a".to_owned()), LONG).await })
    };
    let Ok(Cancel::Cancelled(cancelled)) = queue.cancel(&"t".into(), &JobId("a".to_owned())).await else {
        panic!("a waiting job is cancelled");
    };
    assert_eq!((cancelled.status, cancelled.error), (JobStatus::Cancelled, None));
    let woken = waiter.await.expect("joined").expect("wait").expect("kept");
    assert_eq!(woken.status, JobStatus::Cancelled, "a waiter learns at once");
    assert_eq!(queue.reserve("w", SHORT).await, Ok(None), "nothing to run");
    assert_eq!(queue.depth().await, Ok(0));
    assert_eq!(queue.tenant_queue(&"t".into()).await.map(|q| q.queued), Ok(0));
    for id in ["b", "c", "d"] {
        queue.enqueue(job_of("t", id)).await.expect("the cancelled job no longer counts against the capacity");
    }
}

async fn a_taken_job_cannot_be_cancelled(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    queue.start(&delivery).await.expect("started");
    let Ok(Cancel::TooLate(record)) = queue.cancel(&"t".into(), &delivery.job.id).await else {
        panic!("a taken job is left alone");
    };
    assert_eq!(record.status, JobStatus::Running);
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    assert!(
        matches!(queue.cancel(&"t".into(), &delivery.job.id).await, Ok(Cancel::TooLate(r)) if r.status == JobStatus::Succeeded)
    );
}

async fn another_tenants_job_cannot_be_cancelled(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    assert_eq!(queue.cancel(&"u".into(), &JobId("a".to_owned())).await, Ok(Cancel::NotFound));
    assert_eq!(queue.cancel(&"t".into(), &JobId("nope".to_owned())).await, Ok(Cancel::NotFound));
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Queued);
}

async fn a_tenants_queue_reports_waiting_running_and_the_oldest(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    for (id, at) in [("a", 1000), ("b", 2000), ("c", 3000)] {
        queue.enqueue(sluice_scheduler::Job { submitted_at_ms: at, ..job(id, b"12345") }).await.expect("enqueued");
    }
    queue.enqueue(job_of("u", "d")).await.expect("enqueued");
    let _ = reserve(&*queue, "w").await;
    let mine = queue.tenant_queue(&"t".into()).await.expect("tenant queue");
    assert_eq!(mine, TenantQueue { queued: 2, queued_bytes: 10, running: 1, oldest_queued_at_ms: Some(2000) });
    assert_eq!(queue.tenant_queue(&"nobody".into()).await, Ok(TenantQueue::default()));
}

async fn busy_tenants_are_listed_most_waiting_first(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    for (tenant, id) in [("t", "a1"), ("u", "b1"), ("u", "b2"), ("v", "c1")] {
        queue.enqueue(job_of(tenant, id)).await.expect("enqueued");
    }
    let taken = reserve(&*queue, "w").await;
    assert_eq!(taken.job.id.0, "a1");
    let busy = queue.busy_tenants(10).await.expect("busy tenants");
    let names: Vec<(String, u64, u64)> =
        busy.iter().map(|(tenant, q)| (tenant.to_string(), q.queued, q.running)).collect();
    assert_eq!(names, [("u".to_owned(), 2, 0), ("v".to_owned(), 1, 0), ("t".to_owned(), 0, 1)]);
    assert_eq!(queue.busy_tenants(1).await.map(|busy| busy.len()), Ok(1));
}

async fn jobs_are_listed_newest_first_a_page_at_a_time(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    for (id, at, function) in [("a", 1000, "f"), ("b", 2000, "g"), ("c", 3000, "f"), ("d", 4000, "f")] {
        let job = sluice_scheduler::Job { submitted_at_ms: at, function: function.to_owned(), ..job(id, b"x") };
        queue.enqueue(job).await.expect("enqueued");
    }
    queue.enqueue(job_of("u", "other")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    queue.complete(&delivery, success(b"out")).await.expect("a finished");
    let tenant = "t".into();
    let ids = |page: &JobPage| page.jobs.iter().map(|job| job.id.0.clone()).collect::<Vec<_>>();

    let first = queue.jobs(&tenant, &JobFilter::default(), None, 3).await.expect("first page");
    assert_eq!(ids(&first), ["d", "c", "b"]);
    let cursor = first.cursor.expect("more to come");
    let second = queue.jobs(&tenant, &JobFilter::default(), Some(&cursor), 3).await.expect("second page");
    assert_eq!((ids(&second), second.cursor), (vec!["a".to_owned()], None));

    let only_f = JobFilter { function: Some("f".to_owned()), ..JobFilter::default() };
    assert_eq!(ids(&queue.jobs(&tenant, &only_f, None, 10).await.expect("by function")), ["d", "c", "a"]);
    let done = JobFilter { status: Some(JobStatus::Succeeded), ..JobFilter::default() };
    assert_eq!(ids(&queue.jobs(&tenant, &done, None, 10).await.expect("by status")), ["a"]);
}

async fn a_forgotten_tenant_leaves_nothing_behind(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, ..config() }).await;
    let k = key("k", "fp");
    queue.submit(job_of("t", "done"), Some(&k)).await.expect("submitted");
    let delivery = reserve(&*queue, "w").await;
    queue.complete(&delivery, success(b"kept output")).await.expect("completed");
    queue.enqueue(job_of("t", "waiting")).await.expect("enqueued");
    queue.enqueue(job_of("u", "theirs")).await.expect("enqueued");

    assert_eq!(queue.forget_tenant(&"t".into()).await, Ok(2));
    for id in ["done", "waiting"] {
        assert_eq!(queue.job(&JobId(id.to_owned())).await, Ok(None), "{id}");
    }
    assert_eq!(queue.output(&JobId("done".to_owned())).await, Ok(None));
    assert_eq!(queue.tenant_queue(&"t".into()).await, Ok(TenantQueue::default()));
    assert_eq!(reserve(&*queue, "w").await.job.id.0, "theirs", "only the other tenant's job is left");
    assert_eq!(queue.submit(job_of("t", "new"), Some(&k)).await, Ok(Submitted::Accepted), "the key is gone");
}

/// Runs `tenant`'s sync job `id` to success; its caller takes the output
/// when `taken`.
async fn run_sync(queue: &dyn Queue, tenant: &str, id: &str, taken: bool) {
    queue.enqueue(sync_job_of(tenant, id)).await.expect("enqueued");
    let delivery = reserve(queue, "w").await;
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    if taken {
        assert!(queue.take_output(&delivery.job.id).await.expect("taken").is_some(), "{id}");
    }
}

async fn kept(queue: &dyn Queue, id: &str) -> bool {
    queue.job(&JobId(id.to_owned())).await.expect("job").is_some()
}

async fn only_a_tenants_newest_ended_sync_records_are_kept(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, sync_records_per_tenant: 2, ..config() }).await;
    run_sync(&*queue, "u", "theirs", true).await;
    queue.enqueue(job_of("t", "async")).await.expect("enqueued");
    run_to_success(&*queue, b"out").await;
    for id in ["s1", "s2", "s3", "s4"] {
        run_sync(&*queue, "t", id, true).await;
    }
    backend.elapse(SYNC_RECORD_GRACE + Duration::from_millis(500)).await;
    for (id, expected) in [("s1", false), ("s2", false), ("s3", true), ("s4", true), ("async", true), ("theirs", true)]
    {
        assert_eq!(kept(&*queue, id).await, expected, "{id}");
    }
    let page = queue.jobs(&"t".into(), &JobFilter::default(), None, 10).await.expect("listed");
    let mut listed: Vec<String> = page.jobs.into_iter().map(|job| job.id.0).collect();
    listed.sort();
    assert_eq!(listed, ["async", "s3", "s4"]);
}

async fn an_ended_sync_jobs_output_nobody_took_outlives_the_newer_records(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 100, sync_records_per_tenant: 1, ..config() }).await;
    run_sync(&*queue, "t", "untaken", false).await;
    for id in ["s1", "s2"] {
        run_sync(&*queue, "t", id, true).await;
    }
    backend.elapse(SYNC_RECORD_GRACE + Duration::from_millis(500)).await;
    for (id, expected) in [("untaken", true), ("s1", false), ("s2", true)] {
        assert_eq!(kept(&*queue, id).await, expected, "{id}");
    }
    let output = queue.take_output(&JobId("untaken".to_owned())).await.expect("taken");
    assert_eq!(output.map(|output| output.body), Some(b"out".to_vec()), "still there for whoever looks it up");
}

async fn a_retried_job_is_delivered_again_with_the_next_attempt(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"body")).await.expect("enqueued");
    let first = reserve(&*queue, "w").await;
    queue.retry(&first, &trapped(), None).await.expect("retried");
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
        queue.retry(&delivery, &trapped(), None).await.expect("retried");
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
    assert_eq!(queue.retry(&lost, &trapped(), None).await, Err(QueueError::LeaseLost(lost.receipt.clone())));
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

/// Bytes [`success`]`(b"out")` counts against a budget: body and media type.
const OUT_BYTES: u64 = 3 + 10;

async fn run_to_success(queue: &dyn Queue, body: &[u8]) -> JobId {
    let delivery = reserve(queue, "w").await;
    queue.complete(&delivery, success(body)).await.expect("completed");
    delivery.job.id
}

async fn a_taken_output_is_released_and_the_record_kept(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let id = run_to_success(&*queue, b"out").await;
    let taken = queue.take_output(&id).await.expect("taken");
    assert_eq!(taken, Some(CallOutput { body: b"out".to_vec(), content_type: "image/webp".to_owned() }));
    assert_eq!(queue.take_output(&id).await, Ok(None), "taken once");
    assert_eq!(queue.output(&id).await, Ok(None));
    assert_eq!(record(&*queue, "a").await.status, JobStatus::Succeeded, "the record stays for the TTL");
}

/// Runs the next job to `completion` once a worker can take it, as a
/// worker node would while a sync caller waits.
fn serve_one(queue: &std::sync::Arc<dyn Queue>, completion: Completion) -> tokio::task::JoinHandle<()> {
    let queue = std::sync::Arc::clone(queue);
    tokio::spawn(async move {
        let delivery = reserve(&*queue, "w").await;
        queue.complete(&delivery, completion).await.expect("completed");
    })
}

async fn a_sync_call_gets_its_output_once_it_ends(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let worker = serve_one(&queue, success(b"out"));
    let ended = queue.call(sync_job_of("t", "a"), LONG).await.expect("called").expect("kept");
    worker.await.expect("worker");
    assert_eq!(ended.record.status, JobStatus::Succeeded);
    assert_eq!(ended.output, Some(CallOutput { body: b"out".to_vec(), content_type: "image/webp".to_owned() }));
    assert_eq!(queue.output(&JobId("a".to_owned())).await, Ok(None), "a delivered sync output is not kept");
}

async fn a_failed_sync_call_gets_its_record_and_no_output(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let failed = Completion::Failed { error: trapped(), usage: None, log: JobLog::default() };
    let worker = serve_one(&queue, failed);
    let ended = queue.call(sync_job_of("t", "a"), LONG).await.expect("called").expect("kept");
    worker.await.expect("worker");
    assert_eq!((ended.record.status, ended.record.error, ended.output), (JobStatus::Failed, Some(trapped()), None));
}

async fn a_sync_call_nobody_runs_in_time_gets_the_waiting_record(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let waited = queue.call(sync_job_of("t", "a"), SHORT).await.expect("called").expect("kept");
    assert_eq!((waited.record.status, waited.output), (JobStatus::Queued, None));
    assert_eq!(reserve(&*queue, "w").await.job.id, JobId("a".to_owned()), "the job goes on");
}

async fn a_tenant_over_its_result_budget_is_refused_new_async_jobs(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES, ..config() }).await;
    assert_eq!(queue.submit(job_of("t", "a"), None).await, Ok(Submitted::Accepted));
    let first = run_to_success(&*queue, b"out").await;
    assert_eq!(queue.submit(job_of("t", "b"), None).await, Err(QueueError::TenantResultsFull { limit: OUT_BYTES }));
    assert_eq!(queue.submit(job_of("other", "c"), None).await, Ok(Submitted::Accepted), "other tenants are not");
    queue.enqueue(job_of("t", "d")).await.expect("a sync call's output is not kept, so it is not budgeted");
    assert_eq!(queue.output(&first).await.expect("output").map(|o| o.body), Some(b"out".to_vec()));
}

async fn the_queue_wide_result_budget_refuses_every_tenant(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { result_bytes: 2 * OUT_BYTES, ..config() }).await;
    for (tenant, id) in [("t1", "a"), ("t2", "b")] {
        assert_eq!(queue.submit(job_of(tenant, id), None).await, Ok(Submitted::Accepted));
        run_to_success(&*queue, b"out").await;
    }
    assert_eq!(queue.submit(job_of("t3", "c"), None).await, Err(QueueError::ResultsFull { limit: 2 * OUT_BYTES }));
    assert_eq!(QueueError::ResultsFull { limit: 1 }.code(), ErrorCode::ResultStorageExhausted);
    assert_eq!(QueueError::TenantResultsFull { limit: 1 }.code(), ErrorCode::ResultStorageFull);
}

async fn accepted_jobs_keep_their_results_past_the_budget(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES, ..config() }).await;
    for id in ["a", "b"] {
        assert_eq!(queue.submit(job_of("t", id), None).await, Ok(Submitted::Accepted));
    }
    // Both run at once, so both outputs land although the first fills the budget.
    let (first, second) = (reserve(&*queue, "w1").await, reserve(&*queue, "w2").await);
    for delivery in [&first, &second] {
        queue.complete(delivery, success(b"out")).await.expect("completed");
    }
    for delivery in [first, second] {
        let id = delivery.job.id;
        assert!(queue.output(&id).await.expect("output").is_some(), "{id} kept although over the budget");
    }
    assert_eq!(queue.submit(job_of("t", "c"), None).await, Err(QueueError::TenantResultsFull { limit: OUT_BYTES }));
}

async fn a_tenants_async_jobs_wait_while_its_results_fill_its_budget(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES, ..config() }).await;
    for id in ["a", "b"] {
        assert_eq!(queue.submit(job_of("t", id), None).await, Ok(Submitted::Accepted));
    }
    let first = run_to_success(&*queue, b"out").await;
    assert_eq!(queue.reserve("w", SHORT).await, Ok(None), "b would store past the budget: it waits");
    queue.enqueue(sync_job_of("t", "s")).await.expect("a sync call stores nothing");
    assert_eq!(reserve(&*queue, "w").await.job.id.0, "s", "sync calls still run");
    queue.take_output(&first).await.expect("taken");
    assert_eq!(reserve(&*queue, "w").await.job.id.0, "b", "room again: b runs");
}

async fn a_taken_output_frees_its_budget(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES, ..config() }).await;
    queue.submit(job_of("t", "a"), None).await.expect("submitted");
    let id = run_to_success(&*queue, b"out").await;
    queue.take_output(&id).await.expect("taken");
    assert_eq!(queue.submit(job_of("t", "b"), None).await, Ok(Submitted::Accepted));
}

async fn an_expired_result_frees_its_budget(backend: &impl Backend) {
    let ttl = Duration::from_secs(1);
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES, result_ttl: ttl, ..config() }).await;
    queue.submit(job_of("t", "a"), None).await.expect("submitted");
    run_to_success(&*queue, b"out").await;
    assert!(queue.submit(job_of("t", "b"), None).await.is_err(), "full until the result expires");
    backend.elapse(ttl + Duration::from_millis(200)).await;
    assert_eq!(queue.submit(job_of("t", "c"), None).await, Ok(Submitted::Accepted));
}

fn printed(stdout: &str, stderr: &str) -> JobLog {
    JobLog { stdout: stdout.to_owned(), stderr: stderr.to_owned(), truncated: false }
}

async fn a_job_keeps_what_its_ending_attempt_printed(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    for id in ["a", "b", "c"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    let log = JobLog { truncated: true, ..printed("hello\n", "warning: ünïcode\n") };
    let failed = reserve(&*queue, "w").await;
    let error = JobError { code: ErrorCode::FunctionError, message: "no".to_owned() };
    queue.complete(&failed, Completion::Failed { error, usage: None, log: log.clone() }).await.expect("completed");
    let Completion::Succeeded { output, usage, .. } = success(b"out") else { unreachable!("a success") };
    let succeeded = reserve(&*queue, "w").await;
    let quiet = Completion::Succeeded { output, usage, log: printed("done", "") };
    queue.complete(&succeeded, quiet).await.expect("completed");

    assert_eq!(queue.logs(&JobId("a".to_owned())).await, Ok(Some(log)));
    assert_eq!(queue.logs(&JobId("b".to_owned())).await, Ok(Some(printed("done", ""))));
    assert_eq!(queue.logs(&JobId("c".to_owned())).await, Ok(Some(JobLog::default())), "waiting: nothing yet");
    assert_eq!(queue.logs(&JobId("nope".to_owned())).await, Ok(None));
}

async fn a_log_with_no_room_in_the_result_budget_is_dropped_and_marked(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES + 4, ..config() }).await;
    // Sync jobs: they run whatever the budget holds, so both end.
    for id in ["a", "b"] {
        queue.enqueue(sync_job_of("t", id)).await.expect("enqueued");
    }
    let Completion::Succeeded { output, usage, .. } = success(b"out") else { unreachable!("a success") };
    let fits = Completion::Succeeded { output: output.clone(), usage: usage.clone(), log: printed("1234", "") };
    queue.complete(&reserve(&*queue, "w").await, fits).await.expect("completed");
    let too_much = Completion::Succeeded { output, usage, log: printed("12345", "") };
    queue.complete(&reserve(&*queue, "w").await, too_much).await.expect("completed");

    assert_eq!(queue.logs(&JobId("a".to_owned())).await, Ok(Some(printed("1234", ""))));
    let dropped = JobLog { truncated: true, ..JobLog::default() };
    assert_eq!(queue.logs(&JobId("b".to_owned())).await, Ok(Some(dropped)), "the output is kept, not the log");
    assert!(queue.output(&JobId("b".to_owned())).await.expect("output").is_some());
}

async fn a_kept_log_counts_in_the_budget_until_it_expires(backend: &impl Backend) {
    let ttl = Duration::from_secs(1);
    let queue = backend.open(QueueConfig { tenant_result_bytes: 8, result_ttl: ttl, ..config() }).await;
    queue.enqueue(job_of("t", "a")).await.expect("enqueued");
    let delivery = reserve(&*queue, "w").await;
    let error = JobError { code: ErrorCode::FunctionError, message: "no".to_owned() };
    let log = printed("12345678", "");
    queue.complete(&delivery, Completion::Failed { error, usage: None, log }).await.expect("completed");
    assert_eq!(queue.submit(job_of("t", "b"), None).await, Err(QueueError::TenantResultsFull { limit: 8 }));
    backend.elapse(ttl + Duration::from_millis(200)).await;
    assert_eq!(queue.submit(job_of("t", "c"), None).await, Ok(Submitted::Accepted));
}

async fn guest_text_is_capped_before_it_is_kept(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let long = "x".repeat(3 * MAX_GUEST_TEXT);
    for id in ["a", "b"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    let failed = reserve(&*queue, "w").await;
    let error = JobError { code: ErrorCode::FunctionError, message: long.clone() };
    queue
        .complete(&failed, Completion::Failed { error, usage: None, log: JobLog::default() })
        .await
        .expect("completed");
    let message = record(&*queue, "a").await.error.expect("an error").message;
    assert_eq!(message.len(), MAX_GUEST_TEXT);
    let succeeded = reserve(&*queue, "w").await;
    let output = CallOutput { body: b"out".to_vec(), content_type: long };
    let completion =
        Completion::Succeeded { output, usage: sluice_scheduler::Usage::default(), log: JobLog::default() };
    queue.complete(&succeeded, completion).await.expect("completed");
    let kept = queue.output(&succeeded.job.id).await.expect("output").expect("kept");
    assert_eq!(kept.content_type.len(), MAX_GUEST_TEXT);
}

async fn a_key_names_its_job_for_the_same_request(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let k = key("k", "fp");
    assert_eq!(queue.submit(job_of("t", "a"), Some(&k)).await, Ok(Submitted::Accepted));
    let again = queue.submit(job_of("t", "b"), Some(&k)).await;
    assert_eq!(again, Ok(Submitted::Existing { id: JobId("a".to_owned()), status: JobStatus::Queued }));
    assert_eq!(queue.depth().await, Ok(1), "nothing more was enqueued");
    assert_eq!(queue.job(&JobId("b".to_owned())).await, Ok(None));
}

async fn a_key_reports_its_jobs_current_status(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let k = key("k", "fp");
    queue.submit(job_of("t", "a"), Some(&k)).await.expect("submitted");
    run_to_success(&*queue, b"out").await;
    let again = queue.submit(job_of("t", "b"), Some(&k)).await;
    assert_eq!(again, Ok(Submitted::Existing { id: JobId("a".to_owned()), status: JobStatus::Succeeded }));
}

async fn a_key_used_for_another_request_conflicts(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    queue.submit(job_of("t", "a"), Some(&key("k", "fp"))).await.expect("submitted");
    assert_eq!(queue.submit(job_of("t", "b"), Some(&key("k", "other"))).await, Ok(Submitted::Conflict));
}

async fn the_same_key_of_another_tenant_is_free(backend: &impl Backend) {
    let queue = backend.open(config()).await;
    let k = key("k", "fp");
    queue.submit(job_of("t", "a"), Some(&k)).await.expect("submitted");
    assert_eq!(queue.submit(job_of("other", "b"), Some(&k)).await, Ok(Submitted::Accepted));
}

async fn a_refused_submission_records_no_key(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { capacity: 1, ..config() }).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let k = key("k", "fp");
    assert_eq!(queue.submit(job_of("t", "b"), Some(&k)).await, Err(QueueError::Full { capacity: 1 }));
    reserve(&*queue, "w").await;
    assert_eq!(queue.submit(job_of("t", "c"), Some(&k)).await, Ok(Submitted::Accepted), "the key was free");
}

async fn a_retried_submission_finds_its_job_even_over_the_budget(backend: &impl Backend) {
    let queue = backend.open(QueueConfig { tenant_result_bytes: OUT_BYTES, ..config() }).await;
    let k = key("k", "fp");
    queue.submit(job_of("t", "a"), Some(&k)).await.expect("submitted");
    run_to_success(&*queue, b"out").await;
    let again = queue.submit(job_of("t", "b"), Some(&k)).await;
    assert_eq!(again, Ok(Submitted::Existing { id: JobId("a".to_owned()), status: JobStatus::Succeeded }));
}

async fn a_key_is_free_again_once_its_ttl_passes(backend: &impl Backend) {
    let ttl = Duration::from_secs(1);
    let queue = backend.open(QueueConfig { result_ttl: ttl, ..config() }).await;
    let k = key("k", "fp");
    queue.submit(job_of("t", "a"), Some(&k)).await.expect("submitted");
    run_to_success(&*queue, b"out").await;
    backend.elapse(ttl + Duration::from_millis(200)).await;
    assert_eq!(queue.submit(job_of("t", "b"), Some(&key("k", "other"))).await, Ok(Submitted::Accepted));
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
    a_sync_call_gets_its_output_once_it_ends,
    a_failed_sync_call_gets_its_record_and_no_output,
    a_sync_call_nobody_runs_in_time_gets_the_waiting_record,
    a_job_with_an_empty_body_is_taken_retried_and_cancelled_like_any_other,
    jobs_are_handed_out_in_the_order_they_were_accepted,
    a_failed_job_ends_with_its_error_and_no_output,
    a_full_queue_refuses_new_jobs,
    running_jobs_do_not_count_against_the_capacity,
    a_retried_job_waits_again_and_counts_against_the_capacity,
    a_duplicate_id_is_refused_even_by_a_full_queue,
    a_finished_jobs_id_stays_taken_while_its_record_is_kept,
    a_burst_within_the_tenant_quota_is_accepted_whole,
    a_tenants_quota_counts_waiting_jobs_not_running_ones,
    a_tenants_byte_quota_refuses_bodies_past_it,
    the_queue_wide_byte_bound_refuses_every_tenant,
    tenants_with_waiting_work_take_turns,
    a_tenant_at_its_running_limit_waits_while_others_run,
    a_worker_waiting_for_work_wakes_when_a_running_limit_frees,
    sync_jobs_go_before_async_ones_within_a_tenant,
    a_jobs_tenant_limits_override_the_queue_defaults,
    a_dead_lettered_job_frees_its_tenants_slot,
    every_attempt_that_ran_is_recorded,
    an_attempt_shed_before_it_ran_is_not_recorded,
    a_waiting_job_can_be_cancelled_and_never_runs,
    a_taken_job_cannot_be_cancelled,
    another_tenants_job_cannot_be_cancelled,
    a_tenants_queue_reports_waiting_running_and_the_oldest,
    busy_tenants_are_listed_most_waiting_first,
    jobs_are_listed_newest_first_a_page_at_a_time,
    a_forgotten_tenant_leaves_nothing_behind,
    only_a_tenants_newest_ended_sync_records_are_kept,
    an_ended_sync_jobs_output_nobody_took_outlives_the_newer_records,
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
    a_taken_output_is_released_and_the_record_kept,
    a_tenant_over_its_result_budget_is_refused_new_async_jobs,
    the_queue_wide_result_budget_refuses_every_tenant,
    accepted_jobs_keep_their_results_past_the_budget,
    a_tenants_async_jobs_wait_while_its_results_fill_its_budget,
    a_taken_output_frees_its_budget,
    an_expired_result_frees_its_budget,
    guest_text_is_capped_before_it_is_kept,
    a_job_keeps_what_its_ending_attempt_printed,
    a_log_with_no_room_in_the_result_budget_is_dropped_and_marked,
    a_kept_log_counts_in_the_budget_until_it_expires,
    a_key_names_its_job_for_the_same_request,
    a_key_reports_its_jobs_current_status,
    a_key_used_for_another_request_conflicts,
    the_same_key_of_another_tenant_is_free,
    a_refused_submission_records_no_key,
    a_retried_submission_finds_its_job_even_over_the_budget,
    a_key_is_free_again_once_its_ttl_passes,
);
