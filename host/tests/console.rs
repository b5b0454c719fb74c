//! The console (`/console`) in a real headless Chromium over WebDriver,
//! against an embedded node and against a front door and worker sharing a
//! Redis: a tenant signs in, deploys the example component, calls it with
//! a photo, finds the job and its logs and sees the usage chart move; the
//! operator manages keys. Screenshots of each page land in
//! `target/test-artifacts/console/`.

mod common;

use std::path::{Path, PathBuf};

use common::browser::Browser;
use common::http::error_of;
use common::processes::{ADMIN, SluiceProcess};
use common::{TestServer, start_server, start_server_with, testdata};
use fantoccini::key::Key;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sluice_testkit::{AppendFsync, spawn_redis_with};

/// The example component the tenant deploys from the browser.
fn example_component() -> PathBuf {
    Path::new(env!("SLUICE_GUEST_DIR")).join("sluice_example_grayscale.wasm")
}

/// The photo the tenant calls it with.
fn photo_path() -> PathBuf {
    testdata().join("photos").join("bricks-gray.png")
}

/// A desktop-sized window.
async fn desktop() -> Browser {
    Browser::start(1280, 1000).await
}

/// Opens the console at `url` and signs in with `key`; waits for `view`.
async fn sign_in(browser: &Browser, url: &str, key: &str, view: &str) {
    browser.open(&format!("{url}/console")).await;
    browser.fill("#signin-key", key).await;
    browser.click("#signin-submit").await;
    browser.wait_for_view(view).await;
}

/// An embedded node, its tenant `acme` and a desktop browser signed in
/// with that tenant's key, on the Functions view.
async fn signed_in_tenant() -> (TestServer, String, Browser) {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let browser = desktop().await;
    sign_in(&browser, &server.url, &key, "functions").await;
    (server, key, browser)
}

/// The sum of the values of the usage chart's bars for `function`.
async fn charted(browser: &Browser, function: &str) -> f64 {
    let total = browser
        .eval(
            "return [...document.querySelectorAll('#usage-chart rect[data-function]')] \
               .filter(r => r.dataset.function === arguments[0]) \
               .reduce((sum, r) => sum + Number(r.dataset.value), 0)",
            vec![json!(function)],
        )
        .await;
    total.as_f64().unwrap_or_else(|| panic!("no chart total: {total}"))
}

/// Everything a tenant does in the console, against the front door at `url`:
/// deploy, call with a photo and see its preview, usage numbers and logs,
/// find the job, see the usage chart count the calls. With `shots`, saves
/// each page under that prefix.
async fn tenant_journey(url: &str, key: &str, shots: Option<&str>) {
    let browser = desktop().await;
    let shot = async |name: &str| {
        if let Some(prefix) = shots {
            browser.screenshot(&format!("{prefix}{name}")).await;
        }
    };
    browser.open(&format!("{url}/console")).await;
    browser.find("#signin-key").await;
    shot("sign-in").await;
    browser.fill("#signin-key", key).await;
    browser.click("#signin-submit").await;
    browser.wait_for_view("functions").await;

    // Deploy: choose the file, watch upload then compile, see it listed.
    browser.choose_file("#deploy-file", &example_component()).await;
    browser.fill("#deploy-name", "grey").await;
    browser.click("#deploy-submit").await;
    browser
        .wait_until(
            "the deploy finished",
            "const s = document.querySelector('#deploy-status'); return !!s && s.dataset.state === 'done'",
            vec![],
        )
        .await;
    let status = browser.text("#deploy-status").await;
    assert!(status.contains("grey") && status.contains("transform"), "{status}");
    let progress =
        browser.eval("const p = document.querySelector('#deploy-progress'); return [p.value, p.max]", vec![]);
    let progress = progress.await;
    assert_eq!(progress[0], progress[1], "the upload reached 100%: {progress}");
    browser.wait_for_view("functions").await;
    let row = browser.text("tr[data-function='grey']").await;
    assert!(row.contains("transform"), "{row}");
    shot("functions").await;

    // Try it: a photo in, a grey PNG previewed, the call's numbers and logs.
    browser.open(&format!("{url}/console/#/try")).await;
    browser.wait_for_view("try").await;
    browser.select("#try-function", "grey").await;
    browser.choose_file("#try-file", &photo_path()).await;
    browser.click("#try-submit").await;
    browser
        .wait_until(
            "the call's result",
            "const r = document.querySelector('#try-result'); return !!r && r.dataset.state === 'done'",
            vec![],
        )
        .await;
    browser
        .wait_until(
            "the preview, decoded",
            "const img = document.querySelector('#try-preview'); return !!img && img.complete && img.naturalWidth > 0",
            vec![],
        )
        .await;
    let photo = image::open(photo_path()).expect("the photo decodes");
    let shown = browser
        .eval("const i = document.querySelector('#try-preview'); return [i.naturalWidth, i.naturalHeight]", vec![]);
    assert_eq!(shown.await, json!([photo.width(), photo.height()]));
    let bytes_in = browser.find("#try-usage [data-usage='bytes-in']").await.attr("data-value").await.expect("attr");
    let size = std::fs::metadata(photo_path()).expect("photo").len();
    assert_eq!(bytes_in, Some(size.to_string()));
    let logs_line = format!("grayscale: {}x{} Png in", photo.width(), photo.height());
    browser
        .wait_until(
            "the call's logs",
            "const l = document.querySelector('#try-logs'); return !!l && l.textContent.includes(arguments[0])",
            vec![json!(logs_line)],
        )
        .await;
    let job = browser.text("#try-job").await;
    let job = job.trim().to_owned();
    assert!(!job.is_empty(), "the call's job id is shown");
    shot("try-it").await;

    // Jobs: the call is listed as succeeded; its page has the logs.
    browser.open(&format!("{url}/console/#/jobs")).await;
    browser.wait_for_view("jobs").await;
    let listed = browser.find(&format!("#jobs-table tr[data-job='{job}']")).await;
    assert_eq!(listed.attr("data-status").await.expect("attr").as_deref(), Some("succeeded"));
    shot("jobs").await;
    browser.click(&format!("#jobs-table tr[data-job='{job}'] a")).await;
    browser.wait_for_view("job").await;
    let logs = browser.text("#job-logs").await;
    assert!(logs.contains(&logs_line), "{logs}");
    assert!(browser.text("#job-record").await.contains("succeeded"));
    shot("job").await;

    // Usage: the chart counts the call; another call moves it.
    browser.open(&format!("{url}/console/#/usage")).await;
    browser.wait_for_view("usage").await;
    assert_eq!(charted(&browser, "grey").await, 1.0);
    let again = Client::new()
        .post(format!("{url}/v1/functions/grey/invoke"))
        .bearer_auth(key)
        .body(std::fs::read(photo_path()).expect("photo"))
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), StatusCode::OK);
    browser.click("#usage-refresh").await;
    browser
        .wait_until(
            "the chart counting two calls",
            "return [...document.querySelectorAll('#usage-chart rect[data-function]')] \
               .filter(r => r.dataset.function === 'grey') \
               .reduce((sum, r) => sum + Number(r.dataset.value), 0) === 2",
            vec![],
        )
        .await;
    let table = browser.text("#usage-table tr[data-function='grey']").await;
    assert!(table.contains('2'), "{table}");
    shot("usage").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deploys_calls_and_follows_a_job_and_its_usage_in_the_browser() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    tenant_journey(&server.url, &key, Some("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_against_a_front_door_and_a_worker_sharing_redis() {
    let redis = spawn_redis_with(AppendFsync::EverySec);
    let door = SluiceProcess::front_door(&redis.url, &[]);
    let _worker = SluiceProcess::worker(&redis.url, "w1", &["--concurrency", "2"]);
    common::processes::wait_for_workers(&door, 1).await;
    let key = common::create_tenant(&door.url, ADMIN, "acme").await;
    tenant_journey(&door.url, &key, None).await;

    // The operator's view reads tenants and queues from the shared Redis.
    let browser = desktop().await;
    sign_in(&browser, &door.url, ADMIN, "admin").await;
    let row = browser.text("#tenants-table tr[data-tenant='acme']").await;
    assert!(row.contains("0 queued") && row.contains("0 running"), "{row}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_on_the_sign_in_form_with_its_code() {
    let server = start_server().await;
    let browser = desktop().await;
    browser.open(&format!("{}/console", server.url)).await;
    browser.fill("#signin-key", "not-a-key").await;
    browser.click("#signin-submit").await;
    browser
        .wait_until(
            "the sign-in error",
            "const e = document.querySelector('#signin-error'); return !!e && e.textContent.includes('unauthorized')",
            vec![],
        )
        .await;
    let stored = browser.eval("return sessionStorage.getItem('sluice.key')", vec![]).await;
    assert_eq!(stored, Value::Null, "a refused key is not kept");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_kept_in_session_storage_only_and_signing_out_forgets_it() {
    let (_server, key, browser) = signed_in_tenant().await;
    let stores = browser
        .eval("return [sessionStorage.getItem('sluice.key'), localStorage.length, document.cookie]", vec![])
        .await;
    assert_eq!(stores, json!([key, 0, ""]));
    // A reload keeps the session; signing out ends it.
    browser.client.refresh().await.expect("reload");
    browser.wait_for_view("functions").await;
    browser.click("#signout").await;
    browser.find("#signin-key").await;
    assert_eq!(browser.eval("return sessionStorage.length", vec![]).await, json!(0));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_version_rolls_back_and_delete_asks_first() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let component = std::fs::read(example_component()).expect("component");
    let first = common::http::deploy(&server, &key, "grey", component.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    // A second version with other bytes: the same code, one more custom section.
    let mut other = component;
    other.extend_from_slice(&[0x00, 0x06, 0x05, b'n', b'o', b't', b'e', b's']);
    let second = common::http::deploy(&server, &key, "grey", other).await;
    assert_eq!(second.status(), StatusCode::CREATED, "a new version of a deployed function");
    let before = server.get_json("/v1/functions/grey", &key).await;
    let versions: Vec<String> = before["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_str().expect("v").to_owned())
        .collect();
    assert_eq!(versions.len(), 2, "{before}");
    let older = versions.iter().find(|v| **v != before["active_version"]).expect("an older version").clone();

    let browser = desktop().await;
    sign_in(&browser, &server.url, &key, "functions").await;
    browser.click("button[data-versions='grey']").await;
    browser.click(&format!("#versions button[data-rollback='{older}']")).await;
    browser
        .wait_until(
            "the rollback",
            "const row = document.querySelector(\"tr[data-function='grey']\"); \
             return !!row && row.textContent.includes(arguments[0].slice(0, 12))",
            vec![json!(older)],
        )
        .await;
    assert_eq!(server.get_json("/v1/functions/grey", &key).await["active_version"], json!(older));
    browser.screenshot("versions").await;

    // Delete: cancelled once, then confirmed.
    browser.click("button[data-delete='grey']").await;
    browser.click("#confirm-no").await;
    assert_eq!(
        server.request(Method::GET, "/v1/functions/grey", &key).send().await.expect("sent").status(),
        StatusCode::OK
    );
    browser.click("button[data-delete='grey']").await;
    browser.click("#confirm-yes").await;
    browser.wait_until("the row gone", "return !document.querySelector(\"tr[data-function='grey']\")", vec![]).await;
    let gone = server.request(Method::GET, "/v1/functions/grey", &key).send().await.expect("sent");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_dropped_on_the_drop_zone_is_named_after_its_file_and_deployed() {
    let (server, key, browser) = signed_in_tenant().await;
    // What a file dragged in from the desktop delivers: a DataTransfer
    // holding the file, over the drop zone and then dropped on it.
    let bytes = common::guest("sluice_bench_hello_http");
    let dragging = browser
        .eval(
            "const bytes = Uint8Array.from(arguments[0].match(/../g), (pair) => parseInt(pair, 16)); \
             const transfer = new DataTransfer(); \
             transfer.items.add(new File([bytes], 'Hello_HTTP.wasm', { type: 'application/wasm' })); \
             window.dropped = transfer; \
             const zone = document.querySelector('#deploy-drop'); \
             const over = new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }); \
             zone.dispatchEvent(over); \
             return [over.defaultPrevented, zone.classList.contains('dragging')]",
            vec![json!(hex::encode(&bytes))],
        )
        .await;
    assert_eq!(dragging, json!([true, true]), "the zone accepts the drag and shows it");
    let label = browser
        .eval(
            "const zone = document.querySelector('#deploy-drop'); \
             zone.dispatchEvent(new DragEvent('drop', { dataTransfer: window.dropped, bubbles: true, cancelable: true })); \
             return [zone.textContent, zone.classList.contains('dragging'), \
                     document.querySelector('#deploy-name').value, document.querySelector('#deploy-file').files.length]",
            vec![],
        )
        .await;
    let label = label.as_array().expect("four values");
    assert_eq!(label[0].as_str().map(|l| l.starts_with("Hello_HTTP.wasm (")), Some(true), "{label:?}");
    assert_eq!(label[1..], [json!(false), json!("hello-http"), json!(1)], "{label:?}");
    browser.click("#deploy-submit").await;
    browser
        .wait_until(
            "the dropped component deployed",
            "const s = document.querySelector('#deploy-status'); \
             return s.dataset.state === 'done' && !!document.querySelector(\"tr[data-function='hello-http']\")",
            vec![],
        )
        .await;
    let status = browser.text("#deploy-status").await;
    assert!(status.starts_with("Deployed hello-http version ") && status.contains("(http, "), "{status}");
    let world = browser.text("tr[data-function='hello-http'] td:nth-of-type(3)").await;
    assert_eq!(world, "http");
    let stored = server.get_json("/v1/functions/hello-http", &key).await;
    assert_eq!((&stored["world"], &stored["versions"][0]["size"]), (&json!("http"), &json!(bytes.len())), "{stored}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_queue_depths_rotates_a_key_and_revokes_one() {
    let server = start_server_with(|c| c.workers = 0).await;
    let key = server.tenant("acme").await;
    server.tenant("globex").await;
    let queued = Client::new()
        .post(format!("{}/v1/functions/resize/jobs?width=8", server.url))
        .bearer_auth(&key)
        .body(b"12345".to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(queued.status(), StatusCode::ACCEPTED);

    let browser = desktop().await;
    sign_in(&browser, &server.url, &server.admin, "admin").await;
    let row = browser.text("#tenants-table tr[data-tenant='acme']").await;
    assert!(row.contains("1 queued"), "{row}");
    browser.find("#tenants-table tr[data-tenant='globex']").await;
    browser.screenshot("admin").await;

    // Rotate with no grace: the new key is shown once and works, the old one stops.
    browser.click("button[data-rotate='acme']").await;
    if let Ok(grace) = browser.client.find(fantoccini::Locator::Css("#rotate-grace")).await {
        grace.clear().await.expect("clear");
        grace.send_keys("0").await.expect("type");
    }
    browser.click("#rotate-submit").await;
    let shown = browser.text("#admin-new-key code").await;
    let new_key = shown.trim().to_owned();
    assert_ne!(new_key, key);
    let with = |k: &str| server.request(Method::GET, "/v1/functions", k).send();
    assert_eq!(with(&new_key).await.expect("sent").status(), StatusCode::OK);
    assert_eq!(with(&key).await.expect("sent").status(), StatusCode::UNAUTHORIZED);

    // Revoke the key just made: it stops at once.
    let tenant = server.get_json("/v1/tenants/acme", &server.admin).await;
    let key_id = tenant["keys"].as_array().expect("keys").last().expect("a key")["id"].as_str().expect("id").to_owned();
    browser.click(&format!("button[data-revoke='{key_id}']")).await;
    browser.click("#confirm-yes").await;
    browser
        .wait_until(
            "the key gone from the table",
            "return !document.querySelector(`button[data-revoke='${arguments[0]}']`)",
            vec![json!(key_id)],
        )
        .await;
    assert_eq!(with(&new_key).await.expect("sent").status(), StatusCode::UNAUTHORIZED);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_show_their_code_and_message_and_the_view_stays_usable() {
    let (server, _key, browser) = signed_in_tenant().await;
    // A job that does not exist: 404 with its code, on the job's page.
    browser.open(&format!("{}/console/#/jobs/00000000-0000-4000-8000-000000000000", server.url)).await;
    browser
        .wait_until(
            "the not_found error",
            "const e = document.querySelector('#error'); return !!e && e.textContent.includes('not_found')",
            vec![],
        )
        .await;
    // A call the function refuses: 422 with the function's own message.
    browser.open(&format!("{}/console/#/try", server.url)).await;
    browser.wait_for_view("try").await;
    browser.select("#try-function", "grayscale").await;
    browser.choose_file("#try-file", &testdata().join("SOURCES.md")).await;
    browser.click("#try-submit").await;
    browser
        .wait_until(
            "the invalid_input error",
            "const r = document.querySelector('#try-result'); \
             return !!r && r.dataset.state === 'error' && r.textContent.includes('invalid_input') \
               && r.textContent.includes('send a PNG or JPEG image')",
            vec![],
        )
        .await;
    // Still usable: the next call works.
    browser.choose_file("#try-file", &photo_path()).await;
    browser.click("#try-submit").await;
    browser
        .wait_until(
            "a result after the error",
            "const r = document.querySelector('#try-result'); return !!r && r.dataset.state === 'done'",
            vec![],
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_view_shows_429_with_its_wait_and_recovers() {
    let (server, _key, browser) = signed_in_tenant().await;
    browser.open(&format!("{}/console/#/usage", server.url)).await;
    browser.wait_for_view("usage").await;
    // Usage reports are limited to one a second in bursts of ten per tenant.
    for _ in 0..12 {
        browser.click("#usage-refresh").await;
    }
    browser
        .wait_until(
            "the rate_limited error",
            "const e = document.querySelector('#error'); \
             return !!e && e.textContent.includes('rate_limited') && e.textContent.includes('retry in')",
            vec![],
        )
        .await;
    browser.find("#usage-chart").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    browser.click("#usage-refresh").await;
    browser.wait_for_view("usage").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_shows_503_keeps_the_session_and_clears_once_redis_is_back() {
    let mut redis = spawn_redis_with(AppendFsync::Always);
    let redis_url = redis.url.clone();
    let server = start_server_with(move |c| c.backend.redis_url = Some(redis_url)).await;
    let key = server.tenant("acme").await;
    let browser = desktop().await;
    sign_in(&browser, &server.url, &key, "functions").await;
    browser.open(&format!("{}/console/#/jobs", server.url)).await;
    browser.wait_for_view("jobs").await;

    redis.kill();
    browser.click("#jobs-refresh").await;
    browser
        .wait_until(
            "the store_unavailable error with its wait",
            "const main = document.querySelector('main'); const e = document.querySelector('#error'); \
             return main.dataset.view === 'jobs' && main.dataset.state === 'error' && !e.hidden \
               && e.textContent.includes('store_unavailable') \
               && e.textContent.includes('the state store is unavailable; try again shortly (retry in 2 s)')",
            vec![],
        )
        .await;
    // Moving to another view while Redis is away: the same error, still signed in.
    browser.click("#nav a[data-nav='functions']").await;
    browser
        .wait_until(
            "the functions view failing with 503",
            "const main = document.querySelector('main'); \
             return main.dataset.view === 'functions' && main.dataset.state === 'error' \
               && document.querySelector('#error').textContent.includes('store_unavailable')",
            vec![],
        )
        .await;
    assert_eq!(browser.eval("return sessionStorage.getItem('sluice.key')", vec![]).await, json!(key));
    assert!(browser.text("#whoami").await.contains("acme"));

    redis.restart();
    browser.click("#nav a[data-nav='jobs']").await;
    let started = std::time::Instant::now();
    loop {
        let state = browser.eval("return document.querySelector('main').dataset.state", vec![]).await;
        if state == json!("ready") {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the jobs view never loaded again");
        if state == json!("error") {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            browser.click("#jobs-refresh").await;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(browser.eval("return document.querySelector('#error').hidden", vec![]).await, json!(true));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_chart_labels_hours_and_days_in_a_zone_half_an_hour_off_utc() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    // Hour buckets start on UTC hours: at :30 local time in India.
    let browser = Browser::start_in_time_zone(1280, 1000, Some("Asia/Kolkata")).await;
    assert_eq!(browser.eval("return new Date().getTimezoneOffset()", vec![]).await, json!(-330));
    sign_in(&browser, &server.url, &key, "functions").await;
    browser.open(&format!("{}/console/#/usage", server.url)).await;
    browser.wait_for_view("usage").await;
    let labels = "return [...document.querySelectorAll('#usage-chart .x-axis text')].map(t => t.textContent)";
    let hours = browser.eval(labels, vec![]).await;
    let hours = hours.as_array().expect("labels");
    let month_day = |l: &str| l.len() == 5 && l.as_bytes()[2] == b'-';
    assert!(hours.len() >= 4, "{hours:?}");
    assert!(hours.iter().filter_map(Value::as_str).all(|l| l.ends_with(":30") || month_day(l)), "{hours:?}");
    assert!(hours.iter().filter_map(Value::as_str).any(|l| l.ends_with(":30")), "{hours:?}");

    // Thirty days: a label every other local midnight, each a month and day.
    browser.select("#usage-period", "30d").await;
    browser
        .wait_until(
            "the month's chart",
            "return document.querySelector('#usage-chart-title').textContent.includes('last 30 days')",
            vec![],
        )
        .await;
    browser.wait_for_view("usage").await;
    let days = browser.eval(labels, vec![]).await;
    let days = days.as_array().expect("labels");
    assert!(days.len() >= 10, "{days:?}");
    assert!(days.iter().filter_map(Value::as_str).all(month_day), "{days:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_fits_a_phone_and_every_control_has_a_label() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let browser = Browser::start(390, 844).await;
    sign_in(&browser, &server.url, &key, "functions").await;
    for view in ["functions", "try", "jobs", "usage"] {
        browser.open(&format!("{}/console/#/{view}", server.url)).await;
        browser.wait_for_view(view).await;
        let fits = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth", vec![]).await;
        assert_eq!(fits, json!(true), "the {view} view scrolls sideways at phone width");
        let unlabelled = browser
            .eval(
                "return [...document.querySelectorAll('input, select, textarea')] \
                   .filter(c => c.type !== 'hidden' && c.labels.length === 0 \
                     && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby')) \
                   .map(c => c.id || c.name || c.outerHTML)",
                vec![],
            )
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label in the {view} view");
        let unreachable = browser
            .eval(
                "return [...document.querySelectorAll('a[href], button, input, select, textarea')] \
                   .filter(c => c.offsetParent !== null && c.tabIndex < 0) \
                   .map(c => c.id || c.textContent)",
                vec![],
            )
            .await;
        assert_eq!(unreachable, json!([]), "controls out of the tab order in the {view} view");
        browser.screenshot(&format!("phone-{view}")).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_alone_signs_in_and_moves_between_views() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let browser = desktop().await;
    browser.open(&format!("{}/console", server.url)).await;
    // Enter in the key field submits the form.
    browser.find("#signin-key").await.send_keys(&format!("{key}\u{E007}")).await.expect("typed");
    browser.wait_for_view("functions").await;
    // Tab until the Jobs link has focus, then Enter follows it.
    for _ in 0..40 {
        let on_jobs = browser
            .eval("return document.activeElement && document.activeElement.getAttribute('href') === '#/jobs'", vec![])
            .await;
        if on_jobs == json!(true) {
            break;
        }
        browser.press(Key::Tab).await;
    }
    browser.press(Key::Enter).await;
    browser.wait_for_view("jobs").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy_and_unknown_files_are_404() {
    let server = start_server().await;
    let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let moved = client.get(format!("{}/console", server.url)).send().await.expect("sent");
    assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(moved.headers()[LOCATION], "/console/");

    let page = client.get(format!("{}/console/", server.url)).send().await.expect("sent");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = page.headers()[CONTENT_SECURITY_POLICY].to_str().expect("ascii").to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.expect("body");
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");

    let script = client.get(format!("{}/console/console.js", server.url)).send().await.expect("sent");
    assert_eq!(script.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
    let missing = client.get(format!("{}/console/..%2Fsecrets", server.url)).send().await.expect("sent");
    let (status, code, _) = error_of(missing).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_from_its_page_after_a_confirmation() {
    let server = start_server_with(|c| c.workers = 0).await;
    let key = server.tenant("acme").await;
    let accepted = Client::new()
        .post(format!("{}/v1/functions/resize/jobs?width=8", server.url))
        .bearer_auth(&key)
        .body(std::fs::read(photo_path()).expect("photo"))
        .send()
        .await
        .expect("sent");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let id = accepted.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();

    let browser = desktop().await;
    sign_in(&browser, &server.url, &key, "functions").await;
    browser.open(&format!("{}/console/#/jobs/{id}", server.url)).await;
    browser.wait_for_view("job").await;
    browser.click("#job-cancel").await;
    browser.click("#confirm-yes").await;
    browser
        .wait_until(
            "the job shown cancelled",
            "const r = document.querySelector('#job-record'); return !!r && r.textContent.includes('cancelled')",
            vec![],
        )
        .await;
    assert_eq!(server.get_json(&format!("/v1/jobs/{id}"), &key).await["status"], "cancelled");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_csv_holds_each_hours_totals_per_function() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    for _ in 0..2 {
        let response = Client::new()
            .post(format!("{}/v1/functions/grayscale/invoke", server.url))
            .bearer_auth(&key)
            .body(std::fs::read(photo_path()).expect("photo"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let browser = desktop().await;
    sign_in(&browser, &server.url, &key, "functions").await;
    browser.open(&format!("{}/console/#/usage", server.url)).await;
    browser.wait_for_view("usage").await;
    // Keep the file the page hands to the browser, to read it back.
    browser
        .eval(
            "const make = URL.createObjectURL.bind(URL); \
             URL.createObjectURL = (blob) => { window.savedBlob = blob; return make(blob); }; return true",
            vec![],
        )
        .await;
    browser.click("#usage-csv").await;
    browser.wait_until("the CSV made", "return !!window.savedBlob", vec![]).await;
    let csv = browser
        .client
        .execute_async("const done = arguments[arguments.length - 1]; window.savedBlob.text().then(done)", vec![])
        .await
        .expect("the CSV's text");
    let csv = csv.as_str().expect("text");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("hour,function,invocations,failures,cpu_ms,wall_ms,bytes_in,bytes_out,cost"));
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    let invocations: u64 =
        rows.iter().filter(|row| row[1] == "grayscale").map(|row| row[2].parse::<u64>().expect("count")).sum();
    assert_eq!(invocations, 2, "{csv}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_mid_session_returns_to_the_sign_in_form_with_the_reason() {
    let (server, _key, browser) = signed_in_tenant().await;
    let tenant = server.get_json("/v1/tenants/acme", &server.admin).await;
    let key_id = tenant["keys"][0]["id"].as_str().expect("key id").to_owned();
    let revoked = server
        .request(Method::DELETE, &format!("/v1/tenants/acme/keys/{key_id}"), &server.admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(revoked.status(), StatusCode::OK);

    // Within the page, without a reload: the next call is refused.
    browser.eval("location.hash = '#/jobs'; return true", vec![]).await;
    browser.wait_for_view("signin").await;
    browser.wait_until("the reason", "return document.body.textContent.includes('unauthorized')", vec![]).await;
    assert_eq!(browser.eval("return sessionStorage.getItem('sluice.key')", vec![]).await, Value::Null);
    browser.close().await;
}
