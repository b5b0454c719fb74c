//! Function logs: what a job's function printed, for its owner, over the
//! API (`GET /v1/jobs/{id}/logs`, inline in a small job's status) and the
//! CLI (`sluice logs`, `sluice invoke --logs`).

mod common;

use common::http::{deploy, error_of, invoke, wait_for_job};
use common::{TestServer, guest, start_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The panic message the hostile fixture's `panic` act prints on stderr.
const PANIC: &str = "hostile fixture panics on purpose";

/// Per-stream cap on what a call's log keeps (the runtime's default).
const LOG_CAP: usize = 64 * 1024;

/// A server with tenant `acme` owning the hostile fixture as `hostile`.
async fn server_with_hostile() -> (TestServer, String) {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    assert_eq!(deploy(&server, &key, "hostile", guest("sluice_fixture_hostile")).await.status(), StatusCode::CREATED);
    (server, key)
}

/// Calls the hostile fixture's `act` synchronously; returns the status and the job id.
async fn call(server: &TestServer, key: &str, act: &str) -> (StatusCode, String) {
    let response = invoke(server, key, &format!("/v1/functions/hostile/invoke?act={act}"), Vec::new()).await;
    let id = response.headers()["sluice-job-id"].to_str().expect("ascii").to_owned();
    (response.status(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_calls_logs_say_why_to_its_owner_only() {
    let (server, key) = server_with_hostile().await;
    let (status, id) = call(&server, &key, "panic").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let logs = server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await;
    assert_eq!((&logs["stdout"], &logs["truncated"]), (&json!(""), &json!(false)));
    let stderr = logs["stderr"].as_str().expect("stderr");
    assert!(stderr.contains(PANIC), "{stderr}");
    let status = server.get_json(&format!("/v1/jobs/{id}"), &key).await;
    assert_eq!(status["logs"], logs, "a small log is in the job's status too");

    let other = server.tenant("other").await;
    let response = server.request(Method::GET, &format!("/v1/jobs/{id}/logs"), &other).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str(), message), (StatusCode::NOT_FOUND, "not_found", format!("no job {id}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_kept_to_the_cap_marked_truncated_and_left_out_of_the_status() {
    let (server, key) = server_with_hostile().await;
    let response = invoke(&server, &key, "/v1/functions/hostile/jobs?act=stdout-flood&mib=1", Vec::new()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let id = accepted["id"].as_str().expect("id");
    let ended = wait_for_job(&server, &key, id).await;
    assert_eq!(ended["status"], "succeeded");
    assert!(ended.get("logs").is_none(), "64 KiB is too much for the status: {ended}");

    let logs = server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await;
    assert_eq!(logs["stdout"].as_str().map(str::len), Some(LOG_CAP));
    assert_eq!((&logs["stderr"], &logs["truncated"]), (&json!("flood done\n"), &json!(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_printed_nothing_has_empty_logs_and_an_unknown_one_is_404() {
    let (server, key) = server_with_hostile().await;
    let (status, id) = call(&server, &key, "echo").await;
    assert_eq!(status, StatusCode::OK);
    let empty = json!({ "stdout": "", "stderr": "", "truncated": false });
    assert_eq!(server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await, empty);
    let response = server.request(Method::GET, "/v1/jobs/nope/logs", &key).send().await.expect("sent");
    assert_eq!(error_of(response).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_jobs_logs_and_invoke_prints_them_after_a_failure() {
    let (server, key) = server_with_hostile().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&input, b"").expect("input");
    let args = ["invoke", "hostile", "--input", path(&input), "--output", path(&output), "-p", "act=panic", "--logs"];
    let invoked = server.cli(&key, &args).await;
    assert_eq!(invoked.status.code(), Some(1), "the call failed");
    let stderr = String::from_utf8_lossy(&invoked.stderr);
    assert!(stderr.contains(PANIC) && stderr.contains("function_trapped"), "{stderr}");

    let (_, id) = call(&server, &key, "panic").await;
    let printed = server.cli(&key, &["logs", &id]).await;
    assert!(printed.status.success(), "{printed:?}");
    assert!(printed.stdout.is_empty());
    assert!(String::from_utf8_lossy(&printed.stderr).contains(PANIC));
    let as_json = server.cli(&key, &["logs", &id, "--json"]).await;
    let logs: Value = serde_json::from_slice(&as_json.stdout).expect("json");
    assert_eq!(logs, server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await);
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}
