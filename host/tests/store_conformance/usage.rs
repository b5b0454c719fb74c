//! `UsageLedger`: a job's usage is logged once, and each batch of the log
//! is added to the totals exactly once.

use sluice::store::Stores;
use std::time::Duration;

use sluice::store::usage::{BUCKET_MS, Bucket, CommitError, PERIOD_MS, UsageBatch, UsageRetention};
use sluice_core::{Outcome, TenantId};
use sluice_scheduler::{JobId, Usage};

use crate::common::stores::Backend;

conformance!(
    a_recorded_job_is_pending_with_what_it_consumed,
    a_job_is_recorded_once,
    pending_lists_jobs_oldest_first,
    pending_returns_at_most_the_limit,
    an_empty_log_gives_an_empty_batch,
    a_commit_moves_the_next_batch_past_the_committed_one,
    a_batch_is_committed_once,
    commits_add_to_the_totals,
    totals_sum_each_function_over_the_hours_in_range,
    hourly_gives_each_hour_per_function_in_range_in_order,
    totals_are_private_to_their_tenant,
    a_job_is_not_recorded_again_after_its_batch_was_committed,
    the_log_cursor_and_totals_survive_a_restart,
    a_job_id_is_forgotten_after_the_job_ttl,
    totals_older_than_the_retention_are_dropped,
    totals_are_read_across_days,
);

/// An hour two days ago: recent enough to be within any retention, and a
/// whole day of hours after it is still in the past.
fn hour() -> u64 {
    (sluice_scheduler::now_ms() / PERIOD_MS - 2) * PERIOD_MS
}

fn acme() -> TenantId {
    TenantId::from("t_acme")
}

fn job(id: &str) -> JobId {
    JobId(id.to_owned())
}

fn usage(cpu_us: u64) -> Usage {
    Usage { outcome: Outcome::Ok, cpu_us, wall_us: 2 * cpu_us, bytes_in: 10, bytes_out: 20, ..Usage::default() }
}

fn bucket(function: &str, hour_ms: u64, invocations: u64, cpu_us: u64) -> Bucket {
    Bucket { tenant: acme(), function: function.to_owned(), hour_ms, invocations, cpu_us, ..Bucket::default() }
}

/// A summed total as `totals` returns it: per function, `hour_ms` 0.
fn total(function: &str, invocations: u64, cpu_us: u64) -> Bucket {
    bucket(function, 0, invocations, cpu_us)
}

fn jobs_in(batch: &UsageBatch) -> Vec<&str> {
    batch.entries.iter().map(|e| e.job_id.0.as_str()).collect()
}

/// Records `jobs` of `acme` calling `f`, each with 5 µs of CPU.
async fn record_all(stores: &Stores, jobs: &[&str]) {
    for id in jobs {
        assert!(stores.usage.record(&job(id), &acme(), "f", &usage(5)).await.expect("recorded"), "{id} is new");
    }
}

async fn a_recorded_job_is_pending_with_what_it_consumed(backend: Backend) {
    let stores = backend.open().await;
    let before = sluice_scheduler::now_ms();
    assert!(stores.usage.record(&job("j1"), &acme(), "blur", &usage(5)).await.expect("recorded"));
    let after = sluice_scheduler::now_ms();
    let batch = stores.usage.pending(100).await.expect("pending");
    assert_eq!(batch.entries.len(), 1);
    let entry = &batch.entries[0];
    assert_eq!((&entry.job_id, &entry.tenant, entry.function.as_str()), (&job("j1"), &acme(), "blur"));
    assert_eq!(entry.usage, usage(5));
    assert!((before..=after).contains(&entry.at_ms));
}

async fn a_job_is_recorded_once(backend: Backend) {
    let stores = backend.open().await;
    assert!(stores.usage.record(&job("j1"), &acme(), "f", &usage(5)).await.expect("recorded"));
    assert!(!stores.usage.record(&job("j1"), &acme(), "f", &usage(7)).await.expect("asked"), "a rerun is not billed");
    let batch = stores.usage.pending(100).await.expect("pending");
    assert_eq!(jobs_in(&batch), ["j1"]);
    assert_eq!(batch.entries[0].usage, usage(5), "the first record stands");
}

async fn pending_lists_jobs_oldest_first(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j3", "j1", "j2"]).await;
    assert_eq!(jobs_in(&stores.usage.pending(100).await.expect("pending")), ["j3", "j1", "j2"]);
}

async fn pending_returns_at_most_the_limit(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1", "j2", "j3"]).await;
    assert_eq!(jobs_in(&stores.usage.pending(2).await.expect("pending")), ["j1", "j2"]);
}

async fn an_empty_log_gives_an_empty_batch(backend: Backend) {
    let stores = backend.open().await;
    let batch = stores.usage.pending(100).await.expect("pending");
    assert_eq!(jobs_in(&batch), Vec::<&str>::new());
    assert_eq!(batch.through, batch.from);
}

async fn a_commit_moves_the_next_batch_past_the_committed_one(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1", "j2", "j3"]).await;
    let first = stores.usage.pending(2).await.expect("pending");
    stores.usage.commit(&first, &[bucket("f", hour(), 2, 10)]).await.expect("committed");
    let next = stores.usage.pending(100).await.expect("pending");
    assert_eq!(jobs_in(&next), ["j3"]);
    assert_eq!(next.from, first.through);
}

async fn a_batch_is_committed_once(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    let deltas = [bucket("f", hour(), 1, 5)];
    stores.usage.commit(&batch, &deltas).await.expect("committed");
    let err = stores.usage.commit(&batch, &deltas).await.expect_err("already committed");
    assert!(matches!(err, CommitError::AlreadyAggregated), "{err:?}");
    assert_eq!(stores.usage.totals(&acme(), 0, u64::MAX).await.expect("totals"), [total("f", 1, 5)]);
}

async fn commits_add_to_the_totals(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1"]).await;
    let first = stores.usage.pending(100).await.expect("pending");
    stores.usage.commit(&first, &[bucket("f", hour(), 1, 5)]).await.expect("committed");
    record_all(&stores, &["j2", "j3"]).await;
    let second = stores.usage.pending(100).await.expect("pending");
    let delta = Bucket { failures: 1, wall_us: 30, bytes_in: 40, bytes_out: 50, ..bucket("f", hour(), 2, 10) };
    stores.usage.commit(&second, &[delta]).await.expect("committed");
    let expected = Bucket { failures: 1, wall_us: 30, bytes_in: 40, bytes_out: 50, ..total("f", 3, 15) };
    assert_eq!(stores.usage.totals(&acme(), 0, u64::MAX).await.expect("totals"), [expected]);
}

async fn totals_sum_each_function_over_the_hours_in_range(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    let deltas = [
        bucket("resize", hour(), 1, 1),
        bucket("resize", hour() + BUCKET_MS, 2, 20),
        bucket("resize", hour() + 2 * BUCKET_MS, 4, 300),
        bucket("blur", hour() + BUCKET_MS, 8, 4000),
    ];
    stores.usage.commit(&batch, &deltas).await.expect("committed");
    let all = stores.usage.totals(&acme(), 0, u64::MAX).await.expect("totals");
    assert_eq!(all, [total("blur", 8, 4000), total("resize", 7, 321)], "per function, sorted by name");
    let middle = stores.usage.totals(&acme(), hour() + BUCKET_MS, hour() + 2 * BUCKET_MS).await.expect("totals");
    assert_eq!(middle, [total("blur", 8, 4000), total("resize", 2, 20)], "hours starting in [from, to)");
    let later = stores.usage.totals(&acme(), hour() + 3 * BUCKET_MS, u64::MAX).await.expect("totals");
    assert_eq!(later, Vec::<Bucket>::new());
}

async fn hourly_gives_each_hour_per_function_in_range_in_order(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    let theirs = Bucket { tenant: TenantId::from("t_other"), ..bucket("resize", hour(), 9, 9) };
    let deltas = [
        bucket("resize", hour() + 2 * BUCKET_MS, 4, 300),
        bucket("resize", hour(), 1, 1),
        bucket("blur", hour() + BUCKET_MS, 8, 4000),
        bucket("resize", hour() + BUCKET_MS, 2, 20),
        theirs,
    ];
    stores.usage.commit(&batch, &deltas).await.expect("committed");
    let all = stores.usage.hourly(&acme(), 0, u64::MAX).await.expect("hourly");
    assert_eq!(
        all,
        [
            bucket("resize", hour(), 1, 1),
            bucket("blur", hour() + BUCKET_MS, 8, 4000),
            bucket("resize", hour() + BUCKET_MS, 2, 20),
            bucket("resize", hour() + 2 * BUCKET_MS, 4, 300),
        ],
        "by hour, then function; the tenant's own"
    );
    let middle = stores.usage.hourly(&acme(), hour() + BUCKET_MS, hour() + 2 * BUCKET_MS).await.expect("hourly");
    assert_eq!(middle, [bucket("blur", hour() + BUCKET_MS, 8, 4000), bucket("resize", hour() + BUCKET_MS, 2, 20)]);
}

async fn totals_are_private_to_their_tenant(backend: Backend) {
    let stores = backend.open().await;
    let other = TenantId::from("t_other");
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    let theirs = Bucket { tenant: other.clone(), ..bucket("f", hour(), 5, 50) };
    stores.usage.commit(&batch, &[bucket("f", hour(), 1, 5), theirs]).await.expect("committed");
    assert_eq!(stores.usage.totals(&acme(), 0, u64::MAX).await.expect("totals"), [total("f", 1, 5)]);
    let expected = Bucket { tenant: other.clone(), ..total("f", 5, 50) };
    assert_eq!(stores.usage.totals(&other, 0, u64::MAX).await.expect("totals"), [expected]);
    let nobody = stores.usage.totals(&TenantId::from("t_nobody"), 0, u64::MAX).await.expect("totals");
    assert_eq!(nobody, Vec::<Bucket>::new());
}

async fn a_job_is_not_recorded_again_after_its_batch_was_committed(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    stores.usage.commit(&batch, &[bucket("f", hour(), 1, 5)]).await.expect("committed");
    assert!(!stores.usage.record(&job("j1"), &acme(), "f", &usage(5)).await.expect("asked"));
    assert_eq!(jobs_in(&stores.usage.pending(100).await.expect("pending")), Vec::<&str>::new());
}

async fn the_log_cursor_and_totals_survive_a_restart(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1", "j2"]).await;
    let first = stores.usage.pending(1).await.expect("pending");
    stores.usage.commit(&first, &[bucket("f", hour(), 1, 5)]).await.expect("committed");
    drop(stores);

    let restarted = backend.open().await;
    let left = restarted.usage.pending(100).await.expect("pending");
    assert_eq!(jobs_in(&left), ["j2"]);
    assert_eq!(left.from, first.through);
    assert!(!restarted.usage.record(&job("j1"), &acme(), "f", &usage(5)).await.expect("asked"), "aggregated");
    assert!(!restarted.usage.record(&job("j2"), &acme(), "f", &usage(5)).await.expect("asked"), "pending");
    assert_eq!(restarted.usage.totals(&acme(), 0, u64::MAX).await.expect("totals"), [total("f", 1, 5)]);
    let err = restarted.usage.commit(&first, &[bucket("f", hour(), 1, 5)]).await.expect_err("already committed");
    assert!(matches!(err, CommitError::AlreadyAggregated), "{err:?}");
}

async fn a_job_id_is_forgotten_after_the_job_ttl(backend: Backend) {
    let retention = UsageRetention { billed_ids: Duration::from_millis(300), ..UsageRetention::default() };
    let stores = backend.open_with(retention).await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    stores.usage.commit(&batch, &[bucket("f", hour(), 1, 5)]).await.expect("committed");
    assert!(!stores.usage.record(&job("j1"), &acme(), "f", &usage(5)).await.expect("asked"), "within the TTL");
    drop(stores);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The job no longer exists, so nothing can finish it again: its id is not kept.
    let restarted = backend.open_with(retention).await;
    assert!(restarted.usage.record(&job("j1"), &acme(), "f", &usage(5)).await.expect("asked"), "past the TTL");
}

async fn totals_older_than_the_retention_are_dropped(backend: Backend) {
    let retention = UsageRetention { totals: Duration::from_secs(5 * 24 * 3600), ..UsageRetention::default() };
    let stores = backend.open_with(retention).await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    let old = hour() - 10 * PERIOD_MS;
    let deltas = [bucket("f", old, 7, 70), bucket("f", hour(), 1, 5)];
    stores.usage.commit(&batch, &deltas).await.expect("committed");
    assert_eq!(stores.usage.totals(&acme(), 0, u64::MAX).await.expect("totals"), [total("f", 1, 5)]);
    assert_eq!(stores.usage.totals(&acme(), old, old + BUCKET_MS).await.expect("totals"), []);
}

async fn totals_are_read_across_days(backend: Backend) {
    let stores = backend.open().await;
    record_all(&stores, &["j1"]).await;
    let batch = stores.usage.pending(100).await.expect("pending");
    let days_ago = |days: u64| hour() - days * PERIOD_MS + 3 * BUCKET_MS;
    let deltas = [bucket("f", days_ago(30), 1, 1), bucket("f", days_ago(1), 2, 2), bucket("g", hour(), 4, 4)];
    stores.usage.commit(&batch, &deltas).await.expect("committed");
    let all = stores.usage.totals(&acme(), 0, u64::MAX).await.expect("totals");
    assert_eq!(all, [total("f", 3, 3), total("g", 4, 4)]);
    let recent = stores.usage.totals(&acme(), days_ago(2), u64::MAX).await.expect("totals");
    assert_eq!(recent, [total("f", 2, 2), total("g", 4, 4)]);
}
