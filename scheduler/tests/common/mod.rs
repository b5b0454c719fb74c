//! Helpers shared by the queue's integration tests: jobs, outcomes, the
//! small bounds the scenarios use, and the backends the conformance suite
//! runs on.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::{CallOutput, CallRequest, ErrorCode, Outcome, TenantId, Version};
use sluice_scheduler::{Completion, Job, JobError, JobId, JobKind, JobLog, Queue, QueueConfig, TenantLimits, Usage};
use sluice_testkit::RedisGuard;

/// A job of tenant `t` with `body` and a parameter, so a round trip that
/// drops any part of the request shows.
pub fn job(id: &str, body: &[u8]) -> Job {
    Job {
        id: JobId(id.to_owned()),
        tenant: TenantId::from("t"),
        function: "f".to_owned(),
        version: Version::from("sha256:0"),
        request: CallRequest {
            body: body.to_vec(),
            content_type: "image/png".to_owned(),
            params: vec![("width".to_owned(), "10".to_owned())],
        },
        submitted_at_ms: 1,
        kind: JobKind::Async,
        limits: TenantLimits::default(),
    }
}

/// Like [`job_of`], a sync job (a caller waits on a connection).
pub fn sync_job_of(tenant: &str, id: &str) -> Job {
    Job { kind: JobKind::Sync, ..job_of(tenant, id) }
}

/// `Idempotency-Key` `raw` for requests with fingerprint `fingerprint`.
pub fn key(raw: &str, fingerprint: &str) -> sluice_scheduler::IdempotencyKey {
    sluice_scheduler::IdempotencyKey::new(raw, fingerprint)
}

/// Like [`job`], for tenant `tenant`.
pub fn job_of(tenant: &str, id: &str) -> Job {
    Job { tenant: TenantId::from(tenant), ..job(id, b"x") }
}

/// What a trapped attempt consumed.
pub fn trapped_usage() -> Usage {
    Usage { outcome: Outcome::Failed(ErrorCode::FunctionTrapped), cpu_us: 3, ..Usage::default() }
}

/// A success with output `body` and a recognisable usage.
pub fn success(body: &[u8]) -> Completion {
    Completion::Succeeded {
        output: CallOutput { body: body.to_vec(), content_type: "image/webp".to_owned() },
        usage: Usage { outcome: Outcome::Ok, cpu_us: 7, ..Usage::default() },
        log: JobLog::default(),
    }
}

/// The error a retried job gives back.
pub fn trapped() -> JobError {
    JobError { code: ErrorCode::FunctionTrapped, message: "it trapped".to_owned() }
}

/// Small bounds and short timeouts, so every limit is reached in a few
/// calls and every timeout passes in well under a second of real time.
pub fn config() -> QueueConfig {
    QueueConfig {
        capacity: 3,
        queue_bytes: 1 << 20,
        tenant_queue_quota: 100,
        tenant_queue_bytes: 1 << 20,
        visibility_timeout: Duration::from_millis(300),
        max_deliveries: 2,
        result_ttl: Duration::from_secs(60),
        tenant_concurrency: 10,
        tenant_result_bytes: 1 << 20,
        result_bytes: 1 << 30,
        max_dead_letters: 100,
        sync_records_per_tenant: 1000,
    }
}

/// Longer than [`config`]'s visibility timeout.
pub const PAST_VISIBILITY: Duration = Duration::from_millis(400);

/// A queue backend the conformance suite runs on.
#[async_trait::async_trait]
pub trait Backend: Sync {
    /// A fresh, empty queue with `config`.
    async fn open(&self, config: QueueConfig) -> Arc<dyn Queue>;

    /// Lets `duration` pass as this backend's clock counts it.
    async fn elapse(&self, duration: Duration);
}

/// The in-memory backend, on tokio's clock: tests run it on paused time
/// and time passes when [`Backend::elapse`] advances it.
#[derive(Debug)]
pub struct Memory;

#[async_trait::async_trait]
impl Backend for Memory {
    async fn open(&self, config: QueueConfig) -> Arc<dyn Queue> {
        sluice_scheduler::connect("memory:", config, "").await.expect("a memory queue")
    }

    async fn elapse(&self, duration: Duration) {
        tokio::time::advance(duration).await;
    }
}

/// The Redis backend on a `redis-server` of its own, on the wall clock
/// (Redis keeps lease idle times and key expiry itself).
#[derive(Debug)]
pub struct Redis {
    server: RedisGuard,
}

impl Redis {
    /// Starts the server.
    pub fn start() -> Self {
        Self { server: sluice_testkit::spawn_redis() }
    }
}

#[async_trait::async_trait]
impl Backend for Redis {
    async fn open(&self, config: QueueConfig) -> Arc<dyn Queue> {
        sluice_scheduler::connect(&self.server.url, config, "sluice").await.expect("a Redis queue")
    }

    async fn elapse(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
