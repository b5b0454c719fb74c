//! The usage ledger of one data directory: `usage.log` is append-only JSON
//! lines, each with its position (`seq`); `usage-totals.json` holds the
//! totals and the cursor (the last `seq` aggregated); `usage-billed.json`
//! holds digests of the ids recorded within their retention whose lines
//! were compacted away.
//!
//! Compaction, after a commit once the log holds more aggregated lines
//! than ids are known (so its cost is spread over as many records) and the
//! meter has caught up: the totals (with the cursor) are already saved,
//! then the billed ids are saved, then the log is replaced by its lines
//! not yet aggregated, each file through a temporary file and a rename;
//! the writes and fsyncs happen without the ledger's lock, so calls being
//! recorded meanwhile do not wait. A crash between the steps
//! leaves aggregated lines in the log, which a restart skips (their ids
//! still count as recorded).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_core::TenantId;
use sluice_scheduler::{JobId, Usage};

use super::{io_error, read_json, write_atomic, write_json};
use crate::store::StoreError;
use crate::store::usage::{Bucket, CommitError, UsageBatch, UsageEntry, UsageLedger, UsageRetention, hours_of};

/// The log is compacted once it holds at least this many aggregated lines
/// (and at least as many as known ids).
const COMPACT_AFTER: usize = 1024;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Totals {
    aggregated_through: u64,
    buckets: Vec<Bucket>,
}

/// Job ids recorded within their retention, with when they were recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Billed {
    /// Digests (hex, see [`IdDigest`]) and when, oldest first.
    #[serde(default)]
    digests: Vec<(String, u64)>,
    /// Whole ids and when, as earlier releases saved them; read, never written.
    #[serde(default, skip_serializing)]
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
    /// Recorded job ids and when, forgotten past their retention.
    seen: RecordedIds,
    /// Lines not yet aggregated, in `seq` order; aggregation takes them
    /// from the front while calls append at the back.
    pending: VecDeque<Logged>,
    /// Lines in the log already aggregated.
    aggregated_lines: usize,
    next_seq: u64,
    totals: Totals,
}

/// The first 128 bits of a job id's SHA-256: what the ledger remembers of
/// a recorded id. A node records thousands of calls a second and keeps
/// their ids for minutes; 16 bytes each instead of the id's string (and
/// its allocation, twice) keeps that to a few tens of megabytes, and two
/// ids share a digest with odds far below anything else that can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IdDigest(u128);

impl IdDigest {
    fn of(id: &JobId) -> Self {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(id.0.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        Self(u128::from_be_bytes(first))
    }

    fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok()).flatten().map(Self)
    }
}

/// Recorded job ids in the order they were recorded, so forgetting the
/// old ones costs what is forgotten, not what is kept.
#[derive(Debug, Default)]
struct RecordedIds {
    at: HashMap<IdDigest, u64>,
    order: VecDeque<(u64, IdDigest)>,
}

impl RecordedIds {
    fn contains(&self, digest: IdDigest) -> bool {
        self.at.contains_key(&digest)
    }

    fn insert(&mut self, id: &JobId, at_ms: u64) {
        self.insert_digest(IdDigest::of(id), at_ms);
    }

    fn insert_digest(&mut self, digest: IdDigest, at_ms: u64) {
        if self.at.insert(digest, at_ms).is_none() {
            self.order.push_back((at_ms, digest));
        }
    }

    /// Forgets ids recorded before `oldest_ms`. The wall clock may step
    /// back, so the order is by recording, and an id recorded later with
    /// an earlier time waits for the ones before it.
    fn forget_before(&mut self, oldest_ms: u64) {
        while let Some((at, _)) = self.order.front()
            && *at < oldest_ms
        {
            if let Some((_, digest)) = self.order.pop_front() {
                self.at.remove(&digest);
            }
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

/// The usage log and totals of one data directory.
#[derive(Debug)]
pub struct LocalUsage {
    log_path: PathBuf,
    totals_path: PathBuf,
    billed_path: PathBuf,
    retention: UsageRetention,
    state: Mutex<State>,
    /// Held through a commit's file writes, so two never interleave.
    saving: tokio::sync::Mutex<()>,
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
        let saved = billed.digests.iter().filter_map(|(hex, at)| Some((*at, IdDigest::from_hex(hex)?)));
        let older = billed.ids.into_iter().map(|(id, at)| (at, IdDigest::of(&JobId(id))));
        let mut kept: Vec<(u64, IdDigest)> = saved.chain(older).filter(|(at, _)| *at >= oldest_id_ms).collect();
        kept.sort_by_key(|(at, _)| *at);
        let mut seen = RecordedIds::default();
        for (at, digest) in kept {
            seen.insert_digest(digest, at);
        }
        let mut pending = VecDeque::new();
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
                        seen.insert(&logged.entry.job_id, logged.entry.at_ms);
                    }
                    next_seq = next_seq.max(logged.seq + 1);
                    if logged.seq > totals.aggregated_through {
                        pending.push_back(logged);
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
            saving: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `deltas` to the totals, marking `batch` aggregated; answers the
    /// totals to save and whether the log is then due for compaction.
    fn commit_totals(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(Totals, bool), CommitError> {
        let mut state = self.lock();
        if state.totals.aggregated_through.to_string() != batch.from {
            return Err(CommitError::AlreadyAggregated);
        }
        let through: u64 = batch.through.parse().map_err(|_| StoreError::CorruptRecord(batch.through.clone()))?;
        let oldest_hour = self.retention.oldest_hour_ms(sluice_scheduler::now_ms());
        let mut buckets: Vec<Bucket> =
            state.totals.buckets.iter().filter(|b| b.hour_ms >= oldest_hour).cloned().collect();
        // Indexed so a commit costs the buckets kept plus its deltas, not
        // their product (a node holds tenants × functions × hours of them).
        let mut index: HashMap<(TenantId, String, u64), usize> =
            buckets.iter().enumerate().map(|(at, b)| ((b.tenant.clone(), b.function.clone(), b.hour_ms), at)).collect();
        for delta in deltas.iter().filter(|d| d.hour_ms >= oldest_hour) {
            let key = (delta.tenant.clone(), delta.function.clone(), delta.hour_ms);
            match index.get(&key) {
                Some(&at) => buckets[at].add(delta),
                None => {
                    index.insert(key, buckets.len());
                    buckets.push(delta.clone());
                }
            }
        }
        let totals = Totals { aggregated_through: through, buckets };
        state.totals = totals.clone();
        let aggregated = state.pending.partition_point(|logged| logged.seq <= through);
        state.pending.drain(..aggregated);
        state.aggregated_lines += aggregated;
        let due = COMPACT_AFTER.max(state.seen.len());
        // Compacting rewrites the pending lines, so it waits for the meter
        // to catch up (a few lines left) unless the log has grown far past due.
        let compact = state.aggregated_lines >= due
            && (state.pending.len() <= COMPACT_AFTER || state.aggregated_lines >= due.saturating_mul(4));
        Ok((totals, compact))
    }

    /// The ids recorded within their retention, copied (24 bytes each) so
    /// they can be saved without holding the lock.
    fn recorded_ids(&self, state: &mut State) -> Vec<(u64, IdDigest)> {
        let oldest_id_ms = sluice_scheduler::now_ms().saturating_sub(self.retention.billed_ids_ms());
        state.seen.forget_before(oldest_id_ms);
        state.seen.order.iter().copied().collect()
    }

    /// Replaces the log by its pending lines (only once the ids of the
    /// lines it drops are saved; see the module notes for the order),
    /// holding the lock throughout (tests and shutdown).
    fn replace_log(&self, state: &mut State) -> Result<(), StoreError> {
        let (lines, _) = self.pending_lines(state, 0)?;
        write_atomic(&self.log_path, &lines)?;
        state.log = open_log(&self.log_path)?;
        state.aggregated_lines = 0;
        Ok(())
    }

    /// The pending lines after `seq` as the log writes them, and the last
    /// `seq` among them.
    fn pending_lines(&self, state: &State, after_seq: u64) -> Result<(Vec<u8>, u64), StoreError> {
        let mut lines = Vec::new();
        let mut last = after_seq;
        for logged in state.pending.iter().filter(|logged| logged.seq > after_seq) {
            serde_json::to_writer(&mut lines, logged)
                .map_err(|source| StoreError::Corrupt { path: self.log_path.clone(), source })?;
            lines.push(b'\n');
            last = logged.seq;
        }
        Ok((lines, last))
    }

    /// Compacts from the meter's task (holding `saving`). The ids (a node
    /// keeps minutes of them, megabytes) and the new log are written and
    /// synced off the lock, so calls being recorded meanwhile never wait on
    /// a write or an fsync: the lock is held to copy the few pending lines,
    /// then to append those recorded since and rename the new log in place.
    async fn compact_in_background(&self) -> Result<(), StoreError> {
        let ids = self.recorded_ids(&mut self.lock());
        let path = self.billed_path.clone();
        off_the_lock(&self.billed_path, move || save_recorded_ids(&path, &ids)).await?;

        let (lines, copied_through) = {
            let state = self.lock();
            let (lines, last) = self.pending_lines(&state, 0)?;
            (lines, last.max(state.totals.aggregated_through))
        };
        let dir = self.log_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let log_path = self.log_path.clone();
        let new_log = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || -> Result<tempfile::NamedTempFile, StoreError> {
                let mut new_log = tempfile::NamedTempFile::new_in(&dir).map_err(io_error(&log_path))?;
                new_log.write_all(&lines).map_err(io_error(&log_path))?;
                new_log.as_file().sync_all().map_err(io_error(&log_path))?;
                Ok(new_log)
            })
            .await
            .map_err(|err| StoreError::Io { path: self.log_path.clone(), source: std::io::Error::other(err) })??
        };
        {
            let mut state = self.lock();
            let (recorded_since, _) = self.pending_lines(&state, copied_through)?;
            let mut new_log = new_log;
            // Like every append to the log, synced by the next compaction
            // or left to the page cache.
            new_log.write_all(&recorded_since).map_err(io_error(&self.log_path))?;
            new_log.persist(&self.log_path).map_err(|err| io_error(&self.log_path)(err.error))?;
            state.log = open_log(&self.log_path)?;
            state.aggregated_lines = 0;
        }
        off_the_lock(&self.log_path, move || super::sync_dir(&dir)).await
    }
}

/// Runs the file write `save` on a blocking thread: the ledger's callers
/// are async tasks, and an fsync can take milliseconds.
async fn off_the_lock(
    path: &Path,
    save: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(save)
        .await
        .map_err(|err| StoreError::Io { path: path.to_path_buf(), source: std::io::Error::other(err) })?
}

/// Saves `ids` as the billed ids whose log lines may be dropped.
fn save_recorded_ids(path: &Path, ids: &[(u64, IdDigest)]) -> Result<(), StoreError> {
    let digests = ids.iter().map(|(at, digest)| (digest.to_hex(), *at)).collect();
    write_json(path, &Billed { digests, ids: BTreeMap::new() })
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
        let digest = IdDigest::of(job_id);
        let now = sluice_scheduler::now_ms();
        let mut state = self.lock();
        state.seen.forget_before(now.saturating_sub(self.retention.billed_ids_ms()));
        if state.seen.contains(digest) {
            return Ok(false);
        }
        let logged = Logged {
            seq: state.next_seq,
            entry: UsageEntry {
                job_id: job_id.clone(),
                tenant: tenant.clone(),
                function: function.to_owned(),
                at_ms: now,
                usage: usage.clone(),
            },
        };
        let mut line = serde_json::to_vec(&logged)
            .map_err(|source| StoreError::Corrupt { path: self.log_path.clone(), source })?;
        line.push(b'\n');
        state.log.write_all(&line).map_err(io_error(&self.log_path))?;
        state.next_seq += 1;
        state.seen.insert_digest(digest, now);
        state.pending.push_back(logged);
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
        // Totals are saved in the order they were reached, and before any
        // line they count leaves the log; calls being recorded meanwhile
        // take the lock only for their append, never for these writes.
        let _in_order = self.saving.lock().await;
        let (totals, compact) = self.commit_totals(batch, deltas)?;
        let path = self.totals_path.clone();
        off_the_lock(&self.totals_path, move || write_json(&path, &totals)).await?;
        // The totals are saved; a failed compaction only leaves a longer log.
        if compact && let Err(err) = self.compact_in_background().await {
            tracing::warn!(cause = %err, "could not compact the usage log");
        }
        Ok(())
    }

    async fn hourly(&self, tenant: &TenantId, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        let oldest_hour = self.retention.oldest_hour_ms(sluice_scheduler::now_ms());
        Ok(hours_of(&self.lock().totals.buckets, tenant, from_ms.max(oldest_hour), to_ms))
    }
}

impl LocalUsage {
    /// Compacts now, whatever the log's length (tests and shutdown).
    pub fn compact_now(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        let ids = self.recorded_ids(&mut state);
        save_recorded_ids(&self.billed_path, &ids)?;
        self.replace_log(&mut state)
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
        assert_eq!(billed.digests.len(), COMPACT_AFTER);
    }

    #[tokio::test]
    async fn ids_saved_whole_by_an_earlier_release_still_count_as_recorded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now = sluice_scheduler::now_ms();
        std::fs::write(dir.path().join("usage-billed.json"), format!(r#"{{"ids":{{"j1#1":{now}}}}}"#))
            .expect("billed ids");
        let ledger = LocalUsage::open(dir.path()).expect("open");
        let (tenant, usage) = (TenantId::from("t"), Usage::default());
        assert!(!ledger.record(&JobId("j1#1".into()), &tenant, "f", &usage).await.expect("asked"));
        assert!(ledger.record(&JobId("j2#1".into()), &tenant, "f", &usage).await.expect("asked"));
        ledger.compact_now().expect("compact");
        let saved = std::fs::read_to_string(dir.path().join("usage-billed.json")).expect("billed ids");
        assert!(!saved.contains("j1"), "saved as digests: {saved}");
        drop(ledger);
        let reopened = LocalUsage::open(dir.path()).expect("reopen");
        for job in ["j1#1", "j2#1"] {
            assert!(!reopened.record(&JobId(job.into()), &tenant, "f", &usage).await.expect("asked"), "{job}");
        }
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
        assert!(billed.digests.is_empty(), "{billed:?}");
    }
}
