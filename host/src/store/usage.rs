//! Usage: an append-only log of per-call records keyed by job id (a job
//! finished twice is recorded once), and per-hour totals the meter produced
//! from it. `totals.json` remembers how far into the log it has aggregated,
//! so a restart re-aggregates exactly the records it had not yet counted.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_scheduler::Usage;

use super::{StoreError, io_error, read_json, write_json};

/// Totals are kept per hour; usage queries are answered at that granularity.
pub const BUCKET_MS: u64 = 3_600_000;

/// One call's usage as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Position in the log.
    pub seq: u64,
    /// The job the call belonged to.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Function name.
    pub function: String,
    /// When the call finished, ms since the epoch.
    pub at_ms: u64,
    /// What it consumed.
    pub usage: Usage,
}

/// Aggregated usage of one (tenant, function) in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tenant id.
    pub tenant: String,
    /// Function name.
    pub function: String,
    /// Start of the hour, ms since the epoch.
    pub hour_ms: u64,
    /// Calls.
    pub invocations: u64,
    /// Calls that did not succeed.
    pub failures: u64,
    /// CPU µs.
    pub cpu_us: u64,
    /// Wall µs.
    pub wall_us: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes returned.
    pub bytes_out: u64,
    /// Cost in micro-units.
    pub cost_micros: u64,
}

impl Bucket {
    fn add(&mut self, other: &Bucket) {
        self.invocations = self.invocations.saturating_add(other.invocations);
        self.failures = self.failures.saturating_add(other.failures);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
        self.wall_us = self.wall_us.saturating_add(other.wall_us);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    aggregated_through: u64,
    buckets: Vec<Bucket>,
}

#[derive(Debug)]
struct State {
    log: File,
    seen: HashSet<String>,
    pending: Vec<UsageEntry>,
    next_seq: u64,
    totals: Totals,
}

/// The usage log and totals of one data directory.
#[derive(Debug)]
pub struct UsageStore {
    log_path: PathBuf,
    totals_path: PathBuf,
    state: Mutex<State>,
}

impl UsageStore {
    /// Opens (or creates) `usage.log` and `usage-totals.json` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let log_path = dir.join("usage.log");
        let totals_path = dir.join("usage-totals.json");
        let totals: Totals = read_json(&totals_path)?;
        let mut seen = HashSet::new();
        let mut pending = Vec::new();
        let mut next_seq = totals.aggregated_through + 1;
        if let Ok(file) = File::open(&log_path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io_error(&log_path))?;
                // A torn last line (crash mid-append) is skipped; everything
                // before it is intact.
                let Ok(entry) = serde_json::from_str::<UsageEntry>(&line) else { continue };
                seen.insert(entry.job_id.clone());
                next_seq = next_seq.max(entry.seq + 1);
                if entry.seq > totals.aggregated_through {
                    pending.push(entry);
                }
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_error(&log_path))?;
        Ok(Self { log_path, totals_path, state: Mutex::new(State { log, seen, pending, next_seq, totals }) })
    }

    /// Logs one call's usage; returns false (and logs nothing) when the job
    /// was already recorded.
    pub fn record(&self, job_id: &str, tenant: &str, function: &str, usage: &Usage) -> Result<bool, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.seen.contains(job_id) {
            return Ok(false);
        }
        let entry = UsageEntry {
            seq: state.next_seq,
            job_id: job_id.to_owned(),
            tenant: tenant.to_owned(),
            function: function.to_owned(),
            at_ms: sluice_scheduler::now_ms(),
            usage: usage.clone(),
        };
        let mut line =
            serde_json::to_vec(&entry).map_err(|source| StoreError::Corrupt { path: self.log_path.clone(), source })?;
        line.push(b'\n');
        state.log.write_all(&line).map_err(io_error(&self.log_path))?;
        state.next_seq += 1;
        state.seen.insert(entry.job_id.clone());
        state.pending.push(entry);
        Ok(true)
    }

    /// Records not yet aggregated, oldest first.
    pub fn pending(&self) -> Vec<UsageEntry> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).pending.clone()
    }

    /// Adds `deltas` to the totals and marks the log aggregated through `seq`.
    pub fn commit(&self, deltas: &[Bucket], through_seq: u64) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for delta in deltas {
            match state
                .totals
                .buckets
                .iter_mut()
                .find(|b| b.tenant == delta.tenant && b.function == delta.function && b.hour_ms == delta.hour_ms)
            {
                Some(bucket) => bucket.add(delta),
                None => state.totals.buckets.push(delta.clone()),
            }
        }
        state.totals.aggregated_through = state.totals.aggregated_through.max(through_seq);
        write_json(&self.totals_path, &state.totals)?;
        state.pending.retain(|entry| entry.seq > through_seq);
        Ok(())
    }

    /// The tenant's totals per function over hours starting in `[from_ms, to_ms)`.
    pub fn totals(&self, tenant: &str, from_ms: u64, to_ms: u64) -> Vec<Bucket> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_function: BTreeMap<&str, Bucket> = BTreeMap::new();
        for bucket in &state.totals.buckets {
            if bucket.tenant == tenant && bucket.hour_ms >= from_ms && bucket.hour_ms < to_ms {
                by_function
                    .entry(&bucket.function)
                    .or_insert_with(|| Bucket {
                        tenant: tenant.to_owned(),
                        function: bucket.function.clone(),
                        ..Bucket::default()
                    })
                    .add(bucket);
            }
        }
        by_function.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu_us: u64) -> Usage {
        Usage { outcome: "ok".to_owned(), cpu_us, ..Usage::default() }
    }

    #[test]
    fn a_job_is_recorded_once_and_pending_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = UsageStore::open(dir.path()).expect("open");
        assert!(store.record("j1", "t", "f", &usage(5)).expect("record"));
        assert!(!store.record("j1", "t", "f", &usage(7)).expect("record"), "a rerun is not billed twice");
        assert!(store.record("j2", "t", "f", &usage(9)).expect("record"));
        let pending = store.pending();
        assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);

        let hour = pending[0].at_ms / BUCKET_MS * BUCKET_MS;
        let delta = Bucket {
            tenant: "t".into(),
            function: "f".into(),
            hour_ms: hour,
            invocations: 1,
            cpu_us: 5,
            ..Bucket::default()
        };
        store.commit(&[delta], 1).expect("commit");
        drop(store);

        let reopened = UsageStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.pending().iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(), vec!["j2"]);
        assert!(!reopened.record("j1", "t", "f", &usage(5)).expect("record"), "dedupe survives a restart");
        let totals = reopened.totals("t", 0, u64::MAX);
        assert_eq!((totals.len(), totals[0].invocations, totals[0].cpu_us), (1, 1, 5));
        assert!(reopened.totals("t", hour + BUCKET_MS, u64::MAX).is_empty());
        assert!(reopened.totals("other", 0, u64::MAX).is_empty());
    }
}
