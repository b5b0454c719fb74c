//! The abuse suite: each scenario runs a real `sluice serve` process on
//! loopback, attacks it the way one anonymous client or one tenant could
//! using only the public API, and asserts both the attacker's precise
//! refusal and that a second, well-behaved tenant (the [`Victim`]) is served
//! normally during and after the attack. Attacks are bounded in count and
//! time and stop by themselves.

#[path = "../common/mod.rs"]
mod common;
mod connections;
mod memory;
mod results;

use std::future::Future;
use std::time::{Duration, Instant};

use common::processes::{ADMIN, SluiceProcess};

mod deploys;

/// A node under attack: an embedded `sluice serve` with its own data dir.
pub struct Node {
    /// The child process.
    pub process: SluiceProcess,
    /// Its state, removed with the node.
    pub data: tempfile::TempDir,
    client: reqwest::Client,
}

impl Node {
    /// Starts `sluice serve` with default flags plus `extra`.
    pub fn start(extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let process = SluiceProcess::embedded(data.path(), extra);
        Self { process, data, client: reqwest::Client::new() }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.process.url
    }

    /// `127.0.0.1:<port>`, for raw sockets.
    pub fn addr(&self) -> &str {
        self.url().trim_start_matches("http://")
    }

    /// A client request to `path` authenticated with `key`.
    pub fn request(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url())).bearer_auth(key)
    }

    /// Creates tenant `name` and returns its API key.
    pub async fn tenant(&self, name: &str) -> String {
        common::create_tenant(self.url(), ADMIN, name).await
    }

    /// Stops the node (SIGTERM) and starts it again on the same data
    /// directory with default flags plus `extra`.
    pub fn restart(&mut self, extra: &[&str]) {
        self.process.terminate();
        self.process = SluiceProcess::embedded(self.data.path(), extra);
    }

    /// Resident memory of the node process now, in bytes.
    pub fn rss(&self) -> u64 {
        self.process.memory("VmRSS")
    }

    /// The most resident memory the node process has had, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.process.memory("VmHWM")
    }
}

/// A well-behaved tenant: small sync resizes of a real photo, each of
/// which must succeed while another tenant or client attacks the node.
pub struct Victim {
    key: String,
    photo: Vec<u8>,
}

impl Victim {
    /// Creates the victim tenant on `node`.
    pub async fn new(node: &Node) -> Self {
        Self { key: node.tenant("victim").await, photo: common::photo("hibiscus.regular.png") }
    }

    /// One call; panics unless it is a 200 with an image. Returns its latency.
    pub async fn probe(&self, node: &Node) -> Duration {
        let started = Instant::now();
        let response = node
            .request(reqwest::Method::POST, "/v1/functions/resize/invoke?width=64", &self.key)
            .timeout(Duration::from_secs(30))
            .body(self.photo.clone())
            .send()
            .await
            .expect("the victim's call is answered");
        let status = response.status();
        let body = response.bytes().await.expect("the victim's body arrives");
        assert_eq!(status, 200, "the victim's call failed: {}", String::from_utf8_lossy(&body));
        assert!(!body.is_empty(), "the victim got an empty image");
        started.elapsed()
    }

    /// Probes every 100 ms while `attack` runs, then once more after it
    /// ends; every probe must succeed. Returns the attack's output and the
    /// latencies seen during it.
    pub async fn served_during<T>(&self, node: &Node, attack: impl Future<Output = T>) -> (T, Vec<Duration>) {
        // Both run in this task (join polls them in turn), so a plain Cell
        // tells the probes the attack is over.
        let over = std::cell::Cell::new(false);
        let attack = async {
            let output = attack.await;
            over.set(true);
            output
        };
        let probes = async {
            let mut latencies = Vec::new();
            while !over.get() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                latencies.push(self.probe(node).await);
            }
            latencies
        };
        let (output, latencies) = tokio::join!(attack, probes);
        self.probe(node).await;
        (output, latencies)
    }
}
