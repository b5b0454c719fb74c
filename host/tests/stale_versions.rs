//! What a node holds of a version another node deleted: its compiled code
//! in memory and its artifact on disk are dropped by the next sweep, so a
//! worker that ran many tenants' versions does not keep them all forever.
//! Two in-process nodes share a real `redis-server`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::http::{deploy, invoke};
use common::{TestServer, guest, start_server_with};
use reqwest::{Method, StatusCode};
use sluice_testkit::spawn_redis;

/// The artifact files in `dir` whose names start with `digest_hex`.
fn artifacts_of(dir: &Path, digest_hex: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(digest_hex)).count()
        })
        .unwrap_or(0)
}

/// `sluice_loaded_functions` as `server` reports it.
async fn loaded(server: &TestServer) -> u64 {
    let text = server.request(Method::GET, "/metrics", &server.admin).send().await.expect("sent").text().await;
    let text = text.expect("text");
    let line = text.lines().find(|line| line.starts_with("sluice_loaded_functions ")).expect("the gauge");
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_deleted_through_one_node_is_dropped_from_the_worker_that_ran_it() {
    let redis = spawn_redis();
    let caches = [tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir")];
    let node = |cache: &Path, workers: usize| {
        let (url, cache) = (redis.url.clone(), cache.to_path_buf());
        start_server_with(move |c| {
            c.backend.redis_url = Some(url);
            c.workers = workers;
            c.platform.runtime.cache_dir = Some(cache);
            // Artifacts settle after the compile timeout plus two seconds.
            c.platform.compile_timeout = Duration::from_millis(500);
            c.platform.stale_sweep_every = Duration::from_millis(200);
        })
    };
    let front_door = node(caches[0].path(), 0).await;
    let worker = node(caches[1].path(), 1).await;
    let key = front_door.tenant("acme").await;
    let component = guest("sluice_fixture_hostile");
    let digest_hex = sluice::runtime::version_of(&component).trim_start_matches("sha256:").to_owned();
    assert_eq!(deploy(&front_door, &key, "hostile", component).await.status(), StatusCode::CREATED);
    let before = loaded(&worker).await;

    // Only the worker node runs jobs, so it compiles the version too.
    let response = invoke(&front_door, &key, "/v1/functions/hostile/invoke?act=echo", b"hi".to_vec()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(artifacts_of(caches[1].path(), &digest_hex), 1, "the worker cached its compiled code");
    assert_eq!(loaded(&worker).await, before + 1);

    let deleted = front_door.request(Method::DELETE, "/v1/functions/hostile", &key).send().await.expect("sent");
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(artifacts_of(caches[0].path(), &digest_hex), 0, "the deleting node drops its own at once");
    let started = Instant::now();
    while artifacts_of(caches[1].path(), &digest_hex) > 0 || loaded(&worker).await > before {
        assert!(started.elapsed() < Duration::from_secs(10), "the worker still holds the deleted version");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What is still deployed stays: the built-ins answer as before.
    let response =
        invoke(&front_door, &key, "/v1/functions/resize/invoke?width=8", common::photo("jpg-size-1x1.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(loaded(&worker).await, before, "built-ins are never dropped");
}
