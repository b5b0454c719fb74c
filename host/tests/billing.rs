//! Billing over real HTTP: what ran is billed once per attempt, what was
//! shed is not, and a bill is the same however often it was read.

mod common;

use std::time::Duration;

use common::http::{deploy, error_of, invoke, wait_for_job, wait_for_status};
use common::{TestServer, guest, photo, start_server, start_server_with};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sluice::meter::DEFAULT_PRICES;

/// What the README's price table makes of one function's reported counters,
/// priced once from their sums.
fn priced_micros(usage: &Value) -> u64 {
    let count = |field: &str| usage[field].as_u64().unwrap_or_else(|| panic!("{field} in {usage}"));
    let micros = |field: &str| {
        let ms = usage[field].as_f64().unwrap_or_else(|| panic!("{field} in {usage}"));
        (ms * 1000.0).round() as u128
    };
    let prices = DEFAULT_PRICES;
    let invocations = u128::from(count("invocations")) * u128::from(prices.per_invocation);
    let cpu = micros("cpu_ms") * u128::from(prices.per_cpu_second) / 1_000_000;
    let wall = micros("wall_ms") * u128::from(prices.per_wall_second) / 1_000_000;
    let bytes = u128::from(count("bytes_in")) + u128::from(count("bytes_out"));
    let transfer = bytes * u128::from(prices.per_mib_transferred) / (1024 * 1024);
    u64::try_from(invocations + cpu + wall + transfer).expect("fits")
}

fn cost_micros(usage: &Value) -> u64 {
    (usage["cost"].as_f64().expect("cost") * 1e6).round() as u64
}

async fn usage_of(server: &TestServer, key: &str, function: &str) -> Value {
    let report = server.get_json("/v1/usage", key).await;
    let functions = report["functions"].as_array().expect("functions");
    functions.iter().find(|f| f["function"] == function).cloned().unwrap_or_else(|| panic!("{function} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_shed_for_want_of_an_instance_slot_runs_later_and_is_billed_once() {
    // One instance slot: while the sleeper holds it, the resize is shed.
    let server = start_server_with(|c| {
        c.platform.runtime.max_instances = 1;
        c.platform.runtime.timeout = Duration::from_millis(500);
        c.queue.max_deliveries = 6;
    })
    .await;
    let key = server.tenant("acme").await;
    assert_eq!(deploy(&server, &key, "hostile", guest("sluice_fixture_hostile")).await.status(), StatusCode::CREATED);
    let sleeper: Value =
        invoke(&server, &key, "/v1/functions/hostile/jobs?act=sleep", Vec::new()).await.json().await.expect("json");
    let sleeper = sleeper["id"].as_str().expect("id").to_owned();
    wait_for_status(&server, &key, &sleeper, "running").await;
    // Running is set as the worker starts; give it the moment it takes to
    // instantiate into the one slot.
    tokio::time::sleep(Duration::from_millis(150)).await;

    let job: Value = invoke(&server, &key, "/v1/functions/resize/jobs?width=50", photo("bricks-gray.png"))
        .await
        .json()
        .await
        .expect("json");
    let job = wait_for_job(&server, &key, job["id"].as_str().expect("id")).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["deliveries"].as_u64().is_some_and(|n| n >= 2), "shed at least once first: {job}");
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(1), "only the attempt that ran is recorded: {job}");
    assert_eq!(job["attempts"][0], job["usage"]);

    let sleeper = wait_for_job(&server, &key, &sleeper).await;
    assert_eq!(sleeper["error"]["code"], "timeout");
    let resize = usage_of(&server, &key, "resize").await;
    assert_eq!((resize["invocations"].as_u64(), resize["failures"].as_u64()), (Some(1), Some(0)), "{resize}");
    assert_eq!(resize["bytes_in"], job["usage"]["bytes_in"]);
    assert_eq!(resize["bytes_out"], job["usage"]["bytes_out"]);
    let hostile = usage_of(&server, &key, "hostile").await;
    assert_eq!((hostile["invocations"].as_u64(), hostile["failures"].as_u64()), (Some(1), Some(1)), "{hostile}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_each_followed_by_a_usage_report_cost_their_summed_counters_priced_once() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    // Each call moves about 0.56 MB, 2.7 micro-units at the default price:
    // priced per call, the fractions would be dropped once per call.
    let input = photo("kodim23.png");
    let calls = 8;
    for _ in 0..calls {
        let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=40", input.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        usage_of(&server, &key, "resize").await;
    }
    let resize = usage_of(&server, &key, "resize").await;
    assert_eq!(resize["invocations"], calls);
    assert_eq!(cost_micros(&resize), priced_micros(&resize), "{resize}");
    let per_call_transfer = input.len() as u64 * DEFAULT_PRICES.per_mib_transferred / (1024 * 1024);
    assert!(
        cost_micros(&resize) > calls * (DEFAULT_PRICES.per_invocation + per_call_transfer),
        "more than the per-call rounded charges: {resize}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_past_the_burst_are_429_with_retry_after_for_that_tenant_only() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let other = server.tenant("zeta").await;
    for _ in 0..10 {
        let response = server.request(Method::GET, "/v1/usage", &key).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = server.request(Method::GET, "/v1/usage", &key).send().await.expect("sent");
    assert_eq!(refused.headers()["retry-after"], "1");
    let (status, code, message) = error_of(refused).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert_eq!(message, "usage reports are limited to 1 a second (bursts of 10) per tenant");
    let response = server.request(Method::GET, "/v1/usage", &other).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK, "another tenant reads its usage");
    let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=10", photo("bricks-gray.png")).await;
    assert_eq!(response.status(), StatusCode::OK, "calls are limited apart from reports");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = server.request(Method::GET, "/v1/usage", &key).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK, "a token came back after a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_report_gives_each_hours_totals_per_function_and_they_sum_to_the_period() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    for _ in 0..3 {
        let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=16", photo("basn6a16.png")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = invoke(&server, &key, "/v1/functions/grayscale/invoke", photo("bricks-gray.png")).await;
    assert_eq!(response.status(), StatusCode::OK);

    let day_ago = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 86_400;
    let report = server.get_json(&format!("/v1/usage?from={day_ago}&granularity=hour"), &key).await;
    let hourly = report["hourly"].as_array().unwrap_or_else(|| panic!("hourly in {report}"));
    // All four calls fall in this hour (or, across an hour's turn, the two).
    let hours: std::collections::BTreeSet<&str> = hourly.iter().map(|h| h["hour"].as_str().expect("hour")).collect();
    assert!((1..=2).contains(&hours.len()), "{report}");
    assert!(hours.iter().all(|hour| hour.ends_with(":00:00Z")), "{report}");
    for function in report["functions"].as_array().expect("functions") {
        let name = &function["function"];
        let of_function: Vec<&Value> = hourly.iter().filter(|h| h["function"] == *name).collect();
        for field in ["invocations", "failures", "bytes_in", "bytes_out"] {
            let summed: u64 = of_function.iter().map(|h| h[field].as_u64().expect("count")).sum();
            assert_eq!(summed, function[field].as_u64().expect("count"), "{field} of {name}: {report}");
        }
    }
    let invocations = |name: &str| -> u64 {
        hourly.iter().filter(|h| h["function"] == name).map(|h| h["invocations"].as_u64().expect("count")).sum()
    };
    assert_eq!((invocations("resize"), invocations("grayscale")), (3, 1));

    // Without `granularity` the report has totals only.
    let totals = server.get_json(&format!("/v1/usage?from={day_ago}"), &key).await;
    assert_eq!(totals.get("hourly"), None, "{totals}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_report_over_more_than_31_days_or_an_unknown_granularity_is_400() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let response = server.request(Method::GET, "/v1/usage?granularity=hour", &key).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(
        message,
        "`granularity=hour` covers at most 744 hours (31 days); give a `from` and `to` closer together"
    );
    let month = "/v1/usage?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&granularity=hour";
    assert_eq!(server.request(Method::GET, month, &key).send().await.expect("sent").status(), StatusCode::OK);
    let response = server.request(Method::GET, "/v1/usage?granularity=minute", &key).send().await.expect("sent");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
}
