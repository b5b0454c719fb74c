//! Distributed mode end to end: front doors and worker nodes as separate
//! `sluice` processes sharing a real `redis-server`, with faults injected
//! (a worker SIGKILLed mid-job, Redis crashing and coming back, a function
//! that always traps). Each test keeps a ledger of the jobs the API
//! accepted; every one must end `succeeded` or `failed` with a reason, and
//! be billed exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::processes::{ADMIN, SluiceProcess};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use sluice_scheduler::QueueConfig;
use sluice_testkit::{AppendFsync, spawn_redis_with};

/// Short enough that a dead worker's job is retried quickly in a test.
const VISIBILITY: &str = "1500";

/// Accepted job id → the front door that accepted it.
type Ledger = BTreeMap<String, String>;

/// Worker nodes with one slot each.
fn spawn_workers(redis: &str, names: &[&str], settings: &[&str]) -> Vec<SluiceProcess> {
    let args = [&["--concurrency", "1"], settings].concat();
    names.iter().map(|name| SluiceProcess::worker(redis, name, &args)).collect()
}

/// Deploys the hostile fixture as `hostile` through `door`.
async fn deploy_hostile(door: &SluiceProcess, key: &str) {
    let deployed = Client::new()
        .put(format!("{}/v1/functions/hostile", door.url))
        .bearer_auth(key)
        .body(common::guest("sluice_fixture_hostile"))
        .send()
        .await
        .expect("sent");
    assert_eq!(deployed.status(), StatusCode::CREATED);
}

async fn get_json(door: &SluiceProcess, path: &str, key: &str) -> (StatusCode, Value) {
    let response = Client::new().get(format!("{}{path}", door.url)).bearer_auth(key).send().await.expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Submits an async resize job through `door` and records it in the ledger.
async fn submit_resize(door: &SluiceProcess, key: &str, photo: &[u8], ledger: &mut Ledger) {
    let response = Client::new()
        .post(format!("{}/v1/functions/resize/jobs?width=320", door.url))
        .bearer_auth(key)
        .body(photo.to_vec())
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    ledger.insert(body["id"].as_str().expect("id").to_owned(), door.url.clone());
}

/// Waits for every job in the ledger to end (asking `door`, which need not
/// be the one that accepted it) and returns their final records.
async fn settle(door: &SluiceProcess, key: &str, ledger: &Ledger, within: Duration) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut done = BTreeMap::new();
    while done.len() < ledger.len() {
        for id in ledger.keys().filter(|id| !done.contains_key(*id)).cloned().collect::<Vec<_>>() {
            let (status, record) = get_json(door, &format!("/v1/jobs/{id}"), key).await;
            if status == StatusCode::OK && ["succeeded", "failed"].contains(&record["status"].as_str().unwrap_or("")) {
                done.insert(id, record);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted jobs did not end within {within:?}",
            ledger.len() - done.len(),
            ledger.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done
}

/// Invocations and failures per function, from `GET /v1/usage`.
async fn usage(door: &SluiceProcess, key: &str) -> BTreeMap<String, (u64, u64)> {
    let (status, body) = get_json(door, "/v1/usage", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            let count = |field: &str| f[field].as_u64().expect("count");
            (f["function"].as_str().expect("name").to_owned(), (count("invocations"), count("failures")))
        })
        .collect()
}

/// The job worker slot `worker` holds right now, if it took it less than
/// `fresh` ago (so the job is surely still running): leased jobs are in
/// `sluice:leases`, and each job hash names its worker and when it was taken.
async fn job_just_taken_by(redis: &str, worker: &str, fresh: Duration) -> Option<String> {
    let client = redis::Client::open(redis).expect("url");
    let mut con = client.get_multiplexed_async_connection().await.expect("connects");
    let leased: Vec<String> =
        redis::cmd("ZRANGE").arg("sluice:leases").arg(0).arg(-1).query_async(&mut con).await.expect("zrange");
    let now_ms = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis(),
    )
    .expect("ms fit");
    for id in leased {
        let (holder, taken): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(format!("sluice:job:{id}"))
            .arg("worker")
            .arg("taken")
            .query_async(&mut con)
            .await
            .expect("hmget");
        if holder.as_deref() == Some(worker)
            && taken.is_some_and(|at| now_ms.saturating_sub(at) < fresh.as_millis() as u64)
        {
            return Some(id);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_400_async_jobs_over_two_front_doors_is_accepted_whole_and_drains_while_another_tenant_is_served() {
    let redis = spawn_redis_with(AppendFsync::EverySec);
    let doors = [SluiceProcess::front_door(&redis.url, &[]), SluiceProcess::front_door(&redis.url, &[])];
    let _workers = [
        SluiceProcess::worker(&redis.url, "w1", &["--concurrency", "2"]),
        SluiceProcess::worker(&redis.url, "w2", &["--concurrency", "2"]),
    ];
    common::processes::wait_for_workers(&doors[0], 2).await;
    let (noisy, quiet) = (
        common::create_tenant(&doors[0].url, ADMIN, "noisy").await,
        common::create_tenant(&doors[1].url, ADMIN, "quiet").await,
    );
    let urls = [doors[0].url.clone(), doors[1].url.clone()];
    common::burst::drains_while_another_tenant_is_served(&urls, &noisy, &quiet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_and_every_job_is_billed_once() {
    let redis = spawn_redis_with(AppendFsync::Always);
    let settings = ["--visibility-timeout-ms", VISIBILITY];
    let door_a = SluiceProcess::front_door(&redis.url, &settings);
    let door_b = SluiceProcess::front_door(&redis.url, &settings);
    let mut workers = spawn_workers(&redis.url, &["w1", "w2", "w3"], &settings);
    common::processes::wait_for_workers(&door_a, 3).await;

    // State is shared: a tenant made on one door, a function deployed on
    // it, both work through the other door (the worker fetches the bytes).
    let key = common::create_tenant(&door_a.url, ADMIN, "acme").await;
    deploy_hostile(&door_a, &key).await;
    let echoed = Client::new()
        .post(format!("{}/v1/functions/hostile/invoke?act=echo", door_b.url))
        .bearer_auth(&key)
        .body("across nodes")
        .send()
        .await
        .expect("sent");
    assert_eq!(echoed.status(), StatusCode::OK);
    assert_eq!(echoed.text().await.expect("body"), "across nodes");

    // Jobs flow through both doors; the 24-megapixel photo keeps each
    // worker busy for a good fraction of a second per job.
    let big = common::photo("rachel-hisko-rEM3cK8F1pk-unsplash.jpg");
    let small = common::photo("harvesters.jpeg");
    let mut ledger = Ledger::new();
    for n in 0..16 {
        let door = if n % 2 == 0 { &door_a } else { &door_b };
        submit_resize(door, &key, if n % 4 == 0 { &small } else { &big }, &mut ledger).await;
    }

    // Kill w1 just after it took a job, so it dies holding it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        if let Some(id) = job_just_taken_by(&redis.url, "w1/0", Duration::from_millis(100)).await {
            workers[0].kill();
            break id;
        }
        assert!(Instant::now() < deadline, "w1 never took a job:\n{}", workers[0].logs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(ledger.contains_key(&held), "w1 held an accepted job");

    let records = settle(&door_b, &key, &ledger, Duration::from_secs(120)).await;
    for (id, record) in &records {
        assert_eq!(record["status"], "succeeded", "job {id}: {record}");
    }
    assert_eq!(records[&held]["deliveries"], 2, "the killed worker's job was delivered again: {}", records[&held]);
    let output = Client::new()
        .get(format!("{}/v1/jobs/{held}/result", door_a.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sent");
    assert_eq!(output.status(), StatusCode::OK);
    assert_eq!(image::load_from_memory(&output.bytes().await.expect("body")).expect("decodes").width(), 320);

    // Billed exactly once per job, whichever door aggregates.
    let expected = BTreeMap::from([("hostile".to_owned(), (1, 0)), ("resize".to_owned(), (16, 0))]);
    assert_eq!(usage(&door_a, &key).await, expected);
    assert_eq!(usage(&door_b, &key).await, expected);

    // A worker drains on SIGTERM and exits cleanly.
    assert_eq!(workers[1].terminate().code(), Some(0), "{}", workers[1].logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_quick_503_and_no_accepted_job_is_lost() {
    let mut redis = spawn_redis_with(AppendFsync::Always);
    let settings = ["--visibility-timeout-ms", VISIBILITY];
    let door = SluiceProcess::front_door(&redis.url, &settings);
    let _workers = spawn_workers(&redis.url, &["w1", "w2"], &settings);
    common::processes::wait_for_workers(&door, 2).await;
    let key = common::create_tenant(&door.url, ADMIN, "acme").await;

    let big = common::photo("rachel-hisko-rEM3cK8F1pk-unsplash.jpg");
    let mut ledger = Ledger::new();
    for _ in 0..6 {
        submit_resize(&door, &key, &big, &mut ledger).await;
    }

    redis.kill();
    let started = Instant::now();
    let refused = Client::new()
        .post(format!("{}/v1/functions/resize/jobs?width=320", door.url))
        .bearer_auth(&key)
        .body(big.clone())
        .send()
        .await
        .expect("answered, not hung");
    let waited = started.elapsed();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.expect("json");
    // Cut off from Redis the door cannot hear of revoked keys, so it
    // trusts no cached key and the tenant store reports the outage; a
    // request racing with the door noticing that finds the queue down.
    let code = body["error"]["code"].as_str();
    assert!(matches!(code, Some("store_unavailable" | "queue_unavailable")), "{body}");
    assert!(waited < Duration::from_secs(3), "the 503 took {waited:?}");
    // Routes that read shared state say so.
    let started = Instant::now();
    let (status, body) = get_json(&door, "/v1/functions", &key).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")));
    assert!(started.elapsed() < Duration::from_secs(3), "the 503 took {:?}", started.elapsed());
    let (ready, _) = get_json(&door, "/readyz", "").await;
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);

    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();

    // Workers and the door reconnect by themselves; everything accepted
    // before the outage is still done.
    let records = settle(&door, &key, &ledger, Duration::from_secs(120)).await;
    for (id, record) in &records {
        assert_eq!(record["status"], "succeeded", "job {id}: {record}");
    }
    let (ready, _) = get_json(&door, "/readyz", "").await;
    assert_eq!(ready, StatusCode::OK);
    let mut after = Ledger::new();
    submit_resize(&door, &key, &common::photo("harvesters.jpeg"), &mut after).await;
    let records = settle(&door, &key, &after, Duration::from_secs(60)).await;
    assert!(records.values().all(|r| r["status"] == "succeeded"), "{records:?}");
    assert_eq!(usage(&door, &key).await, BTreeMap::from([("resize".to_owned(), (7, 0))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_traps_fails_on_its_first_attempt_is_billed_and_its_logs_say_why() {
    let redis = spawn_redis_with(AppendFsync::EverySec);
    let settings = ["--max-deliveries", "3"];
    let door = SluiceProcess::front_door(&redis.url, &settings);
    let _worker = SluiceProcess::worker(&redis.url, "w1", &[&settings[..], &["--concurrency", "2"]].concat());
    common::processes::wait_for_workers(&door, 1).await;
    let key = common::create_tenant(&door.url, ADMIN, "acme").await;
    deploy_hostile(&door, &key).await;

    let response = Client::new()
        .post(format!("{}/v1/functions/hostile/jobs?act=panic", door.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    let ledger = Ledger::from([(id.clone(), door.url.clone())]);
    let record = settle(&door, &key, &ledger, Duration::from_secs(60)).await.remove(&id).expect("settled");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["deliveries"], 1, "a trap is the guest's doing: not retried");
    assert_eq!(record["error"]["code"], "function_trapped", "{record}");
    // Printed on the worker, read through the front door.
    let stderr = record["logs"]["stderr"].as_str().unwrap_or_default();
    assert!(stderr.contains("hostile fixture panics on purpose"), "{record}");
    let (status, logs) = get_json(&door, &format!("/v1/jobs/{id}/logs"), &key).await;
    assert_eq!((status, &logs["stderr"]), (StatusCode::OK, &record["logs"]["stderr"]));

    let queue = sluice_scheduler::connect(&redis.url, QueueConfig::default(), sluice::backend::DEFAULT_PREFIX)
        .await
        .expect("connects");
    assert_eq!(queue.dead_letters().await, Ok(Vec::new()), "a final failure is no dead letter");
    // The one attempt ran guest code: one invocation, one failure.
    assert_eq!(usage(&door, &key).await, BTreeMap::from([("hostile".to_owned(), (1, 1))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_http_component_is_served_by_a_worker_node_and_billed() {
    let redis = spawn_redis_with(AppendFsync::EverySec);
    let door = SluiceProcess::front_door(&redis.url, &[]);
    let _worker = SluiceProcess::worker(&redis.url, "w1", &["--concurrency", "2"]);
    common::processes::wait_for_workers(&door, 1).await;
    let key = common::create_tenant(&door.url, ADMIN, "acme").await;
    let deployed = Client::new()
        .put(format!("{}/v1/functions/hello", door.url))
        .bearer_auth(&key)
        .body(common::guest("sluice_bench_hello_http"))
        .send()
        .await
        .expect("sent");
    assert_eq!(deployed.status(), StatusCode::CREATED);
    assert_eq!(deployed.json::<Value>().await.expect("json")["world"], "http");

    for path in ["/", "/a/b?c=d"] {
        let response = Client::new()
            .delete(format!("{}/v1/functions/hello/http{path}", door.url))
            .bearer_auth(&key)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.expect("body"), "Hello, world!\n", "{path}");
    }
    // Run on the worker (its own process), billed through the shared store.
    assert_eq!(usage(&door, &key).await, BTreeMap::from([("hello".to_owned(), (2, 0))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_tls_redis_with_a_password_serves_calls() {
    let redis = sluice_testkit::spawn_redis_tls();
    let trust = [("SSL_CERT_FILE", redis.ca_file.as_path())];
    // A front door and a worker node, sharing queue and state over TLS.
    let door = SluiceProcess::front_door_with_env(&redis.url, &[], &trust);
    let worker = SluiceProcess::worker_with_env(&redis.url, "tls-worker", &["--concurrency", "1"], &trust);
    let key = common::create_tenant(&door.url, ADMIN, "acme").await;
    let response = Client::new()
        .post(format!("{}/v1/functions/resize/invoke?width=16", door.url))
        .bearer_auth(&key)
        .body(common::photo("hibiscus.regular.png"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let image = image::load_from_memory(&response.bytes().await.expect("body")).expect("decodes");
    assert_eq!(image.width(), 16);
    for process in [&door, &worker] {
        assert!(!process.logs().contains(sluice_testkit::TLS_REDIS_PASSWORD), "the password was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_tls_redis_is_refused_and_the_password_never_shown() {
    let redis = sluice_testkit::spawn_redis_tls();
    // Trust an unrelated certificate: the server's chain does not verify.
    let elsewhere = sluice_testkit::spawn_redis_tls();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0", "--redis", &redis.url])
        .arg("--data-dir")
        .arg(common::processes::node_data_dir())
        .env("SSL_CERT_FILE", &elsewhere.ca_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node neither started nor gave up within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = child.wait_with_output().expect("output");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot use rediss://:***@localhost:"), "{stderr}");
    assert!(!stderr.contains(sluice_testkit::TLS_REDIS_PASSWORD), "the password was shown:\n{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(sluice_testkit::TLS_REDIS_PASSWORD));
}
