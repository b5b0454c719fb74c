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
use sluice::platform::PlatformConfig;
use sluice::server::{self, ServeConfig};
use sluice_bench::Recorder;
use sluice_scheduler::redis_server::spawn_redis;

/// A node on a free loopback port; returns its URL and a tenant key.
async fn start(redis_url: Option<String>, data_dir: &std::path::Path) -> (String, String) {
    let mut platform = PlatformConfig::new(data_dir.to_path_buf());
    platform.runtime.cache_dir =
        Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-artifacts"));
    // The bench measures latency, not the per-tenant rate limit.
    platform.rate_per_second = 1_000_000;
    platform.rate_burst = 1_000_000;
    let mut config = ServeConfig::new(platform);
    config.workers = 2;
    config.admin_token = Some("bench-admin".to_owned());
    config.redis_url = redis_url;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (ready, started) = tokio::sync::oneshot::channel();
    tokio::spawn(server::run(listener, config, std::future::pending(), move |_| {
        let _ = ready.send(());
    }));
    started.await.expect("the node starts");
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v1/tenants"))
        .bearer_auth("bench-admin")
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    (url, created["api_key"].as_str().expect("key").to_owned())
}

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
    let embedded = tokio.block_on(start(None, embedded_dir.path()));
    let shared = tokio.block_on(start(Some(redis.url.clone()), redis_dir.path()));
    let client = reqwest::Client::new();
    let photo = sluice_bench::photo("peacock.progressive.jpeg");

    let mut group = criterion.benchmark_group("sync_invoke_tiny_resize");
    for (mode, (url, key)) in [("embedded", &embedded), ("redis", &shared)] {
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
