//! Calls through the queue: a sync call waits for its job, an async one is
//! accepted (once per `Idempotency-Key`) and looked up later. The HTTP
//! handlers are thin wrappers over these, and tests can call them directly.

use std::time::Duration;

use sluice_core::{CallOutput, CallRequest, ErrorCode, TenantId};
use sluice_scheduler::{Job, JobId, JobRecord, JobStatus, QueueError, now_ms};

use super::{Platform, Resolved};
use crate::store::StoreError;
use crate::store::idempotency::Claim;

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
    /// The first request with this `Idempotency-Key` is still being accepted.
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInProgress,
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
            Self::IdempotencyInProgress => ErrorCode::IdempotencyInProgress,
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
    /// Queues `call` to `function` for `tenant` under a fresh id; the queue
    /// enforces its own and the tenant's bounds.
    pub async fn enqueue(&self, tenant: &TenantId, function: Resolved, call: CallRequest) -> Result<JobId, QueueError> {
        self.enqueue_as(JobId::random(), tenant, function, call).await
    }

    async fn enqueue_as(
        &self,
        id: JobId,
        tenant: &TenantId,
        function: Resolved,
        call: CallRequest,
    ) -> Result<JobId, QueueError> {
        let job = Job {
            id: id.clone(),
            tenant: tenant.clone(),
            function: function.name,
            version: function.version,
            request: call,
            submitted_at_ms: now_ms(),
        };
        self.queue.enqueue(job).await?;
        Ok(id)
    }

    /// Runs `call` and waits for its outcome, for at most the function's
    /// deadline plus [`SYNC_GRACE`].
    pub async fn call_sync(
        &self,
        tenant: &TenantId,
        function: Resolved,
        call: CallRequest,
    ) -> Result<SyncCall, CallError> {
        let id = self.enqueue(tenant, function, call).await?;
        let waited = self.runtime.config().timeout + SYNC_GRACE;
        let record = self.queue.wait(&id, waited).await?.ok_or_else(|| CallError::Vanished(id.clone()))?;
        match record.status {
            JobStatus::Succeeded => {
                let output = self.queue.output(&id).await?.ok_or(CallError::ResultExpired(id))?;
                Ok(SyncCall::Succeeded { record, output })
            }
            JobStatus::Failed => Ok(SyncCall::Failed(record)),
            JobStatus::Queued | JobStatus::Running => Ok(SyncCall::Pending { record, waited }),
        }
    }

    /// Accepts `call` as an async job. With an `Idempotency-Key`, the same
    /// request again names the same job, and the key is claimed before the
    /// job is queued and released if the queue refuses it, so a key never
    /// points at a job that does not exist.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        function: Resolved,
        call: CallRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted, CallError> {
        let Some(key) = idempotency_key else {
            let id = self.enqueue(tenant, function, call).await?;
            return Ok(Accepted { id, status: JobStatus::Queued });
        };
        let keys = &self.stores.idempotency;
        let id = JobId::random();
        let fingerprint = fingerprint(&function.name, &call);
        match keys.claim(tenant, key, &fingerprint, &id, self.queue.result_ttl()).await? {
            Claim::New => match self.enqueue_as(id.clone(), tenant, function, call).await {
                Ok(id) => Ok(Accepted { id, status: JobStatus::Queued }),
                Err(refused) => {
                    if let Err(err) = keys.release(tenant, key, &id).await {
                        tracing::warn!(cause = %err, "cannot release an idempotency key");
                    }
                    Err(refused.into())
                }
            },
            Claim::Conflict => Err(CallError::IdempotencyConflict),
            Claim::Existing(existing) => match self.queue.job(&existing).await? {
                Some(record) => Ok(Accepted { id: existing, status: record.status }),
                None => Err(CallError::IdempotencyInProgress),
            },
        }
    }

    /// `tenant`'s job `id`; another tenant's job looks exactly like a missing one.
    pub async fn owned_job(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobRecord>, QueueError> {
        Ok(self.queue.job(id).await?.filter(|record| &record.tenant == tenant))
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
