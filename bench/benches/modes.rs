//! What Redis mode adds per job over the embedded mode, end to end: the
//! same sync HTTP invoke (built-in `resize`, a 2 KB JPEG → 50 px) against
//! two in-process front doors with two local worker slots each, one on the
//! in-memory queue and data dir, one on a local `redis-server` (AOF,
//! `appendfsync everysec`) for queue and state. Prints the p50 of each and
//! the difference.
//!
//! Run: `cargo bench -p sluice-bench --bench modes` (needs `redis-server`).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use sluice_bench::Recorder;
use sluice_bench::report::scenarios::start_node;
use sluice_testkit::spawn_redis;

async fn invoke(client: &reqwest::Client, url: &str, key: &str, photo: &[u8]) {
    let response = client
        .post(format!("{url}/v1/functions/resize/invoke?width=50"))
        .bearer_auth(key)
        .body(photo.to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
}

fn main() {
    let recorder = Recorder::default();
    let mut criterion = Criterion::default().measurement_time(Duration::from_secs(4)).configure_from_args();
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let redis = spawn_redis();
    let (embedded_dir, redis_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let embedded = tokio.block_on(start_node(None, 2, embedded_dir.path())).expect("embedded node");
    let shared = tokio.block_on(start_node(Some(&redis.url), 2, redis_dir.path())).expect("Redis-mode node");
    let client = reqwest::Client::new();
    let photo = sluice_bench::photo("peacock.progressive.jpeg");

    let mut group = criterion.benchmark_group("sync_invoke_tiny_resize");
    for (mode, (url, key, _)) in [("embedded", &embedded), ("redis", &shared)] {
        group.bench_function(BenchmarkId::new("mode", mode), |b| {
            b.iter_custom(|iters| recorder.time(mode, iters, || tokio.block_on(invoke(&client, url, key, &photo))));
        });
    }
    group.finish();
    criterion.final_summary();

    let (embedded_ns, redis_ns) = (recorder.median_ns("embedded"), recorder.median_ns("redis"));
    println!("\nSync invoke over HTTP, tiny resize (p50 of sample means):");
    println!(
        "  embedded {:.3} ms, redis {:.3} ms, added by Redis mode {:.3} ms per job (goal ≤ 0.5)",
        embedded_ns / 1e6,
        redis_ns / 1e6,
        (redis_ns - embedded_ns) / 1e6
    );
}
