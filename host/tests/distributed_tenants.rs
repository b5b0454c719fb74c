//! The admin's tenant changes across front doors sharing a real
//! `redis-server`: a change made through one door holds on every other
//! within a second, whatever the other had cached.

mod common;

use std::time::{Duration, Instant};

use common::create_tenant;
use common::processes::{ADMIN, SluiceProcess, wait_for_workers};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sluice_testkit::spawn_redis;

/// How soon every node must follow a change made on another.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A request to `door` with `token` as bearer token and an optional JSON body.
async fn send(door: &SluiceProcess, method: Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let request = Client::new().request(method, format!("{}{path}", door.url)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("sent")
}

/// An admin request that must answer `expected`; returns its JSON body.
async fn admin(door: &SluiceProcess, method: Method, path: &str, body: Option<Value>, expected: u16) -> Value {
    let response = send(door, method.clone(), path, ADMIN, body).await;
    assert_eq!(response.status().as_u16(), expected, "{method} {path}");
    response.json().await.expect("json")
}

/// The status `door` answers `key` for listing its functions.
async fn key_status(door: &SluiceProcess, key: &str) -> StatusCode {
    send(door, Method::GET, "/v1/functions", key, None).await.status()
}

/// Polls until `door` answers `key` with `expected`; returns how long that took.
async fn time_until_status(door: &SluiceProcess, key: &str, expected: StatusCode) -> Duration {
    let started = Instant::now();
    while key_status(door, key).await != expected {
        assert!(started.elapsed() < Duration::from_secs(5), "{} never answered {expected}", door.url);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Submits an async job through `door`; returns its id.
async fn submit(door: &SluiceProcess, key: &str, path_and_query: &str) -> String {
    let response = send(door, Method::POST, path_and_query, key, None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{path_and_query}");
    let accepted: Value = response.json().await.expect("json");
    accepted["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_front_door_is_refused_by_the_other_within_a_second() {
    let redis = spawn_redis();
    let doors = [SluiceProcess::front_door(&redis.url, &[]), SluiceProcess::front_door(&redis.url, &[])];
    let old = create_tenant(&doors[0].url, ADMIN, "acme").await;
    let rotated =
        admin(&doors[0], Method::POST, "/v1/tenants/acme/keys", Some(json!({ "grace_seconds": 3600 })), 201).await;
    let new = rotated["api_key"].as_str().expect("api_key").to_owned();
    let old_id = rotated["tenant"]["keys"][0]["id"].as_str().expect("old key id").to_owned();
    // The other door has just authenticated the old key, so it has it cached.
    assert_eq!(key_status(&doors[1], &old).await, StatusCode::OK);

    admin(&doors[0], Method::DELETE, &format!("/v1/tenants/acme/keys/{old_id}"), None, 200).await;
    let took = time_until_status(&doors[1], &old, StatusCode::UNAUTHORIZED).await;
    assert!(took < PROPAGATION, "the other door kept the revoked key for {took:?}");
    assert_eq!(key_status(&doors[0], &old).await, StatusCode::UNAUTHORIZED);
    for door in &doors {
        assert_eq!(key_status(door, &new).await, StatusCode::OK, "the new key works on {}", door.url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_without_grace_through_one_front_door_ends_on_the_other_within_a_second() {
    let redis = spawn_redis();
    let doors = [SluiceProcess::front_door(&redis.url, &[]), SluiceProcess::front_door(&redis.url, &[])];
    let old = create_tenant(&doors[0].url, ADMIN, "acme").await;
    assert_eq!(key_status(&doors[1], &old).await, StatusCode::OK);

    let rotated =
        admin(&doors[0], Method::POST, "/v1/tenants/acme/keys", Some(json!({ "grace_seconds": 0 })), 201).await;
    let took = time_until_status(&doors[1], &old, StatusCode::UNAUTHORIZED).await;
    assert!(took < PROPAGATION, "the other door kept the replaced key for {took:?}");
    let new = rotated["api_key"].as_str().expect("api_key");
    assert_eq!(key_status(&doors[1], new).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_through_one_front_door_hold_on_the_other() {
    let redis = spawn_redis();
    let doors = [SluiceProcess::front_door(&redis.url, &[]), SluiceProcess::front_door(&redis.url, &[])];
    let key = create_tenant(&doors[0].url, ADMIN, "acme").await;
    // No worker runs, so accepted jobs stay queued.
    submit(&doors[1], &key, "/v1/functions/resize/jobs?width=8").await;

    admin(&doors[0], Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "queued": 2 })), 200).await;
    let started = Instant::now();
    submit(&doors[1], &key, "/v1/functions/resize/jobs?width=8").await;
    let response = send(&doors[1], Method::POST, "/v1/functions/resize/jobs?width=8", &key, None).await;
    let (status, code, message) = common::http::error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "queue_quota"));
    assert_eq!(message, "this tenant already has 2 jobs waiting; wait for some to finish");
    assert!(started.elapsed() < PROPAGATION + Duration::from_secs(1));
    let queue: Value = send(&doors[1], Method::GET, "/v1/queue", &key, None).await.json().await.expect("json");
    assert_eq!((queue["queued"].as_u64(), queue["quota"]["queued_jobs"].as_u64()), (Some(2), Some(2)), "{queue}");

    // Limits are replaced whole: the queue quota is the node's again.
    admin(&doors[1], Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "rate_per_second": 1, "burst": 1 })), 200)
        .await;
    tokio::time::sleep(PROPAGATION).await;
    submit(&doors[0], &key, "/v1/functions/resize/jobs?width=8").await;
    let response = send(&doors[0], Method::POST, "/v1/functions/resize/jobs?width=8", &key, None).await;
    let (status, code, _) = common::http::error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "the rate holds on the other door"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deleted_through_one_front_door_is_gone_from_every_node_and_its_usage_stays() {
    let redis = spawn_redis();
    let doors = [SluiceProcess::front_door(&redis.url, &[]), SluiceProcess::front_door(&redis.url, &[])];
    let _worker = SluiceProcess::worker(&redis.url, "w1", &["--concurrency", "2", "--timeout-ms", "1500"]);
    wait_for_workers(&doors[0], 1).await;
    let key = create_tenant(&doors[1].url, ADMIN, "acme").await;
    let deployed = common::http::deploy(&doors[1], &key, "hostile", common::guest("sluice_fixture_hostile")).await;
    assert_eq!(deployed.status(), StatusCode::CREATED);
    let finished = submit(&doors[1], &key, "/v1/functions/hostile/jobs?act=echo").await;
    common::http::wait_for_job(&doors[1], &key, &finished).await;
    admin(&doors[0], Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "running": 1 })), 200).await;
    tokio::time::sleep(PROPAGATION).await;
    let sleeper = submit(&doors[1], &key, "/v1/functions/hostile/jobs?act=sleep").await;
    let queued = submit(&doors[1], &key, "/v1/functions/hostile/jobs?act=echo").await;
    let id = admin(&doors[0], Method::GET, "/v1/tenants/acme", None, 200).await["id"].as_str().expect("id").to_owned();

    let deleted = admin(&doors[0], Method::DELETE, "/v1/tenants/acme", None, 200).await;
    assert_eq!((deleted["functions"].as_u64(), deleted["jobs"].as_u64()), (Some(1), Some(3)), "{deleted}");
    let took = time_until_status(&doors[1], &key, StatusCode::UNAUTHORIZED).await;
    assert!(took < PROPAGATION, "the other door kept the deleted tenant's key for {took:?}");

    // Nothing of its jobs or results is left in Redis once the running one
    // has met its deadline; only its usage (and the expiring markers that
    // bill each attempt once) stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = redis::Client::open(redis.url.as_str()).expect("url");
    let mut con = client.get_multiplexed_async_connection().await.expect("connects");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.expect("keys");
    let kept: Vec<&String> = keys.iter().filter(|k| !k.starts_with("sluice:usage:")).collect();
    for job in [&finished, &sleeper, &queued] {
        assert!(!kept.iter().any(|k| k.contains(job.as_str())), "job {job} is still in Redis: {kept:?}");
    }
    assert!(!kept.iter().any(|k| k.contains(&id)), "the deleted tenant is still in Redis: {kept:?}");

    let reborn = create_tenant(&doors[1].url, ADMIN, "acme").await;
    let functions: Value =
        send(&doors[0], Method::GET, "/v1/functions", &reborn, None).await.json().await.expect("json");
    assert!(!functions.to_string().contains("hostile"), "{functions}");
    let usage = admin(&doors[1], Method::GET, &format!("/v1/tenants/{id}/usage"), None, 200).await;
    let hostile =
        usage["functions"].as_array().expect("functions").iter().find(|f| f["function"] == "hostile").cloned();
    let calls = hostile.as_ref().and_then(|f| f["invocations"].as_u64());
    assert!(calls.is_some_and(|calls| calls >= 2), "the echo and the sleeper that ran stay billable: {usage}");
}
