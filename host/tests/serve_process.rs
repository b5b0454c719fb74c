//! `sluice serve` as a real process: it prints where it listens, and on
//! SIGTERM it stops accepting, finishes the request in flight and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_request_drains_it_and_exits_zero() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "adm", "--workers", "1"])
        .arg("--data-dir")
        .arg(data.path())
        .env("SLUICE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("serve prints its address").expect("utf-8");
        if let Some(rest) = line.strip_prefix("sluice listening on ") {
            break rest.split_whitespace().next().expect("url").to_owned();
        }
    };

    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{url}/v1/tenants"))
        .bearer_auth("adm")
        .json(&serde_json::json!({"name": "acme"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let key = created["api_key"].as_str().expect("key").to_owned();

    // A slow call: the 24-megapixel photo takes a good fraction of a second.
    let big = common::photo("rachel-hisko-rEM3cK8F1pk-unsplash.jpg");
    let in_flight = tokio::spawn({
        let request = client.post(format!("{url}/v1/functions/resize/invoke?width=300")).bearer_auth(&key).body(big);
        async move { request.send().await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    let response = in_flight.await.expect("task").expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let image = image::load_from_memory(&response.bytes().await.expect("body")).expect("decodes");
    assert_eq!(image.width(), 300);

    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert_eq!(status.code(), Some(0), "a drained shutdown exits 0");
    let refused = client.get(format!("{url}/healthz")).send().await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}
