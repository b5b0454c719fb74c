//! A `sluice serve` child process for the report's scenarios that need a
//! whole node (its own memory, its own threads), with an admin token.

use std::io::BufRead;

use anyhow::{Context, bail};

use super::scenarios::sluice_binary;

/// The admin token of every node the report starts.
const ADMIN: &str = "report-admin";

/// Where a node listens, for clients that outlive a borrow of the [`Node`].
#[derive(Debug, Clone)]
pub struct Address {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// `127.0.0.1:port`.
    pub addr: String,
}

/// A `sluice serve` child process, killed on drop.
pub struct Node {
    child: std::process::Child,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// `127.0.0.1:port`.
    pub addr: String,
    data: tempfile::TempDir,
}

impl Node {
    /// Starts a node with default flags plus `extra` and waits until it listens.
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = std::process::Command::new(sluice_binary()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN, "--data-dir"])
            .arg(data.path())
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start sluice serve")?;
        let stdout = child.stdout.take().context("serve stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next().transpose().context("serve output")? else {
                let _ = child.kill();
                bail!("sluice serve exited before listening");
            };
            if let Some(rest) = line.strip_prefix("sluice listening on ") {
                break rest.split_whitespace().next().context("an address")?.to_owned();
            }
        };
        // Keep draining so the node never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let addr = url.trim_start_matches("http://").to_owned();
        Ok(Self { child, url, addr, data })
    }

    /// A memory figure of the node's process from `/proc` (`VmRSS`, `VmHWM`), MiB.
    pub fn memory_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// The size of the file `name` in the node's data directory, bytes (0 if absent).
    pub fn data_file_bytes(&self, name: &str) -> u64 {
        std::fs::metadata(self.data.path().join(name)).map_or(0, |meta| meta.len())
    }

    /// Deploys `component` as `tenant_key`'s function `name`.
    pub async fn deploy(&self, tenant_key: &str, name: &str, component: &[u8]) -> anyhow::Result<()> {
        let response = reqwest::Client::new()
            .put(format!("{}/v1/functions/{name}", self.url))
            .bearer_auth(tenant_key)
            .body(component.to_vec())
            .send()
            .await
            .with_context(|| format!("deploy {name}"))?;
        if !response.status().is_success() {
            bail!("deploying {name} answered {}", response.status());
        }
        Ok(())
    }

    /// Where the node listens.
    pub fn address(&self) -> Address {
        Address { url: self.url.clone(), addr: self.addr.clone() }
    }

    /// Creates tenant `name`; returns its API key.
    pub async fn tenant(&self, name: &str) -> anyhow::Result<String> {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/tenants", self.url))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .context("create a tenant")?;
        let created: serde_json::Value = response.json().await.context("tenant JSON")?;
        Ok(created["api_key"].as_str().context("an API key")?.to_owned())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
