//! What a job is: its request, its record (status, error, usage) and its
//! output. Shared by every backend and by the host.

use serde::{Deserialize, Serialize};
use sluice_core::{CallOutput, CallRequest, ErrorCode, Outcome, TenantId, Version};

/// A job's id: a random UUID, unguessable so ids can appear in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unit of work: run `version` of `function` for `tenant` on `request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Owning tenant's id.
    pub tenant: TenantId,
    /// Function name as the caller used it.
    pub function: String,
    /// Exact component version (`sha256:…`) resolved when the job was accepted.
    pub version: Version,
    /// The input.
    pub request: CallRequest,
    /// When the job was accepted, in milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    /// Whether a caller holds a connection for the answer: within a
    /// tenant, sync jobs are handed out before async ones.
    #[serde(default)]
    pub kind: JobKind,
    /// The tenant's own limits, as its record said when the job was
    /// accepted; every node applies them without looking the tenant up.
    #[serde(default)]
    pub limits: TenantLimits,
}

/// Whether a caller is waiting on a connection for a job's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A caller waits for the answer (`POST …/invoke`).
    Sync,
    /// The answer is kept to be fetched later (`POST …/jobs`).
    #[default]
    Async,
}

impl JobKind {
    /// The kind as it appears in the API and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

/// An operator's limits for one tenant, overriding the node's defaults
/// (`None` keeps the default). The queue applies the first two, the worker
/// the last two (never above the node's own ceilings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantLimits {
    /// Jobs of the tenant running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    /// Jobs of the tenant waiting for a worker at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
    /// Memory one call may use, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// How long one call may run, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished without one; see the error.
    Failed,
    /// Withdrawn by its tenant before any worker took it.
    Cancelled,
}

impl JobStatus {
    /// The status as it appears in the API and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`JobStatus::as_str`].
    pub fn parse(status: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == status)
    }

    /// Every status, in the order a job can pass through them.
    pub const ALL: [Self; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    /// True once the job has ended: `succeeded`, `failed` or `cancelled`.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Why a job failed: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Stable error code, e.g. `timeout`.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl JobError {
    /// Why a job's delivery lapsed: its worker stopped renewing the lease
    /// (it died or hung). Every backend reports it in these words.
    pub fn worker_lost() -> Self {
        Self { code: ErrorCode::WorkerLost, message: "the worker stopped responding (visibility timeout)".to_owned() }
    }
}

/// What one call consumed (the runtime fills it in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// `ok`, or the error code the call ended with.
    #[schema(value_type = String, example = "ok")]
    pub outcome: Outcome,
    /// Wall-clock time of the call, µs.
    pub wall_us: u64,
    /// CPU time spent running the guest, µs.
    pub cpu_us: u64,
    /// Fuel consumed, when fuel metering is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Input size in bytes.
    pub bytes_in: u64,
    /// Output size in bytes (0 on failure).
    pub bytes_out: u64,
    /// Largest linear memory the guest reached, bytes.
    pub peak_memory_bytes: u64,
}

/// A job's visible state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// Owning tenant's id.
    pub tenant: TenantId,
    /// Function name.
    pub function: String,
    /// Component version.
    pub version: Version,
    /// Current status.
    pub status: JobStatus,
    /// Why it failed, when it did.
    pub error: Option<JobError>,
    /// What it consumed, once it ended (if it ran).
    pub usage: Option<Usage>,
    /// What each attempt that ran guest code consumed, in order (the last
    /// one is `usage` once the job ended): every one of them is billed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Usage>,
    /// Times it was handed to a worker.
    pub deliveries: u32,
    /// Accepted at, ms since the epoch.
    pub submitted_at_ms: u64,
    /// Ended at, ms since the epoch.
    pub finished_at_ms: Option<u64>,
}

impl JobRecord {
    /// The record of a job that was just accepted.
    pub fn queued(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            function: job.function.clone(),
            version: job.version.clone(),
            status: JobStatus::Queued,
            error: None,
            usage: None,
            attempts: Vec::new(),
            deliveries: 0,
            submitted_at_ms: job.submitted_at_ms,
            finished_at_ms: None,
        }
    }
}

/// What the attempt that ended a job printed, kept with its record so the
/// tenant can debug its function: the host caps each stream per call, and
/// the queue keeps a log only while the tenant's result budget has room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobLog {
    /// What the function wrote to standard output.
    pub stdout: String,
    /// What the function wrote to standard error.
    pub stderr: String,
    /// True when the function printed more than is shown: past the
    /// per-call cap, or all of it when the tenant's result budget had no
    /// room to keep it.
    pub truncated: bool,
}

impl JobLog {
    /// Bytes the log occupies in a result budget.
    pub fn bytes(&self) -> u64 {
        (self.stdout.len() + self.stderr.len()) as u64
    }

    /// True when there is nothing to keep: nothing printed, nothing cut.
    pub fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty() && !self.truncated
    }

    /// What is kept of a log that did not fit the budget.
    pub fn dropped(&self) -> Self {
        Self { stdout: String::new(), stderr: String::new(), truncated: true }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// It produced an output.
    Succeeded {
        /// The output.
        output: CallOutput,
        /// What it consumed.
        usage: Usage,
        /// What it printed.
        log: JobLog,
    },
    /// It did not.
    Failed {
        /// Why.
        error: JobError,
        /// What it consumed, when it ran at all.
        usage: Option<Usage>,
        /// What it printed, when it ran at all.
        log: JobLog,
    },
}

/// A job handed to a worker; hold it until `complete` or `retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// Identifies this hand-out; a reclaimed job gets a new one.
    pub receipt: String,
    /// 1 for the first delivery, 2 for the first retry, …
    pub attempt: u32,
}

/// Longest guest-supplied text (an error message, an output's media type)
/// kept or returned, in bytes: a guest controls it, and it is stored with
/// the job for the TTL.
pub const MAX_GUEST_TEXT: usize = 4096;

/// `text` cut to [`MAX_GUEST_TEXT`] bytes at a character boundary.
pub fn cap_text(text: &mut String) {
    if text.len() > MAX_GUEST_TEXT {
        let mut end = MAX_GUEST_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl JobError {
    /// The error with its message capped to [`MAX_GUEST_TEXT`].
    pub fn capped(mut self) -> Self {
        cap_text(&mut self.message);
        self
    }
}

impl Completion {
    /// The completion with its guest-supplied text capped to [`MAX_GUEST_TEXT`].
    pub fn capped(self) -> Self {
        match self {
            Self::Succeeded { mut output, usage, log } => {
                cap_text(&mut output.content_type);
                Self::Succeeded { output, usage, log }
            }
            Self::Failed { error, usage, log } => Self::Failed { error: error.capped(), usage, log },
        }
    }
}

/// An `Idempotency-Key` as the queue keeps it: the key's SHA-256 (a client's
/// key may hold anything; it is never stored as sent) and the fingerprint of
/// the request it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Hex SHA-256 of the key as the client sent it.
    pub hash: String,
    /// What makes two submissions the same request (no spaces).
    pub fingerprint: String,
}

impl IdempotencyKey {
    /// The key `raw` for a request with `fingerprint`.
    pub fn new(raw: &str, fingerprint: impl Into<String>) -> Self {
        use sha2::Digest;
        Self { hash: hex::encode(sha2::Sha256::digest(raw.as_bytes())), fingerprint: fingerprint.into() }
    }
}

/// How a sync job ended, as its caller sees it: the record, and the
/// output (taken: it is not kept once delivered) when it succeeded and
/// the output was still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEnd {
    /// The job's record when it ended, or when the caller stopped waiting.
    pub record: JobRecord,
    /// The output, when the job succeeded.
    pub output: Option<CallOutput>,
}

/// What [`crate::Queue::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The job was accepted (and the key, if any, now names it).
    Accepted,
    /// The key already names this kept job, for the same request.
    Existing {
        /// The job the key names.
        id: JobId,
        /// Its status now.
        status: JobStatus,
    },
    /// The key already names a kept job for a different request.
    Conflict,
}

/// One tenant's share of the queue, for `GET /v1/queue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQueue {
    /// Jobs waiting for a worker.
    pub queued: u64,
    /// Bytes of request bodies waiting.
    pub queued_bytes: u64,
    /// Jobs a worker holds now.
    pub running: u64,
    /// When the job waiting longest was accepted, ms since the epoch.
    pub oldest_queued_at_ms: Option<u64>,
}

/// Which of a tenant's kept jobs [`crate::Queue::jobs`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this function (by the name the caller used).
    pub function: Option<String>,
}

/// One page of a job listing, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobPage {
    /// The jobs on this page.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts; `None` on the last one.
    pub cursor: Option<String>,
}

/// What [`crate::Queue::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// The job was waiting; it is now `cancelled` and will never run.
    Cancelled(JobRecord),
    /// A worker already took the job (or it ended): it was left alone.
    TooLate(JobRecord),
    /// The tenant has no such kept job.
    NotFound,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_guest_text_is_cut_at_a_character_boundary() {
        let mut text = format!("a{}", "é".repeat(MAX_GUEST_TEXT));
        cap_text(&mut text);
        assert_eq!(text.len(), MAX_GUEST_TEXT - 1, "the two-byte character at the cap is dropped whole");
        let mut short = "fine".to_owned();
        cap_text(&mut short);
        assert_eq!(short, "fine");
    }

    #[test]
    fn an_idempotency_key_is_kept_as_its_hash() {
        let key = IdempotencyKey::new("secret key", "fp");
        assert_eq!(key.hash.len(), 64);
        assert!(!key.hash.contains("secret"));
        assert_eq!(key, IdempotencyKey::new("secret key", "fp"));
    }
}
