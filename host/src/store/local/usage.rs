//! The usage ledger of one data directory: `usage.log` is append-only JSON
//! lines, each with its position (`seq`); `usage-totals.json` holds the
//! totals and the cursor (the last `seq` aggregated).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_core::TenantId;
use sluice_scheduler::{JobId, Usage};

use super::{io_error, read_json, write_json};
use crate::store::StoreError;
use crate::store::usage::{Bucket, CommitError, UsageBatch, UsageEntry, UsageLedger, sum_by_function};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    aggregated_through: u64,
    buckets: Vec<Bucket>,
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
    seen: HashSet<JobId>,
    pending: Vec<Logged>,
    next_seq: u64,
    totals: Totals,
}

/// The usage log and totals of one data directory.
#[derive(Debug)]
pub struct LocalUsage {
    log_path: PathBuf,
    totals_path: PathBuf,
    state: Mutex<State>,
}

impl LocalUsage {
    /// Opens (or creates) `usage.log` and `usage-totals.json` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let log_path = dir.join("usage.log");
        let totals_path = dir.join("usage-totals.json");
        let totals: Totals = read_json(&totals_path)?;
        let mut seen = HashSet::new();
        let mut pending = Vec::new();
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
                    seen.insert(logged.entry.job_id.clone());
                    next_seq = next_seq.max(logged.seq + 1);
                    if logged.seq > totals.aggregated_through {
                        pending.push(logged);
                    }
                }
                line.clear();
            }
        }
        let mut log = OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_error(&log_path))?;
        if torn {
            // Otherwise the next record would continue the torn line and be
            // skipped with it at the next start.
            log.write_all(b"\n").map_err(io_error(&log_path))?;
        }
        Ok(Self { log_path, totals_path, state: Mutex::new(State { log, seen, pending, next_seq, totals }) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        if state.seen.contains(job_id) {
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
        state.seen.insert(job_id.clone());
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
        let mut totals = Totals { aggregated_through: through, buckets: state.totals.buckets.clone() };
        for delta in deltas {
            match totals
                .buckets
                .iter_mut()
                .find(|b| b.tenant == delta.tenant && b.function == delta.function && b.hour_ms == delta.hour_ms)
            {
                Some(bucket) => bucket.add(delta),
                None => totals.buckets.push(delta.clone()),
            }
        }
        write_json(&self.totals_path, &totals)?;
        state.totals = totals;
        state.pending.retain(|logged| logged.seq > through);
        Ok(())
    }

    async fn totals(&self, tenant: &TenantId, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        Ok(sum_by_function(&self.lock().totals.buckets, tenant, from_ms, to_ms))
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
}
