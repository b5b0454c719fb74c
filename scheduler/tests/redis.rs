//! What only the Redis backend does, against a real `redis-server`: several
//! nodes sharing one Redis, outages, how bodies travel, what the stream and
//! counters hold. The scenarios every backend shares are in
//! `conformance.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{PAST_VISIBILITY, config, job, success, trapped};
use redis::AsyncCommands;
use redis::streams::StreamPendingCountReply;
use sluice_scheduler::{JobId, JobStatus, Queue, QueueError, RedisQueue, RedisQueueConfig};
use sluice_testkit::spawn_redis;

async fn connect(url: &str) -> std::sync::Arc<RedisQueue> {
    RedisQueue::connect(RedisQueueConfig::new(url, config())).await.expect("connects")
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("url");
    client.get_multiplexed_async_connection().await.expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_node_wakes_when_a_worker_on_another_finishes() {
    let redis = spawn_redis();
    let front_door = connect(&redis.url).await;
    let worker_node = connect(&redis.url).await;
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
async fn deployments_with_different_prefixes_share_a_redis_without_seeing_each_other() {
    let redis = spawn_redis();
    let open = |prefix: &str| {
        let settings = RedisQueueConfig { prefix: prefix.to_owned(), ..RedisQueueConfig::new(&redis.url, config()) };
        RedisQueue::connect(settings)
    };
    let (blue, green) = (open("blue").await.expect("connects"), open("green").await.expect("connects"));
    blue.enqueue(job("a", b"x")).await.expect("enqueued");
    green.enqueue(job("a", b"x")).await.expect("the same id in another deployment");
    assert_eq!(green.depth().await, Ok(1));
    let delivery = green.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    green.complete(&delivery, success(b"out")).await.expect("completed");
    assert_eq!(blue.job(&JobId("a".into())).await.expect("job").expect("kept").status, JobStatus::Queued);
    assert_eq!(blue.depth().await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_quickly_and_accepted_jobs_survive_a_restart() {
    let mut redis = spawn_redis();
    let queue = connect(&redis.url).await;
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
    let mut settings = RedisQueueConfig { inline_limit: 16, ..RedisQueueConfig::new(&redis.url, config()) };
    settings.queue.max_deliveries = 5;
    let queue = RedisQueue::connect(settings).await.expect("connects");
    let small = b"tiny".to_vec();
    let large: Vec<u8> = (0..4096u32).map(|n| (n % 251) as u8).collect();
    queue.enqueue(job("small", &small)).await.expect("enqueued");
    queue.enqueue(job("large", &large)).await.expect("enqueued");
    let body_of = |id: &str| if id == "small" { small.clone() } else { large.clone() };

    // First delivery of each is retried, the second is left to expire (a
    // silent worker) and reclaimed: the body is intact every time.
    for _ in 0..2 {
        let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");
        assert_eq!(delivery.job.request.body, body_of(&delivery.job.id.0));
        queue.retry(&delivery, &trapped(), None).await.expect("retried");
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");
        assert_eq!((delivery.attempt, delivery.job.request.body.clone()), (2, body_of(&delivery.job.id.0)));
        seen.push(delivery.job.id.0.clone());
    }
    tokio::time::sleep(PAST_VISIBILITY).await;
    for _ in 0..2 {
        let delivery = queue.reserve("w2", Duration::from_millis(100)).await.expect("reserve").expect("reclaimed");
        assert_eq!(delivery.job.request.body, body_of(&delivery.job.id.0), "{}", delivery.job.id);
        queue.complete(&delivery, success(b"out")).await.expect("completed");
    }
    seen.sort();
    assert_eq!(seen, ["large", "small"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_pending_for_its_worker_until_the_job_ends_then_leaves_the_stream() {
    let redis = spawn_redis();
    let queue = connect(&redis.url).await;
    let mut con = raw(&redis.url).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");

    let pending: StreamPendingCountReply =
        con.xpending_count("sluice:jobs", "workers", "-", "+", 10).await.expect("xpending");
    let held: Vec<(&str, &str, usize)> =
        pending.ids.iter().map(|p| (p.id.as_str(), p.consumer.as_str(), p.times_delivered)).collect();
    let (entry, _) = delivery.receipt.split_once('|').expect("entry|consumer");
    assert_eq!(held, [(entry, "w1", 1)]);

    queue.complete(&delivery, success(b"out")).await.expect("completed");
    let pending: StreamPendingCountReply =
        con.xpending_count("sluice:jobs", "workers", "-", "+", 10).await.expect("xpending");
    assert!(pending.ids.is_empty(), "{pending:?}");
    let length: usize = con.xlen("sluice:jobs").await.expect("xlen");
    assert_eq!(length, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_leave_no_keys_behind_once_every_job_ended() {
    let redis = spawn_redis();
    let queue = connect(&redis.url).await;
    let mut con = raw(&redis.url).await;
    for id in ["a", "b"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    let counters = ["sluice:depth", "sluice:waiting", "sluice:active:t"];
    let values: Vec<Option<i64>> = con.mget(&counters).await.expect("mget");
    assert_eq!(values, [Some(2), Some(2), Some(2)]);

    let first = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.complete(&first, success(b"out")).await.expect("completed");
    let second = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.retry(&second, &trapped(), None).await.expect("retried");
    let again = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.retry(&again, &trapped(), None).await.expect("dead-lettered");

    let values: Vec<Option<i64>> = con.mget(&counters).await.expect("mget");
    assert_eq!(values, [None, None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_schemes_connect_to_redis() {
    let redis = spawn_redis();
    let queue = sluice_scheduler::connect(&redis.url, config(), "sluice").await.expect("connects");
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let mut con = raw(&redis.url).await;
    let length: usize = con.xlen("sluice:jobs").await.expect("xlen");
    assert_eq!(length, 1, "the job is in Redis, not in this process");
}
