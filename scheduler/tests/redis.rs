//! The Redis backend against a real `redis-server`, one scenario per test.

use std::time::{Duration, Instant};

use sluice_core::{CallOutput, CallRequest, ErrorCode, Outcome};
use sluice_scheduler::{
    Completion, Job, JobError, JobId, JobStatus, Queue, QueueConfig, QueueError, RedisQueue, RedisQueueConfig, Usage,
};
use sluice_testkit::spawn_redis;

fn job(id: &str, body: &[u8]) -> Job {
    Job {
        id: JobId(id.to_owned()),
        tenant: "t".to_owned(),
        function: "f".to_owned(),
        version: "sha256:0".to_owned(),
        request: CallRequest {
            body: body.to_vec(),
            content_type: "image/png".to_owned(),
            params: vec![("width".to_owned(), "10".to_owned())],
        },
        submitted_at_ms: 1,
    }
}

fn config(url: &str) -> RedisQueueConfig {
    RedisQueueConfig {
        queue: QueueConfig {
            capacity: 3,
            visibility_timeout: Duration::from_millis(300),
            max_deliveries: 2,
            result_ttl: Duration::from_secs(60),
            tenant_concurrency: 10,
        },
        ..RedisQueueConfig::new(url)
    }
}

fn success(body: &[u8]) -> Completion {
    Completion::Succeeded {
        output: CallOutput { body: body.to_vec(), content_type: "image/webp".to_owned() },
        usage: Usage { outcome: Outcome::Ok, cpu_us: 7, ..Usage::default() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_flows_through_the_stream_to_its_output() {
    let redis = spawn_redis();
    let queue = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    let body: Vec<u8> = (0..=255).collect();
    queue.enqueue(job("a", &body)).await.expect("enqueued");
    assert_eq!(queue.depth().await.expect("depth"), 1);
    assert_eq!(queue.job(&JobId("a".into())).await.expect("job").expect("kept").status, JobStatus::Queued);

    let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    assert_eq!(delivery.job, job("a", &body), "the body and params survive the round trip");
    assert_eq!(delivery.attempt, 1);
    queue.start(&delivery).await.expect("started");
    assert_eq!(queue.job(&delivery.job.id).await.expect("job").expect("kept").status, JobStatus::Running);
    queue.complete(&delivery, success(b"out")).await.expect("completed");

    let record = queue.job(&delivery.job.id).await.expect("job").expect("kept");
    assert_eq!((record.status, record.deliveries), (JobStatus::Succeeded, 1));
    assert_eq!(record.usage.expect("usage").cpu_us, 7);
    assert_eq!(
        queue.output(&delivery.job.id).await.expect("output"),
        Some(CallOutput { body: b"out".to_vec(), content_type: "image/webp".to_owned() })
    );
    assert_eq!(queue.depth().await.expect("depth"), 0);
    assert_eq!(queue.reserve("w1", Duration::from_millis(50)).await.expect("reserve"), None, "nothing left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_and_duplicate_ids_are_enforced() {
    let redis = spawn_redis();
    let queue = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    for id in ["a", "b", "c"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    assert_eq!(queue.enqueue(job("d", b"x")).await, Err(QueueError::Full { capacity: 3 }));
    assert_eq!(queue.enqueue(job("a", b"x")).await, Err(QueueError::Duplicate("a".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_bound_is_refused_until_one_of_its_jobs_ends() {
    let redis = spawn_redis();
    let mut settings = config(&redis.url);
    settings.queue.tenant_concurrency = 2;
    settings.queue.capacity = 10;
    let queue = RedisQueue::connect(settings).await.expect("connects");
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    queue.enqueue(job("b", b"x")).await.expect("enqueued");
    assert_eq!(queue.enqueue(job("c", b"x")).await, Err(QueueError::TenantBusy { limit: 2 }));
    let other = Job { tenant: "u".to_owned(), ..job("d", b"x") };
    queue.enqueue(other).await.expect("another tenant is not affected");

    let next = async || queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    let a = next().await;
    assert_eq!(a.job.id.0, "a");
    queue.complete(&a, success(b"out")).await.expect("completed");
    queue.enqueue(job("c", b"x")).await.expect("admitted once one ended");
    assert_eq!(queue.enqueue(job("e", b"x")).await, Err(QueueError::TenantBusy { limit: 2 }));

    // A dead-lettered job frees its slot too.
    let failure = JobError { code: ErrorCode::FunctionTrapped, message: "boom".to_owned() };
    for _ in 0..2 {
        loop {
            let delivery = next().await;
            if delivery.job.id.0 == "b" {
                queue.retry(&delivery, &failure).await.expect("retried");
                break;
            }
            queue.complete(&delivery, success(b"out")).await.expect("completed");
        }
    }
    assert_eq!(queue.job(&JobId("b".into())).await.expect("job").expect("kept").status, JobStatus::Failed);
    queue.enqueue(job("e", b"x")).await.expect("admitted once the dead-lettered job ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_workers_job_is_reclaimed_by_another_worker() {
    let redis = spawn_redis();
    let queue = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let lost = queue.reserve("dead-worker", Duration::from_secs(1)).await.expect("reserve").expect("job");
    assert_eq!(queue.reserve("w2", Duration::from_millis(50)).await.expect("reserve"), None, "still leased");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reclaimed = queue.reserve("w2", Duration::from_millis(50)).await.expect("reserve").expect("reclaimed");
    assert_eq!((reclaimed.job.id.0.as_str(), reclaimed.attempt), ("a", 2));
    assert_eq!(queue.extend(&lost).await, Err(QueueError::LeaseLost(lost.receipt.clone())));
    queue.complete(&reclaimed, success(b"second")).await.expect("completed");
    queue.complete(&lost, success(b"late")).await.expect("a late completion is a no-op");
    assert_eq!(queue.output(&lost.job.id).await.expect("output").expect("kept").body, b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extending_the_lease_keeps_a_long_job_from_being_reclaimed() {
    let redis = spawn_redis();
    let queue = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("job");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        queue.extend(&delivery).await.expect("still ours");
    }
    assert_eq!(queue.reserve("w2", Duration::from_millis(50)).await.expect("reserve"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_is_dead_lettered_with_its_last_error() {
    let redis = spawn_redis();
    let queue = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let trapped = JobError { code: ErrorCode::FunctionTrapped, message: "it trapped".to_owned() };
    for attempt in 1..=2 {
        let delivery = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("job");
        assert_eq!(delivery.attempt, attempt);
        queue.retry(&delivery, &trapped).await.expect("retried");
    }
    let record = queue.job(&JobId("a".into())).await.expect("job").expect("kept");
    assert_eq!(record.status, JobStatus::Failed);
    let error = record.error.expect("a reason");
    assert_eq!(
        error,
        JobError { code: ErrorCode::FunctionTrapped, message: "it trapped (gave up after 2 deliveries)".to_owned() }
    );
    assert_eq!(queue.dead_letters().await.expect("dead letters"), vec![(JobId("a".into()), trapped)]);
    assert_eq!(queue.depth().await.expect("depth"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_node_wakes_when_a_worker_on_another_finishes() {
    let redis = spawn_redis();
    let front_door = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    let worker_node = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    front_door.enqueue(job("a", b"x")).await.expect("enqueued");
    let worker = tokio::spawn(async move {
        let delivery = worker_node.reserve("w", Duration::from_secs(5)).await.expect("reserve").expect("job");
        tokio::time::sleep(Duration::from_millis(100)).await;
        worker_node.complete(&delivery, success(b"done")).await.expect("completed");
    });
    let started = Instant::now();
    let record = front_door.wait(&JobId("a".into()), Duration::from_secs(10)).await.expect("wait").expect("kept");
    assert_eq!(record.status, JobStatus::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the notice, not by the timeout");
    worker.await.expect("worker finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_quickly_and_accepted_jobs_survive_a_restart() {
    let mut redis = spawn_redis();
    let queue = RedisQueue::connect(config(&redis.url)).await.expect("connects");
    queue.enqueue(job("a", b"kept")).await.expect("enqueued");
    redis.kill();
    let started = Instant::now();
    assert!(matches!(queue.enqueue(job("b", b"x")).await, Err(QueueError::Unavailable(_))));
    assert!(matches!(queue.ping().await, Err(QueueError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(4), "answered in {:?}", started.elapsed());

    redis.restart();
    let mut delivery = None;
    for _ in 0..50 {
        match queue.reserve("w", Duration::from_millis(100)).await {
            Ok(Some(found)) => {
                delivery = Some(found);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let delivery = delivery.expect("the job accepted before the outage is still there");
    assert_eq!(delivery.job.request.body, b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_by_reference_bodies_survive_retries_and_reclaims() {
    let redis = spawn_redis();
    let mut settings = RedisQueueConfig { inline_limit: 16, ..config(&redis.url) };
    settings.queue.max_deliveries = 5;
    let queue = RedisQueue::connect(settings).await.expect("connects");
    let small = b"tiny".to_vec();
    let large: Vec<u8> = (0..4096u32).map(|n| (n % 251) as u8).collect();
    queue.enqueue(job("small", &small)).await.expect("enqueued");
    queue.enqueue(job("large", &large)).await.expect("enqueued");
    let body_of = |id: &str| if id == "small" { small.clone() } else { large.clone() };

    // First delivery of each is retried, the second is left to expire (a
    // silent worker) and reclaimed: the body is intact every time.
    let failure = JobError { code: ErrorCode::FunctionTrapped, message: "boom".to_owned() };
    for _ in 0..2 {
        let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");
        assert_eq!(delivery.job.request.body, body_of(&delivery.job.id.0));
        queue.retry(&delivery, &failure).await.expect("retried");
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");
        assert_eq!((delivery.attempt, delivery.job.request.body.clone()), (2, body_of(&delivery.job.id.0)));
        seen.push(delivery.job.id.0.clone());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..2 {
        let delivery = queue.reserve("w2", Duration::from_millis(100)).await.expect("reserve").expect("reclaimed");
        assert_eq!(delivery.job.request.body, body_of(&delivery.job.id.0), "{}", delivery.job.id);
        queue.complete(&delivery, success(b"out")).await.expect("completed");
    }
    seen.sort();
    assert_eq!(seen, ["large", "small"]);
}
