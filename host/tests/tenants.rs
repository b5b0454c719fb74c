//! The admin's tenant lifecycle over real HTTP on 127.0.0.1: listing,
//! key rotation and revocation, limits, and deletion. One scenario per test.

mod common;

use std::time::Duration;

use common::http::{deploy, error_of, invoke, wait_for_job, wait_for_status};
use common::{TestServer, guest, photo, start_server, start_server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An admin request to `path` with an optional JSON body.
async fn admin(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = server.request(method, path, &server.admin);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("sent")
}

/// An admin request that must answer `expected`; returns its JSON body.
async fn admin_ok(server: &TestServer, method: Method, path: &str, body: Option<Value>, expected: u16) -> Value {
    let response = admin(server, method.clone(), path, body).await;
    assert_eq!(response.status().as_u16(), expected, "{method} {path}");
    response.json().await.expect("json")
}

/// The status of a one-pixel resize called with `key`.
async fn tiny_resize(server: &TestServer, key: &str) -> StatusCode {
    invoke(server, key, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_admin_route_refuses_a_tenants_own_key() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let routes = [
        (Method::GET, "/v1/tenants"),
        (Method::GET, "/v1/tenants/acme"),
        (Method::DELETE, "/v1/tenants/acme"),
        (Method::POST, "/v1/tenants/acme/keys"),
        (Method::DELETE, "/v1/tenants/acme/keys/k_000000000000"),
        (Method::PUT, "/v1/tenants/acme/limits"),
        (Method::GET, "/v1/tenants/acme/usage"),
    ];
    for (method, path) in routes {
        let response = server.request(method.clone(), path, &key).json(&json!({})).send().await.expect("sent");
        let (status, code, _) = error_of(response).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"), "{method} {path}");
    }
    assert_eq!(tiny_resize(&server, &key).await, StatusCode::OK, "the tenant was left as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_listed_a_page_at_a_time_in_name_order_and_read_by_name() {
    let server = start_server().await;
    for name in ["carol", "alice", "bob"] {
        server.tenant(name).await;
    }
    let first = admin_ok(&server, Method::GET, "/v1/tenants?limit=2", None, 200).await;
    let names: Vec<&str> =
        first["tenants"].as_array().expect("tenants").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(first["next_cursor"], "bob");
    let second = admin_ok(&server, Method::GET, "/v1/tenants?limit=2&cursor=bob", None, 200).await;
    assert_eq!(second["tenants"].as_array().map(Vec::len), Some(1));
    assert_eq!((second["tenants"][0]["name"].as_str(), &second["next_cursor"]), (Some("carol"), &Value::Null));

    let alice = admin_ok(&server, Method::GET, "/v1/tenants/alice", None, 200).await;
    assert!(alice["id"].as_str().is_some_and(|id| id.starts_with("t_")), "{alice}");
    assert_eq!(alice["limits"], json!({}));
    let keys = alice["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{alice}");
    assert!(keys[0]["id"].as_str().is_some_and(|id| id.starts_with("k_")), "{alice}");
    assert!(keys[0].get("expires_at").is_none(), "the current key does not expire: {alice}");
    assert!(!alice.to_string().contains("sk_"), "no key is ever shown again: {alice}");

    let (status, code, message) = error_of(admin(&server, Method::GET, "/v1/tenants/nobody", None).await).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (StatusCode::NOT_FOUND, "not_found", "no tenant is named \"nobody\"")
    );
    let (status, code, _) = error_of(admin(&server, Method::GET, "/v1/tenants?limit=0", None).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_out_key_works_through_its_grace_period_then_is_refused() {
    let server = start_server().await;
    let old = server.tenant("acme").await;
    let rotated =
        admin_ok(&server, Method::POST, "/v1/tenants/acme/keys", Some(json!({ "grace_seconds": 1 })), 201).await;
    let new = rotated["api_key"].as_str().expect("api_key").to_owned();
    assert_ne!(new, old);
    let keys = rotated["tenant"]["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{rotated}");
    assert!(keys[0]["expires_at"].is_string(), "the old key carries its end: {rotated}");
    assert_eq!((keys[1]["id"].as_str(), keys[1].get("expires_at")), (rotated["key_id"].as_str(), None));

    assert_eq!(tiny_resize(&server, &old).await, StatusCode::OK, "the old key works during the grace period");
    assert_eq!(tiny_resize(&server, &new).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(tiny_resize(&server, &old).await, StatusCode::UNAUTHORIZED, "the grace period is over");
    assert_eq!(tiny_resize(&server, &new).await, StatusCode::OK);
    let acme = admin_ok(&server, Method::GET, "/v1/tenants/acme", None, 200).await;
    assert_eq!(acme["keys"].as_array().map(Vec::len), Some(1), "the expired key is no longer listed: {acme}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once_and_the_others_keep_working() {
    let server = start_server().await;
    let old = server.tenant("acme").await;
    let rotated =
        admin_ok(&server, Method::POST, "/v1/tenants/acme/keys", Some(json!({ "grace_seconds": 3600 })), 201).await;
    let new = rotated["api_key"].as_str().expect("api_key").to_owned();
    let old_id = rotated["tenant"]["keys"][0]["id"].as_str().expect("old key id").to_owned();
    assert_eq!(tiny_resize(&server, &old).await, StatusCode::OK);

    let after = admin_ok(&server, Method::DELETE, &format!("/v1/tenants/acme/keys/{old_id}"), None, 200).await;
    assert_eq!(after["keys"].as_array().map(Vec::len), Some(1), "{after}");
    assert_eq!(tiny_resize(&server, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tiny_resize(&server, &new).await, StatusCode::OK);

    let (status, code, message) =
        error_of(admin(&server, Method::DELETE, &format!("/v1/tenants/acme/keys/{old_id}"), None).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(message, format!("tenant \"acme\" has no key \"{old_id}\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_past_the_key_limit_or_the_longest_grace_are_refused() {
    let server = start_server().await;
    server.tenant("acme").await;
    let (status, code, message) = error_of(
        admin(&server, Method::POST, "/v1/tenants/acme/keys", Some(json!({ "grace_seconds": 2_592_001 }))).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(message, "a grace period is at most 2592000s, got 2592001s");
    for _ in 0..9 {
        admin_ok(&server, Method::POST, "/v1/tenants/acme/keys", Some(json!({})), 201).await;
    }
    let (status, code, message) =
        error_of(admin(&server, Method::POST, "/v1/tenants/acme/keys", Some(json!({}))).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    assert_eq!(message, "tenant \"acme\" already holds 10 keys; revoke one, or let one expire, first");
    let (status, _, _) = error_of(admin(&server, Method::POST, "/v1/tenants/nobody/keys", Some(json!({}))).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_removes_its_keys_functions_jobs_and_results_but_keeps_its_usage() {
    let server = start_server_with(|c| c.platform.runtime.timeout = Duration::from_millis(1500)).await;
    let key = server.tenant("acme").await;
    assert_eq!(deploy(&server, &key, "hostile", guest("sluice_fixture_hostile")).await.status(), StatusCode::CREATED);
    let response = invoke(&server, &key, "/v1/functions/hostile/invoke?act=echo", b"done".to_vec()).await;
    let finished = response.headers()["sluice-job-id"].to_str().expect("ascii").to_owned();
    // One running job holds the tenant's only slot, so the next two wait.
    admin_ok(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "running": 1 })), 200).await;
    let sleeper = submit(&server, &key, "/v1/functions/hostile/jobs?act=sleep").await;
    wait_for_status(&server, &key, &sleeper, "running").await;
    let queued = [
        submit(&server, &key, "/v1/functions/hostile/jobs?act=echo").await,
        submit(&server, &key, "/v1/functions/hostile/jobs?act=echo").await,
    ];
    let id = admin_ok(&server, Method::GET, "/v1/tenants/acme", None, 200).await["id"].as_str().expect("id").to_owned();

    let deleted = admin_ok(&server, Method::DELETE, "/v1/tenants/acme", None, 200).await;
    assert_eq!((deleted["id"].as_str(), deleted["name"].as_str()), (Some(id.as_str()), Some("acme")));
    assert_eq!(deleted["functions"], 1);
    assert!(deleted["jobs"].as_u64().is_some_and(|jobs| jobs >= 3), "the finished and queued jobs went: {deleted}");
    assert_eq!(tiny_resize(&server, &key).await, StatusCode::UNAUTHORIZED, "its key stopped working");
    assert_eq!(admin(&server, Method::GET, "/v1/tenants/acme", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(admin(&server, Method::DELETE, "/v1/tenants/acme", None).await.status(), StatusCode::NOT_FOUND);

    // The name is free again, and nothing of the old tenant shows through it.
    let reborn = server.tenant("acme").await;
    let functions = server.get_json("/v1/functions", &reborn).await;
    assert!(!functions.to_string().contains("hostile"), "{functions}");
    for job in queued.iter().chain([&finished, &sleeper]) {
        let response = server.request(Method::GET, &format!("/v1/jobs/{job}"), &reborn).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "job {job}");
    }
    // The running job ends on its deadline; nothing of it is kept either.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let listed = server.get_json("/v1/jobs", &reborn).await;
    assert_eq!(listed["jobs"], json!([]), "{listed}");

    let usage = admin_ok(&server, Method::GET, &format!("/v1/tenants/{id}/usage"), None, 200).await;
    assert_eq!(usage["tenant"], id.as_str(), "{usage}");
    let hostile = usage["functions"].as_array().expect("functions").iter().find(|f| f["function"] == "hostile");
    let calls = hostile.and_then(|f| f["invocations"].as_u64());
    assert!(calls.is_some_and(|calls| calls >= 1), "the call that ran is still billable: {usage}");
    let fresh = admin_ok(&server, Method::GET, "/v1/tenants/acme/usage", None, 200).await;
    assert_eq!(fresh["functions"], json!([]), "the new acme starts with no usage: {fresh}");
}

/// Submits an async job to `path_and_query`; returns its id.
async fn submit(server: &TestServer, key: &str, path_and_query: &str) -> String {
    let response = invoke(server, key, path_and_query, Vec::new()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{path_and_query}");
    let accepted: Value = response.json().await.expect("json");
    accepted["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_rate_and_burst_apply_to_it_alone() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let other = server.tenant("other").await;
    let set = json!({ "rate_per_second": 1, "burst": 1 });
    let view = admin_ok(&server, Method::PUT, "/v1/tenants/acme/limits", Some(set.clone()), 200).await;
    assert_eq!(view["limits"], set);
    assert_eq!(tiny_resize(&server, &key).await, StatusCode::OK);
    let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    for _ in 0..3 {
        assert_eq!(tiny_resize(&server, &other).await, StatusCode::OK, "the node's own rate still applies to others");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_queue_quota_refuses_its_next_job_with_429() {
    let server = start_server_with(|c| c.workers = 0).await;
    let key = server.tenant("acme").await;
    admin_ok(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "queued": 2 })), 200).await;
    for _ in 0..2 {
        submit(&server, &key, "/v1/functions/resize/jobs?width=8").await;
    }
    let (status, code, message) =
        error_of(invoke(&server, &key, "/v1/functions/resize/jobs?width=8", Vec::new()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "queue_quota"));
    assert_eq!(message, "this tenant already has 2 jobs waiting; wait for some to finish");
    let queue = server.get_json("/v1/queue", &key).await;
    assert_eq!(queue["quota"]["queued_jobs"], 2, "the queue view shows the tenant's own quota: {queue}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_time_ceiling_ends_its_calls_and_not_others() {
    let server = start_server_with(|c| c.platform.runtime.timeout = Duration::from_secs(3)).await;
    let key = server.tenant("acme").await;
    let other = server.tenant("other").await;
    for tenant in [&key, &other] {
        deploy(&server, tenant, "hostile", guest("sluice_fixture_hostile")).await;
    }
    admin_ok(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "timeout_ms": 200 })), 200).await;
    let started = std::time::Instant::now();
    let (status, code, _) =
        error_of(invoke(&server, &key, "/v1/functions/hostile/invoke?act=loop", Vec::new()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::GATEWAY_TIMEOUT, "timeout"));
    assert!(started.elapsed() < Duration::from_secs(2), "stopped by the tenant's 200 ms, not the node's 3 s");
    let job = submit(&server, &other, "/v1/functions/hostile/jobs?act=loop").await;
    let ended = wait_for_job(&server, &other, &job).await;
    assert_eq!(ended["error"]["code"], "timeout");
    let ran_for = ended["attempts"][0]["wall_us"].as_u64().expect("wall_us");
    assert!(ran_for >= 2_900_000, "another tenant keeps the node's 3 s: {ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_memory_ceiling_fails_its_calls_and_not_others() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let other = server.tenant("other").await;
    for tenant in [&key, &other] {
        deploy(&server, tenant, "hostile", guest("sluice_fixture_hostile")).await;
    }
    admin_ok(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "memory_mb": 4 })), 200).await;
    let eight_mib = "/v1/functions/hostile/invoke?act=huge-output&bytes=8388608";
    let (status, code, _) = error_of(invoke(&server, &key, eight_mib, Vec::new()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "memory_limit"));
    let response = invoke(&server, &other, eight_mib, Vec::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("body").len(), 8 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_out_of_range_or_unknown_are_refused_and_nothing_changes() {
    let server = start_server().await;
    server.tenant("acme").await;
    let (status, code, message) =
        error_of(admin(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "memory_mb": 0 }))).await).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request", "`memory_mb` must be between 1 and 65536")
    );
    let (status, code, _) =
        error_of(admin(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "cpu": 3 }))).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (status, _, message) = error_of(admin(&server, Method::PUT, "/v1/tenants/acme/limits", None).await).await;
    assert_eq!((status, message.as_str()), (StatusCode::BAD_REQUEST, "this request needs a JSON body"));
    let (status, _, message) =
        error_of(admin(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!([4, 2]))).await).await;
    assert_eq!((status, message.as_str()), (StatusCode::BAD_REQUEST, "a JSON body must be an object"));
    let acme = admin_ok(&server, Method::GET, "/v1/tenants/acme", None, 200).await;
    assert_eq!(acme["limits"], json!({}));
    // JSON has one number type: a whole number written as a float is one.
    let acme = admin_ok(&server, Method::PUT, "/v1/tenants/acme/limits", Some(json!({ "running": 4.0 })), 200).await;
    assert_eq!(acme["limits"], json!({ "running": 4 }));
    let (status, _, _) =
        error_of(admin(&server, Method::PUT, "/v1/tenants/nobody/limits", Some(json!({}))).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Runs `sluice tenant <args>` against `server` with its admin token.
async fn admin_cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    let all = [&["tenant", "--admin-token", server.admin.as_str()][..], args].concat();
    server.cli("", &all).await
}

/// The JSON a successful CLI command printed.
fn printed(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the CLI prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_rotates_revokes_limits_reports_and_deletes_tenants() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    server.tenant("bravo").await;
    let admin = |args: &'static [&'static str]| admin_cli(&server, args);

    let page = printed(&admin(&["list", "--limit", "1"]).await);
    assert_eq!((page["tenants"][0]["name"].as_str(), page["next_cursor"].as_str()), (Some("acme"), Some("acme")));
    let rotated = printed(&admin(&["rotate-key", "acme", "--grace-seconds", "600"]).await);
    let new = rotated["api_key"].as_str().expect("api_key").to_owned();
    let old_id = rotated["tenant"]["keys"][0]["id"].as_str().expect("old key id").to_owned();
    printed(&admin_cli(&server, &["revoke-key", "acme", &old_id]).await);
    assert_eq!(tiny_resize(&server, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tiny_resize(&server, &new).await, StatusCode::OK);

    let limited = printed(&admin(&["limits", "acme", "--running", "2", "--memory-mb", "64"]).await);
    assert_eq!(limited["limits"], json!({ "running": 2, "memory_mb": 64 }));
    let merged = printed(&admin(&["limits", "acme", "--timeout-ms", "5000"]).await);
    assert_eq!(merged["limits"], json!({ "running": 2, "memory_mb": 64, "timeout_ms": 5000 }), "the others stay");
    let shown = printed(&admin(&["limits", "acme"]).await);
    assert_eq!(shown["limits"], merged["limits"]);
    let reset = printed(&admin(&["limits", "acme", "--reset"]).await);
    assert_eq!(reset["limits"], json!({}));
    let refused = admin(&["limits", "acme", "--memory-mb", "0"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.starts_with("sluice: invalid_request: `memory_mb` must be between 1 and 65536 (HTTP 400"), "{said}");

    let usage = printed(&admin(&["usage", "acme"]).await);
    assert_eq!(usage["functions"][0]["invocations"], 1, "{usage}");
    let unconfirmed = admin(&["delete", "acme"]).await;
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("pass --yes to confirm"), "{unconfirmed:?}");
    assert_eq!(tiny_resize(&server, &new).await, StatusCode::OK, "nothing was deleted without --yes");
    let deleted = printed(&admin(&["delete", "acme", "--yes"]).await);
    assert_eq!(deleted["name"], "acme");
    let usage = printed(&admin_cli(&server, &["usage", deleted["id"].as_str().expect("id")]).await);
    assert_eq!(usage["functions"][0]["invocations"], 2, "usage outlives the tenant: {usage}");

    let tokenless = server.cli("", &["tenant", "list"]).await;
    assert_eq!(tokenless.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&tokenless.stderr).trim(),
        "sluice: no admin token: set SLUICE_ADMIN_TOKEN or pass --admin-token"
    );
}
