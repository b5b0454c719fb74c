//! The usage ledger of one data directory: `usage.log` is append-only JSON
//! lines, each with its position (`seq`); `usage-totals.json` holds the
//! totals and the cursor (the last `seq` aggregated); `usage-billed.json`
//! holds the ids of jobs recorded within the job TTL whose lines were
//! compacted away.
//!
//! Compaction, after a commit once the log holds more aggregated lines
//! than ids are known (so its cost is spread over as many records): the
//! totals (with the cursor) are already saved, then the billed ids are
//! saved, then the log is replaced by its lines not yet aggregated, each
//! file through a temporary file and a rename. A crash between the steps
//! leaves aggregated lines in the log, which a restart skips (their ids
//! still count as recorded).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_core::TenantId;
use sluice_scheduler::{JobId, Usage};

use super::{io_error, read_json, write_atomic, write_json};
use crate::store::StoreError;
use crate::store::usage::{Bucket, CommitError, UsageBatch, UsageEntry, UsageLedger, UsageRetention, sum_by_function};

/// The log is compacted once it holds at least this many aggregated lines
/// (and at least as many as known ids).
const COMPACT_AFTER: usize = 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    aggregated_through: u64,
    buckets: Vec<Bucket>,
}

/// Job ids recorded within the job TTL, with when they were recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Billed {
    ids: BTreeMap<String, u64>,
}

/// A line of the log: the entry and its position.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Logged {
    seq: u64,
    #[serde(flatten)]
    entry: UsageEntry,
}

#[derive(Debug)]
struct State {
    log: File,
    /// Recorded job ids and when; expired past the job TTL at compaction.
    seen: HashMap<JobId, u64>,
    pending: Vec<Logged>,
    /// Lines in the log already aggregated.
    aggregated_lines: usize,
    next_seq: u64,
    totals: Totals,
}

/// The usage log and totals of one data directory.
#[derive(Debug)]
pub struct LocalUsage {
    log_path: PathBuf,
    totals_path: PathBuf,
    billed_path: PathBuf,
    retention: UsageRetention,
    state: Mutex<State>,
}

impl LocalUsage {
    /// Opens (or creates) the ledger in `dir` with the default retention.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, UsageRetention::default())
    }

    /// Opens (or creates) `usage.log`, `usage-totals.json` and
    /// `usage-billed.json` in `dir`, forgetting what `retention` no longer keeps.
    pub fn open_with(dir: &Path, retention: UsageRetention) -> Result<Self, StoreError> {
        let log_path = dir.join("usage.log");
        let totals_path = dir.join("usage-totals.json");
        let billed_path = dir.join("usage-billed.json");
        let totals: Totals = read_json(&totals_path)?;
        let billed: Billed = read_json(&billed_path)?;
        let oldest_id_ms = sluice_scheduler::now_ms().saturating_sub(retention.billed_ids_ms());
        let mut seen: HashMap<JobId, u64> =
            billed.ids.into_iter().filter(|(_, at)| *at >= oldest_id_ms).map(|(id, at)| (JobId(id), at)).collect();
        let mut pending = Vec::new();
        let mut aggregated_lines = 0;
        let mut next_seq = totals.aggregated_through + 1;
        let mut torn = false;
        if let Ok(file) = File::open(&log_path) {
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            while reader.read_line(&mut line).map_err(io_error(&log_path))? > 0 {
                torn = !line.ends_with('\n');
                // A torn last line (crash mid-append) is skipped; everything
                // before it is intact.
                if let Ok(logged) = serde_json::from_str::<Logged>(&line) {
                    if logged.entry.at_ms >= oldest_id_ms {
                        seen.insert(logged.entry.job_id.clone(), logged.entry.at_ms);
                    }
                    next_seq = next_seq.max(logged.seq + 1);
                    if logged.seq > totals.aggregated_through {
                        pending.push(logged);
                    } else {
                        aggregated_lines += 1;
                    }
                }
                line.clear();
            }
        }
        let mut log = open_log(&log_path)?;
        if torn {
            // Otherwise the next record would continue the torn line and be
            // skipped with it at the next start.
            log.write_all(b"\n").map_err(io_error(&log_path))?;
        }
        Ok(Self {
            log_path,
            totals_path,
            billed_path,
            retention,
            state: Mutex::new(State { log, seen, pending, aggregated_lines, next_seq, totals }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Saves the ids recorded within the job TTL, then replaces the log by
    /// its pending lines (see the module notes for the order).
    fn compact(&self, state: &mut State) -> Result<(), StoreError> {
        let oldest_id_ms = sluice_scheduler::now_ms().saturating_sub(self.retention.billed_ids_ms());
        state.seen.retain(|_, at| *at >= oldest_id_ms);
        let billed = Billed { ids: state.seen.iter().map(|(id, at)| (id.0.clone(), *at)).collect() };
        write_json(&self.billed_path, &billed)?;
        let mut lines = Vec::new();
        for logged in &state.pending {
            serde_json::to_writer(&mut lines, logged)
                .map_err(|source| StoreError::Corrupt { path: self.log_path.clone(), source })?;
            lines.push(b'\n');
        }
        write_atomic(&self.log_path, &lines)?;
        state.log = open_log(&self.log_path)?;
        state.aggregated_lines = 0;
        Ok(())
    }
}

fn open_log(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))
}

#[async_trait::async_trait]
impl UsageLedger for LocalUsage {
    async fn record(
        &self,
        job_id: &JobId,
        tenant: &TenantId,
        function: &str,
        usage: &Usage,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.seen.contains_key(job_id) {
            return Ok(false);
        }
        let logged = Logged {
            seq: state.next_seq,
            entry: UsageEntry {
                job_id: job_id.clone(),
                tenant: tenant.clone(),
                function: function.to_owned(),
                at_ms: sluice_scheduler::now_ms(),
                usage: usage.clone(),
            },
        };
        let mut line = serde_json::to_vec(&logged)
            .map_err(|source| StoreError::Corrupt { path: self.log_path.clone(), source })?;
        line.push(b'\n');
        state.log.write_all(&line).map_err(io_error(&self.log_path))?;
        state.next_seq += 1;
        state.seen.insert(job_id.clone(), logged.entry.at_ms);
        state.pending.push(logged);
        Ok(true)
    }

    async fn pending(&self, limit: usize) -> Result<UsageBatch, StoreError> {
        let state = self.lock();
        let from = state.totals.aggregated_through;
        let taken: Vec<&Logged> = state.pending.iter().take(limit).collect();
        let through = taken.last().map_or(from, |logged| logged.seq);
        Ok(UsageBatch {
            entries: taken.into_iter().map(|logged| logged.entry.clone()).collect(),
            from: from.to_string(),
            through: through.to_string(),
        })
    }

    async fn commit(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(), CommitError> {
        let mut state = self.lock();
        if state.totals.aggregated_through.to_string() != batch.from {
            return Err(CommitError::AlreadyAggregated);
        }
        let through: u64 = batch.through.parse().map_err(|_| StoreError::CorruptRecord(batch.through.clone()))?;
        let oldest_hour = self.retention.oldest_hour_ms(sluice_scheduler::now_ms());
        let mut buckets: Vec<Bucket> =
            state.totals.buckets.iter().filter(|b| b.hour_ms >= oldest_hour).cloned().collect();
        for delta in deltas.iter().filter(|d| d.hour_ms >= oldest_hour) {
            match buckets
                .iter_mut()
                .find(|b| b.tenant == delta.tenant && b.function == delta.function && b.hour_ms == delta.hour_ms)
            {
                Some(bucket) => bucket.add(delta),
                None => buckets.push(delta.clone()),
            }
        }
        let totals = Totals { aggregated_through: through, buckets };
        write_json(&self.totals_path, &totals)?;
        state.totals = totals;
        let before = state.pending.len();
        state.pending.retain(|logged| logged.seq > through);
        state.aggregated_lines += before - state.pending.len();
        if state.aggregated_lines >= COMPACT_AFTER.max(state.seen.len()) {
            // The totals are saved; a failed compaction only leaves a longer log.
            if let Err(err) = self.compact(&mut state) {
                tracing::warn!(cause = %err, "could not compact the usage log");
            }
        }
        Ok(())
    }

    async fn totals(&self, tenant: &TenantId, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        let oldest_hour = self.retention.oldest_hour_ms(sluice_scheduler::now_ms());
        Ok(sum_by_function(&self.lock().totals.buckets, tenant, from_ms.max(oldest_hour), to_ms))
    }
}

impl LocalUsage {
    /// Compacts now, whatever the log's length (tests and shutdown).
    pub fn compact_now(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.compact(&mut state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_the_entries_before_it_stay_pending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = LocalUsage::open(dir.path()).expect("open");
        let tenant = TenantId::from("t");
        let usage = Usage { outcome: sluice_core::Outcome::Ok, cpu_us: 5, ..Usage::default() };
        assert!(ledger.record(&JobId("j1".into()), &tenant, "f", &usage).await.expect("record"));
        drop(ledger);
        let mut log = OpenOptions::new().append(true).open(dir.path().join("usage.log")).expect("log");
        log.write_all(br#"{"seq":2,"job_id":"j2","ten"#).expect("torn append");
        drop(log);

        let reopened = LocalUsage::open(dir.path()).expect("reopen");
        let pending = reopened.pending(100).await.expect("pending");
        let jobs: Vec<&str> = pending.entries.iter().map(|e| e.job_id.0.as_str()).collect();
        assert_eq!(jobs, ["j1"]);
        assert_eq!((pending.from.as_str(), pending.through.as_str()), ("0", "1"));
    }

    #[tokio::test]
    async fn a_record_after_a_torn_line_survives_the_next_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("usage.log"), br#"{"seq":1,"job_id":"j1","ten"#).expect("torn log");
        let tenant = TenantId::from("t");
        let usage = Usage { outcome: sluice_core::Outcome::Ok, cpu_us: 5, ..Usage::default() };
        let ledger = LocalUsage::open(dir.path()).expect("open");
        assert!(ledger.record(&JobId("j2".into()), &tenant, "f", &usage).await.expect("record"));
        drop(ledger);

        let reopened = LocalUsage::open(dir.path()).expect("reopen");
        let pending = reopened.pending(100).await.expect("pending");
        let jobs: Vec<&str> = pending.entries.iter().map(|e| e.job_id.0.as_str()).collect();
        assert_eq!(jobs, ["j2"]);
        assert!(!reopened.record(&JobId("j2".into()), &tenant, "f", &usage).await.expect("record"), "still seen");
    }

    async fn record_and_commit(ledger: &LocalUsage, jobs: &[&str]) {
        let tenant = TenantId::from("t");
        let usage = Usage { outcome: sluice_core::Outcome::Ok, cpu_us: 5, ..Usage::default() };
        for job in jobs {
            assert!(ledger.record(&JobId((*job).into()), &tenant, "f", &usage).await.expect("record"));
        }
        let batch = ledger.pending(usize::MAX).await.expect("pending");
        ledger.commit(&batch, &[]).await.expect("commit");
    }

    #[tokio::test]
    async fn compaction_keeps_only_pending_lines_and_the_ids_already_recorded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = LocalUsage::open(dir.path()).expect("open");
        record_and_commit(&ledger, &["j1", "j2"]).await;
        let tenant = TenantId::from("t");
        let usage = Usage::default();
        assert!(ledger.record(&JobId("j3".into()), &tenant, "f", &usage).await.expect("record"));
        ledger.compact_now().expect("compact");
        let log = std::fs::read_to_string(dir.path().join("usage.log")).expect("log");
        assert_eq!(log.lines().count(), 1, "only j3 is pending: {log}");
        assert!(log.contains("\"j3\""));
        drop(ledger);

        let reopened = LocalUsage::open(dir.path()).expect("reopen");
        for job in ["j1", "j2", "j3"] {
            assert!(!reopened.record(&JobId(job.into()), &tenant, "f", &usage).await.expect("asked"), "{job}");
        }
        let pending = reopened.pending(100).await.expect("pending");
        assert_eq!(pending.entries.len(), 1);
        assert_eq!((pending.from.as_str(), pending.through.as_str()), ("2", "3"));
    }

    #[tokio::test]
    async fn the_log_is_compacted_by_itself_once_enough_is_aggregated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = LocalUsage::open(dir.path()).expect("open");
        let jobs: Vec<String> = (0..COMPACT_AFTER).map(|n| format!("j{n}")).collect();
        let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
        record_and_commit(&ledger, &jobs).await;
        let log = std::fs::read_to_string(dir.path().join("usage.log")).expect("log");
        assert_eq!(log.lines().count(), 0, "everything was aggregated");
        let billed: Billed = read_json(&dir.path().join("usage-billed.json")).expect("billed ids");
        assert_eq!(billed.ids.len(), COMPACT_AFTER);
    }

    #[tokio::test]
    async fn ids_past_the_job_ttl_are_dropped_at_compaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let retention =
            UsageRetention { billed_ids: std::time::Duration::from_millis(50), ..UsageRetention::default() };
        let ledger = LocalUsage::open_with(dir.path(), retention).expect("open");
        record_and_commit(&ledger, &["j1"]).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ledger.compact_now().expect("compact");
        let billed: Billed = read_json(&dir.path().join("usage-billed.json")).expect("billed ids");
        assert!(billed.ids.is_empty(), "{billed:?}");
    }
}
