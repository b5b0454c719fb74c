//! What the Redis queue adds per job, and how many tiny jobs one Redis moves.
//!
//! - `round_trip`: one job at a time through enqueue → reserve → start →
//!   complete → the caller's `wait` returning, on the in-memory queue and on
//!   a local `redis-server` (AOF, `appendfsync everysec`); prints the added
//!   ms per job at p50.
//! - `payload`: the same round trip on Redis with a 256 B, 64 KiB and 1 MiB
//!   request body; prints each size's p50.
//! - `throughput`: 20 000 tiny jobs through Redis from 4 producers to 8
//!   concurrent workers; prints jobs per second.
//!
//! Run: `cargo bench -p sluice-bench --bench queue` (needs `redis-server`).

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use sluice_bench::Recorder;
use sluice_bench::queue_load::{self, done, job_of};
use sluice_scheduler::Queue;
use sluice_testkit::spawn_redis;

/// One job through the whole queue protocol, as a sync call sees it.
async fn round_trip(queue: &Arc<dyn Queue>, size: usize) {
    let job = job_of(size);
    let id = job.id.clone();
    queue.enqueue(job).await.expect("enqueue");
    let worker = {
        let queue = Arc::clone(queue);
        tokio::spawn(async move {
            let delivery = queue.reserve("bench", Duration::from_secs(5)).await.expect("reserve").expect("a job");
            queue.start(&delivery).await.expect("start");
            queue.complete(&delivery, done()).await.expect("complete");
        })
    };
    let record = queue.wait(&id, Duration::from_secs(5)).await.expect("wait").expect("record");
    assert!(record.status.is_final());
    worker.await.expect("worker");
}

fn main() {
    let recorder = Recorder::default();
    let mut criterion = Criterion::default().configure_from_args();
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let redis = spawn_redis();
    let config = queue_load::unthrottled_config();
    let memory = tokio.block_on(sluice_scheduler::connect("memory:", config, "")).expect("memory queue");
    let redis_queue = tokio
        .block_on(sluice_scheduler::connect(&redis.url, config, sluice_scheduler::DEFAULT_PREFIX))
        .expect("redis queue");

    let mut group = criterion.benchmark_group("queue_round_trip");
    for (name, queue) in [("memory", &memory), ("redis", &redis_queue)] {
        group.bench_function(BenchmarkId::new("tiny_job", name), |b| {
            b.iter_custom(|iters| recorder.time(name, iters, || tokio.block_on(round_trip(queue, 256))));
        });
    }
    group.finish();

    let sizes = [256, 64 * 1024, 1024 * 1024];
    let mut group = criterion.benchmark_group("queue_payload");
    for size in sizes {
        let label = format!("redis/{size}");
        group.bench_function(BenchmarkId::new("redis", size), |b| {
            b.iter_custom(|iters| recorder.time(&label, iters, || tokio.block_on(round_trip(&redis_queue, size))));
        });
    }
    group.finish();
    criterion.final_summary();

    let jobs = if std::env::args().any(|a| a == "--test") { 50 } else { 20_000 };
    let moved = tokio
        .block_on(queue_load::tiny_jobs(&redis_queue, jobs, 4, 8, Duration::from_secs(120)))
        .expect("tiny jobs through redis");

    let (memory_ns, redis_ns) = (recorder.median_ns("memory"), recorder.median_ns("redis"));
    println!("\nQueue round trip per tiny job (p50 of sample means):");
    println!(
        "  memory {:.3} ms, redis {:.3} ms, added {:.3} ms (goal ≤ 0.5)",
        memory_ns / 1e6,
        redis_ns / 1e6,
        (redis_ns - memory_ns) / 1e6
    );
    println!("Redis round trip by request body size (p50):");
    for size in sizes {
        println!("  {size:>8} B: {:.3} ms", recorder.median_ns(&format!("redis/{size}")) / 1e6);
    }
    println!(
        "Tiny jobs through one Redis, {} producers, {} workers: {jobs} in {:.2} s = {:.0} jobs/s (goal ≥ 25000)",
        moved.producers,
        moved.workers,
        moved.elapsed.as_secs_f64(),
        moved.per_second()
    );
}
