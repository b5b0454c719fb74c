//! Calls every HTTP test makes against a [`TestServer`]: deploy, invoke,
//! read an error, and poll a job until it reaches a status.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::TestServer;
use super::processes::SluiceProcess;

/// A node the tests talk to over HTTP: in this process or a child one.
pub trait Node {
    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    fn url(&self) -> &str;
}

impl Node for TestServer {
    fn url(&self) -> &str {
        &self.url
    }
}

impl Node for SluiceProcess {
    fn url(&self) -> &str {
        &self.url
    }
}

/// The status, `error.code` and `error.message` of an error response.
pub async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("an error body is JSON");
    let code = body["error"]["code"].as_str().expect("error.code").to_owned();
    let message = body["error"]["message"].as_str().expect("error.message").to_owned();
    (status, code, message)
}

/// Deploys `component` as the caller's function `name`.
pub async fn deploy(server: &impl Node, key: &str, name: &str, component: Vec<u8>) -> reqwest::Response {
    let url = format!("{}/v1/functions/{name}", server.url());
    reqwest::Client::new().request(Method::PUT, url).bearer_auth(key).body(component).send().await.expect("sent")
}

/// POSTs `body` to `path_and_query` as the caller.
pub async fn invoke(server: &TestServer, key: &str, path_and_query: &str, body: Vec<u8>) -> reqwest::Response {
    server.request(Method::POST, path_and_query, key).body(body).send().await.expect("sent")
}

/// Polls job `id` until its status is `status` (10 s at most).
pub async fn wait_for_status(server: &impl Node, key: &str, id: &str, status: &str) -> Value {
    wait_until(server, key, id, |seen| seen == status).await
}

/// Polls job `id` until it has ended (10 s at most).
pub async fn wait_for_job(server: &impl Node, key: &str, id: &str) -> Value {
    wait_until(server, key, id, |seen| ["succeeded", "failed", "cancelled"].contains(&seen)).await
}

/// Polls job `id` until `done` accepts its status (10 s at most).
pub async fn wait_until(server: &impl Node, key: &str, id: &str, done: impl Fn(&str) -> bool) -> Value {
    for _ in 0..200 {
        let url = format!("{}/v1/jobs/{id}", server.url());
        let response = reqwest::Client::new().get(url).bearer_auth(key).send().await.expect("sent");
        let job: Value = response.json().await.expect("json");
        if done(job["status"].as_str().unwrap_or_default()) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not reach the awaited status within 10 s");
}
