//! Worker slots: each takes a job from the queue, runs it in the sandbox,
//! logs its usage and settles the delivery. Traps and load-shedding are
//! retried (they may be the host's fault); every other outcome is final.

use std::sync::Arc;
use std::time::Duration;

use sluice_scheduler::{Completion, Delivery, JobError, JobOutput};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::platform::{Platform, job_error};
use crate::runtime::{CallLimits, InvokeError, Request};

/// How long an idle slot waits on the queue before checking for shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Starts `slots` workers; they stop once `stop` turns true and the queue
/// has nothing left for them (so accepted jobs drain).
pub fn spawn_slots(platform: Arc<Platform>, slots: usize, node: &str, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for slot in 0..slots {
        let platform = Arc::clone(&platform);
        let name = format!("{node}/{slot}");
        let stop = stop.clone();
        set.spawn(async move { run_slot(platform, name, stop).await });
    }
    set
}

async fn run_slot(platform: Arc<Platform>, name: String, stop: watch::Receiver<bool>) {
    loop {
        match platform.queue.reserve(&name, IDLE_WAIT).await {
            Ok(Some(delivery)) => run_job(&platform, delivery).await,
            Ok(None) if *stop.borrow() => return,
            Ok(None) => {}
            Err(err) => {
                tracing::error!(worker = %name, cause = %err, "cannot reserve a job; backing off");
                if *stop.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs one delivery to its end.
#[tracing::instrument(skip_all, fields(job_id = %delivery.job.id, tenant = %delivery.job.tenant, function = %delivery.job.function))]
pub async fn run_job(platform: &Platform, delivery: Delivery) {
    let queue = &platform.queue;
    if let Err(err) = queue.start(&delivery).await {
        tracing::warn!(cause = %err, "lost the job before starting it");
        return;
    }
    let job = &delivery.job;
    let function = match platform.function(&job.version) {
        Ok(function) => function,
        Err(err) => {
            // Possibly transient (bytes not yet replicated, a full disk): retry.
            let error = JobError { code: "function_unavailable".to_owned(), message: format!("{err:#}") };
            tracing::error!(cause = %error.message, "cannot load the job's function");
            if let Err(queue_err) = queue.retry(&delivery, &error).await {
                tracing::warn!(cause = %queue_err, "cannot return the job for a retry");
            }
            release_if_final(platform, &delivery).await;
            return;
        }
    };
    let request = Request {
        body: job.request.body.clone(),
        content_type: job.request.content_type.clone(),
        params: job.request.params.clone(),
    };
    let limits = CallLimits::from(platform.runtime.config());

    // Keep the lease while a long call runs, so it is never handed to a second worker.
    let heartbeat = async {
        let every = Duration::from_secs(5);
        loop {
            tokio::time::sleep(every).await;
            if let Err(err) = queue.extend(&delivery).await {
                tracing::warn!(cause = %err, "cannot extend the job's lease");
            }
        }
    };
    let invocation = tokio::select! {
        invocation = platform.runtime.invoke_with(&function, request, &limits) => invocation,
        () = heartbeat => unreachable!("the heartbeat never ends"),
    };

    let outcome = invocation.usage.outcome.clone();
    platform.metrics.invocations.with_label_values(&[&job.function, &outcome]).inc();
    platform
        .metrics
        .invocation_seconds
        .with_label_values(&[&job.function])
        .observe(invocation.usage.wall_us as f64 / 1e6);
    if let Err(err) = platform.usage.record(&job.id.0, &job.tenant, &job.function, &invocation.usage) {
        tracing::error!(cause = %err, "cannot log usage");
    }
    if !invocation.log.stderr.is_empty() {
        tracing::debug!(stderr = %invocation.log.stderr, "function stderr");
    }

    let result = match invocation.result {
        Ok(output) => Ok((JobOutput { body: output.body, content_type: output.content_type }, invocation.usage)),
        Err(err @ (InvokeError::Trapped(_) | InvokeError::Overloaded(_))) => {
            let error = job_error(&err);
            if let Err(queue_err) = queue.retry(&delivery, &error).await {
                tracing::warn!(cause = %queue_err, "cannot return the job for a retry");
            }
            release_if_final(platform, &delivery).await;
            return;
        }
        Err(err) => Err((job_error(&err), Some(invocation.usage))),
    };
    match result {
        Ok((output, usage)) => settle_with(platform, &delivery, Completion::Succeeded { output, usage }).await,
        Err((error, usage)) => settle_with(platform, &delivery, Completion::Failed { error, usage }).await,
    }
}

async fn settle_with(platform: &Platform, delivery: &Delivery, completion: Completion) {
    if let Err(err) = platform.queue.complete(delivery, completion).await {
        tracing::error!(cause = %err, "cannot record the job's outcome");
    }
    platform.release(&delivery.job.tenant);
}

/// After a retry the job may have been dead-lettered (final): then its
/// tenant's concurrency slot is free again.
async fn release_if_final(platform: &Platform, delivery: &Delivery) {
    if let Ok(Some(record)) = platform.queue.job(&delivery.job.id).await
        && record.status.is_final()
    {
        platform.release(&delivery.job.tenant);
    }
}
