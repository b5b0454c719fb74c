//! What only the Redis backend does, against a real `redis-server`: several
//! nodes sharing one Redis (turns, running limits and leases hold across
//! them), outages, bodies across retries and reclaims, and what the keys
//! hold. The scenarios every backend shares are in
//! `conformance.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{PAST_VISIBILITY, config, job, job_of, key, success, trapped};
use redis::AsyncCommands;
use sluice_core::CallRequest;
use sluice_scheduler::{Job, JobId, JobStatus, Queue, QueueConfig, QueueError, RedisQueue, RedisQueueConfig};
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

async fn connect_with(url: &str, config: QueueConfig) -> std::sync::Arc<RedisQueue> {
    RedisQueue::connect(RedisQueueConfig::new(url, config)).await.expect("connects")
}

/// Every key of the deployment `sluice`, sorted.
/// The deployment's keys, once the takes' housekeeping mark (which lapses
/// by itself within a tenth of a second) is gone.
async fn keys(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    for _ in 0..50 {
        let marked: bool = con.exists("sluice:housekeeping").await.expect("exists");
        if !marked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut keys: Vec<String> = con.keys("sluice:*").await.expect("keys");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_bodies_survive_retries_and_reclaims() {
    let redis = spawn_redis();
    let queue = connect_with(&redis.url, QueueConfig { max_deliveries: 5, ..config() }).await;
    let small = b"tiny".to_vec();
    let large: Vec<u8> = (0..(64 << 10)).map(|n: u32| (n % 251) as u8).collect();
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
async fn a_taken_job_is_leased_to_its_worker_until_it_ends() {
    let redis = spawn_redis();
    let queue = connect(&redis.url).await;
    let mut con = raw(&redis.url).await;
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = queue.reserve("w1", Duration::from_secs(1)).await.expect("reserve").expect("a job");

    let leased: Vec<String> = con.zrange("sluice:leases", 0, -1).await.expect("zrange");
    assert_eq!(leased, ["a"]);
    let holder: (Option<String>, Option<String>) =
        con.hmget("sluice:job:a", &["worker", "lease"]).await.expect("hmget");
    assert_eq!(holder, (Some("w1".to_owned()), Some(delivery.receipt.clone())));

    queue.complete(&delivery, success(b"out")).await.expect("completed");
    let leased: Vec<String> = con.zrange("sluice:leases", 0, -1).await.expect("zrange");
    assert!(leased.is_empty(), "{leased:?}");
    let holder: (Option<String>, Option<String>) =
        con.hmget("sluice:job:a", &["worker", "lease"]).await.expect("hmget");
    assert_eq!(holder, (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_leave_no_keys_behind_once_every_job_ended() {
    let redis = spawn_redis();
    let queue = connect(&redis.url).await;
    let mut con = raw(&redis.url).await;
    for id in ["a", "b"] {
        queue.enqueue(job(id, b"x")).await.expect("enqueued");
    }
    let counters = ["sluice:depth", "sluice:waiting", "sluice:waiting_bytes"];
    let values: Vec<Option<i64>> = con.mget(&counters).await.expect("mget");
    assert_eq!(values, [Some(2), Some(2), Some(2)]);

    let first = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.complete(&first, success(b"out")).await.expect("completed");
    let second = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.retry(&second, &trapped(), None).await.expect("retried");
    let again = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.retry(&again, &trapped(), None).await.expect("dead-lettered");
    assert_eq!(queue.reserve("w", Duration::ZERO).await, Ok(None));

    // What is left is what is kept for the TTL: the two records, the
    // tenant's listing, the kept output's accounting and the dead letter.
    let left = keys(&mut con).await;
    let expected =
        ["sluice:dead", "sluice:index:t", "sluice:job:a", "sluice:job:b", "sluice:result_bytes", "sluice:results"];
    assert_eq!(left, expected);
    for expiring in ["sluice:index:t", "sluice:job:a", "sluice:job:b"] {
        let ttl: i64 = con.pttl(expiring).await.expect("pttl");
        assert!(ttl > 0, "{expiring} expires ({ttl})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_and_running_limits_hold_across_nodes() {
    let redis = spawn_redis();
    let settings = QueueConfig { capacity: 100, tenant_concurrency: 1, ..config() };
    let (node_a, node_b) = (connect_with(&redis.url, settings).await, connect_with(&redis.url, settings).await);
    for (tenant, id) in [("t", "a1"), ("t", "a2"), ("t", "a3"), ("u", "b1")] {
        node_a.enqueue(job_of(tenant, id)).await.expect("enqueued");
    }
    node_b.enqueue(job_of("v", "c1")).await.expect("enqueued through another node");
    let first = node_a.reserve("wa", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    let second = node_b.reserve("wb", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    let third = node_a.reserve("wa2", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    let taken: Vec<&str> = [&first, &second, &third].iter().map(|d| d.job.id.as_str()).collect();
    assert_eq!(taken, ["a1", "b1", "c1"], "turns are shared");
    assert_eq!(node_b.reserve("wb2", Duration::from_millis(100)).await, Ok(None), "t runs its one job on node a");
    node_a.complete(&first, success(b"out")).await.expect("completed");
    let next = node_b.reserve("wb2", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    assert_eq!(next.job.id.0, "a2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_on_one_node_wakes_for_a_job_accepted_on_another() {
    let redis = spawn_redis();
    let (front_door, worker_node) = (connect(&redis.url).await, connect(&redis.url).await);
    let worker = tokio::spawn(async move { worker_node.reserve("w", Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    front_door.enqueue(job("a", b"x")).await.expect("enqueued");
    let delivery = worker.await.expect("joined").expect("reserve").expect("a job");
    assert_eq!(delivery.job.id.0, "a");
    assert!(started.elapsed() < Duration::from_secs(30), "woken by the job, not by the end of its wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_one_node_reclaims_the_job_of_a_silent_worker_on_another() {
    let redis = spawn_redis();
    let (silent_node, healthy_node) = (connect(&redis.url).await, connect(&redis.url).await);
    silent_node.enqueue(job("a", b"x")).await.expect("enqueued");
    let lost = silent_node.reserve("silent", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    assert_eq!(healthy_node.reserve("w", Duration::from_millis(50)).await, Ok(None), "still leased");
    let reclaimed = healthy_node.reserve("w", Duration::from_secs(5)).await.expect("reserve").expect("reclaimed");
    assert_eq!((reclaimed.job.id.0.as_str(), reclaimed.attempt), ("a", 2));
    assert_eq!(silent_node.extend(&lost).await, Err(QueueError::LeaseLost(lost.receipt.clone())));
    healthy_node.complete(&reclaimed, success(b"out")).await.expect("completed");
    silent_node.complete(&lost, success(b"late")).await.expect("a late completion is a no-op");
    let output = healthy_node.output(&reclaimed.job.id).await.expect("output").expect("kept");
    assert_eq!(output.body, b"out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_tenant_leaves_no_keys_behind() {
    let redis = spawn_redis();
    let queue = connect_with(&redis.url, QueueConfig { capacity: 100, ..config() }).await;
    let mut con = raw(&redis.url).await;
    queue.submit(job_of("t", "done"), Some(&key("k", "fp"))).await.expect("submitted");
    let delivery = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.complete(&delivery, success(b"kept")).await.expect("completed");
    queue.enqueue(job_of("t", "waiting")).await.expect("enqueued");
    queue.enqueue(job_of("t", "running")).await.expect("enqueued");
    let running = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    assert_eq!(queue.forget_tenant(&"t".into()).await, Ok(3));

    // Only what is shared may remain: a doorbell token rung for the jobs.
    let left: Vec<String> = keys(&mut con).await.into_iter().filter(|key| key != "sluice:ready").collect();
    assert_eq!(left, Vec::<String>::new(), "nothing of the tenant, and no counts, remain");
    queue.complete(&running, success(b"late")).await.expect("a forgotten job's completion is a no-op");
    assert_eq!(queue.job(&running.job.id).await, Ok(None));
    assert_eq!(queue.depth().await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_schemes_connect_to_redis() {
    let redis = spawn_redis();
    let queue = sluice_scheduler::connect(&redis.url, config(), "sluice").await.expect("connects");
    queue.enqueue(job("a", b"x")).await.expect("enqueued");
    let mut con = raw(&redis.url).await;
    let waiting: Vec<String> = con.lrange("sluice:lane:async:t", 0, -1).await.expect("lrange");
    assert_eq!(waiting, ["a"], "the job is in Redis, not in this process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_two_nodes_run_every_job_once_within_each_tenants_limit() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let redis = spawn_redis();
    let settings = QueueConfig { capacity: 100, tenant_concurrency: 2, ..config() };
    let nodes = [connect_with(&redis.url, settings).await, connect_with(&redis.url, settings).await];
    let tenants = ["t", "u", "v"];
    for n in 0..12 {
        for tenant in tenants {
            nodes[n % 2].enqueue(job_of(tenant, &format!("{tenant}{n}"))).await.expect("enqueued");
        }
    }
    // Per tenant: (running now, most seen running at once); per job: runs.
    let running: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..6 {
        let queue = nodes[w % 2].clone();
        let (running, runs) = (running.clone(), runs.clone());
        workers.push(tokio::spawn(async move {
            while let Some(delivery) =
                queue.reserve(&format!("w{w}"), Duration::from_millis(200)).await.expect("reserve")
            {
                let tenant = delivery.job.tenant.to_string();
                {
                    let mut running = running.lock().expect("lock");
                    let (now, most) = running.entry(tenant.clone()).or_default();
                    *now += 1;
                    *most = (*most).max(*now);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.lock().expect("lock").entry(tenant).or_default().0 -= 1;
                *runs.lock().expect("lock").entry(delivery.job.id.0.clone()).or_default() += 1;
                queue.complete(&delivery, success(b"out")).await.expect("completed");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker finished");
    }
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), 36, "every job ran");
    assert!(runs.values().all(|&count| count == 1), "{runs:?}");
    for (tenant, (_, most)) in running.lock().expect("lock").iter() {
        assert!(*most <= 2, "{tenant} ran {most} at once");
    }
    assert_eq!(nodes[0].depth().await, Ok(0));
    assert_eq!(nodes[1].busy_tenants(10).await, Ok(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_listing_forgets_jobs_whose_records_expired() {
    let redis = spawn_redis();
    let ttl = Duration::from_secs(1);
    let queue = connect_with(&redis.url, QueueConfig { result_ttl: ttl, ..config() }).await;
    let mut con = raw(&redis.url).await;
    queue.enqueue(job_of("t", "done")).await.expect("enqueued");
    let delivery = queue.reserve("w", Duration::from_secs(1)).await.expect("reserve").expect("a job");
    queue.complete(&delivery, success(b"out")).await.expect("completed");
    queue.enqueue(job_of("t", "waiting")).await.expect("enqueued");
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;

    let page = queue.jobs(&"t".into(), &sluice_scheduler::JobFilter::default(), None, 10).await.expect("listed");
    let ids: Vec<&str> = page.jobs.iter().map(|job| job.id.as_str()).collect();
    assert_eq!((ids, page.cursor), (vec!["waiting"], None));
    let indexed: Vec<String> = con.zrange("sluice:index:t", 0, -1).await.expect("zrange");
    assert_eq!(indexed, ["waiting"], "the expired job left the index");
}

/// Writes job `id` the way the layout before per-tenant queues did: a hash
/// with the job as JSON (no body, none of the newer fields), its record and
/// status, and an entry in the `sluice:jobs` stream carrying the body
/// inline or naming the hash's copy.
async fn queue_the_older_way(con: &mut redis::aio::MultiplexedConnection, id: &str, body: &[u8], status: &str) {
    let full = job(id, body);
    let record = serde_json::to_string(&sluice_scheduler::JobRecord::queued(&full)).expect("record");
    let mut header =
        serde_json::to_value(Job { request: CallRequest { body: Vec::new(), ..full.request.clone() }, ..full })
            .expect("header");
    let fields = header.as_object_mut().expect("an object");
    fields.remove("kind");
    fields.remove("limits");
    let key = format!("sluice:job:{id}");
    let _: () = con
        .hset_multiple(&key, &[("job", header.to_string()), ("record", record), ("status", status.to_owned())])
        .await
        .expect("hset");
    let _: () = con.hset(&key, "deliveries", 1).await.expect("hset");
    let _: String = if body.len() > 8 {
        let _: () = con.hset(&key, "body", body).await.expect("hset");
        con.xadd("sluice:jobs", "*", &[("id", id.as_bytes())]).await.expect("xadd")
    } else {
        con.xadd("sluice:jobs", "*", &[("id", id.as_bytes()), ("body", body)]).await.expect("xadd")
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_an_older_release_queued_in_its_stream_are_moved_into_tenant_queues_and_run() {
    let redis = spawn_redis();
    let mut con = raw(&redis.url).await;
    let large: Vec<u8> = (0..(64 << 10)).map(|n: u32| (n % 251) as u8).collect();
    queue_the_older_way(&mut con, "waiting", b"tiny", "queued").await;
    queue_the_older_way(&mut con, "held", &large, "running").await;
    queue_the_older_way(&mut con, "ended", b"done", "succeeded").await;
    let _: String = con.xadd("sluice:jobs", "*", &[("id", "expired")]).await.expect("xadd");
    // What the older layout counted: both unfinished jobs, one of them waiting.
    let _: () = con.mset(&[("sluice:depth", 2), ("sluice:waiting", 1), ("sluice:active:t", 2)]).await.expect("mset");

    let queue = connect(&redis.url).await;
    let mut ran = Vec::new();
    for _ in 0..2 {
        let delivery = queue.reserve("w", Duration::from_secs(5)).await.expect("reserve").expect("a moved job");
        let expected = if delivery.job.id.0 == "held" { large.clone() } else { b"tiny".to_vec() };
        assert_eq!(delivery.job.request.body, expected, "{}", delivery.job.id);
        assert_eq!(delivery.job.request.params, [("width".to_owned(), "10".to_owned())]);
        queue.complete(&delivery, success(b"out")).await.expect("completed");
        ran.push(delivery.job.id.0.clone());
    }
    ran.sort();
    assert_eq!(ran, ["held", "waiting"]);
    assert_eq!(queue.reserve("w", Duration::ZERO).await, Ok(None), "nothing else was queued");
    let ended = queue.job(&JobId("ended".to_owned())).await.expect("read").expect("kept");
    assert_eq!(ended.status, JobStatus::Succeeded, "an ended job is left as it was");

    // The pass deletes the emptied stream after moving its last entry,
    // which may be after the moved jobs already ran.
    for _ in 0..100 {
        let stream_left: bool = con.exists("sluice:jobs").await.expect("exists");
        if !stream_left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = keys(&mut con).await;
    for gone in ["sluice:jobs", "sluice:depth", "sluice:waiting", "sluice:active:t"] {
        assert!(!left.iter().any(|k| k == gone), "{gone} is left: {left:?}");
    }
}
