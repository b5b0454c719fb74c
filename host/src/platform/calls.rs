//! Calls through the queue: a sync call waits for its job, an async one is
//! accepted (once per `Idempotency-Key`) and looked up later. The HTTP
//! handlers are thin wrappers over these, and tests can call them directly.

use std::time::Duration;

use sluice_core::{CallOutput, CallRequest, ErrorCode, TenantId};
use sluice_scheduler::{
    IdempotencyKey, Job, JobId, JobKind, JobRecord, JobStatus, QueueError, Submitted, SyncEnd, TenantLimits, now_ms,
};

use crate::runtime::CallLimits;
use crate::store::tenants::Tenant;

use super::{Platform, Resolved};
use crate::store::StoreError;

/// How long a sync call may wait beyond the function's own deadline
/// (queueing, loading the function, I/O).
pub const SYNC_GRACE: Duration = Duration::from_secs(2);

/// Why a call was not accepted, or has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The queue refused the job or cannot be reached.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The state store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The `Idempotency-Key` names a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyConflict,
    /// The job's record expired while a caller waited for it.
    #[error("job {0} vanished while a caller waited for it")]
    Vanished(JobId),
    /// The job succeeded, but its output is no longer kept.
    #[error("the result of job {0} has expired")]
    ResultExpired(JobId),
}

impl CallError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Queue(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            Self::Vanished(_) => ErrorCode::Internal,
            Self::ResultExpired(_) => ErrorCode::NotFound,
        }
    }
}

/// How a sync call ended, as far as its caller can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncCall {
    /// The function produced `output`.
    Succeeded {
        /// The job's final record.
        record: JobRecord,
        /// What the function returned.
        output: CallOutput,
    },
    /// The job failed; the record says why.
    Failed(JobRecord),
    /// No result within the function's deadline plus [`SYNC_GRACE`]; the
    /// job goes on and can be looked up by its id.
    Pending {
        /// The job's record when the caller gave up.
        record: JobRecord,
        /// How long the caller waited.
        waited: Duration,
    },
}

/// An accepted async job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The job's id.
    pub id: JobId,
    /// Its status now (a repeated `Idempotency-Key` may find it finished).
    pub status: JobStatus,
}

impl Platform {
    /// Runs `call` and waits for its outcome, for at most the function's
    /// deadline plus [`SYNC_GRACE`]. The output is taken from the queue as
    /// it is returned: a sync call's result is not kept once delivered.
    pub async fn call_sync(
        &self,
        tenant: &Tenant,
        function: Resolved,
        call: CallRequest,
    ) -> Result<SyncCall, CallError> {
        let job = new_job(tenant, function, call, JobKind::Sync);
        let id = job.id.clone();
        let waited = self.call_limits(&tenant.limits.for_jobs()).timeout + SYNC_GRACE;
        let SyncEnd { record, output } =
            self.queue.call(job, waited).await?.ok_or_else(|| CallError::Vanished(id.clone()))?;
        match record.status {
            JobStatus::Succeeded => {
                let output = output.ok_or(CallError::ResultExpired(id))?;
                Ok(SyncCall::Succeeded { record, output })
            }
            JobStatus::Failed | JobStatus::Cancelled => Ok(SyncCall::Failed(record)),
            JobStatus::Queued | JobStatus::Running => Ok(SyncCall::Pending { record, waited }),
        }
    }

    /// Accepts `call` as an async job, whose output is kept for the job TTL
    /// within the tenant's and the queue's result budgets. With an
    /// `Idempotency-Key`, the same request again names the same job: the
    /// queue looks the key up, records it and enqueues the job in one step,
    /// so a key never names a job that does not exist and a retried
    /// submission never makes a second job.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        function: Resolved,
        call: CallRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted, CallError> {
        let key = idempotency_key.map(|key| IdempotencyKey::new(key, fingerprint(&function.name, &call)));
        let job = new_job(tenant, function, call, JobKind::Async);
        let id = job.id.clone();
        match self.queue.submit(job, key.as_ref()).await? {
            Submitted::Accepted => Ok(Accepted { id, status: JobStatus::Queued }),
            Submitted::Existing { id, status } => Ok(Accepted { id, status }),
            Submitted::Conflict => Err(CallError::IdempotencyConflict),
        }
    }

    /// The limits one call of a job held to `limits` runs under: the
    /// node's, lowered where the tenant's operator set lower ones.
    pub fn call_limits(&self, limits: &TenantLimits) -> CallLimits {
        let mut call = CallLimits::from(self.runtime.config());
        if let Some(memory) = limits.memory_bytes {
            call.memory = call.memory.min(usize::try_from(memory).unwrap_or(usize::MAX));
        }
        if let Some(timeout) = limits.timeout_ms {
            call.timeout = call.timeout.min(Duration::from_millis(timeout));
        }
        call
    }

    /// `tenant`'s job `id`; another tenant's job looks exactly like a missing one.
    pub async fn owned_job(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        Ok(self.queue.job(id).await?.filter(|record| &record.tenant == tenant))
    }
}

/// A job of `tenant` running `function` on `call`, under a fresh id, held
/// to the limits its operator set.
fn new_job(tenant: &Tenant, function: Resolved, call: CallRequest, kind: JobKind) -> Job {
    Job {
        id: JobId::random(),
        tenant: tenant.id.clone(),
        function: function.name,
        version: function.version,
        request: call,
        submitted_at_ms: now_ms(),
        kind,
        limits: tenant.limits.for_jobs(),
    }
}

/// What makes two submissions "the same request" for an `Idempotency-Key`:
/// every part, length-prefixed so no two different requests share a digest.
pub fn fingerprint(function: &str, call: &CallRequest) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(function.as_bytes());
    part(call.content_type.as_bytes());
    for (key, value) in &call.params {
        part(key.as_bytes());
        part(value.as_bytes());
    }
    hasher.update(&call.body);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &[u8], params: &[(&str, &str)]) -> CallRequest {
        CallRequest {
            body: body.to_vec(),
            content_type: "image/png".to_owned(),
            params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn fingerprints_differ_for_any_differing_part() {
        let base = fingerprint("resize", &call(b"x", &[("width", "10")]));
        assert_eq!(base, fingerprint("resize", &call(b"x", &[("width", "10")])));
        assert_ne!(base, fingerprint("grey", &call(b"x", &[("width", "10")])));
        assert_ne!(base, fingerprint("resize", &call(b"y", &[("width", "10")])));
        assert_ne!(base, fingerprint("resize", &call(b"x", &[("width", "1"), ("0", "")])));
    }
}
