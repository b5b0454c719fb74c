//! Per-call memory accounting: enforces the call's limit over the sum of all
//! its linear memories and tables, remembers the peak of that sum (for
//! billing) and whether the guest ran into the limit (so the trap that
//! usually follows is reported as `memory_limit`, not as a generic trap).
//!
//! The limit is on the sum, not per memory: a component may define several
//! core instances each with its own memory, and a per-memory limit would
//! let it hold that many times the limit.

use wasmtime::ResourceLimiter;

/// Tables are tiny in practice; a guest asking for more is misbehaving.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// What one table element costs the host: a pointer-sized reference.
const TABLE_ELEMENT_BYTES: usize = size_of::<usize>();

/// How many core instances, memories and tables one store may create: the
/// per-component caps, enforced when they are made (with or without the
/// pooling allocator, which checks the same caps itself).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) instances: usize,
    pub(crate) memories: usize,
    pub(crate) tables: usize,
}

/// The [`ResourceLimiter`] installed in every call's store.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    limit: usize,
    counts: Counts,
    used: usize,
    peak: usize,
    refused: Option<usize>,
}

impl CallLimiter {
    pub(crate) fn new(limit: usize, counts: Counts) -> Self {
        Self { limit, counts, used: 0, peak: 0, refused: None }
    }

    /// The most the call's memories and tables held at once, in bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// The total the guest asked for when it was refused, if it ever was.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Admits growing by `current → desired` bytes if the new sum fits.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.limit {
            self.refused = Some(self.refused.map_or(total, |r| r.max(total)));
            return false;
        }
        self.used = total;
        self.peak = self.peak.max(total);
        true
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        // Refuse rather than trap: `memory.grow` returns -1 and a guest
        // that handles allocation failure can recover.
        Ok(self.grow(current, desired))
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS || maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.grow(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn instances(&self) -> usize {
        self.counts.instances
    }

    fn memories(&self) -> usize {
        self.counts.memories
    }

    fn tables(&self) -> usize {
        self.counts.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: Counts = Counts { instances: 10, memories: 10, tables: 10 };

    #[test]
    fn tracks_peak_and_refusals() {
        let mut limiter = CallLimiter::new(100, COUNTS);
        assert!(limiter.memory_growing(0, 64, None).expect("no error"));
        assert!(limiter.memory_growing(64, 100, None).expect("no error"));
        assert!(!limiter.memory_growing(100, 164, None).expect("no error"));
        assert!(!limiter.memory_growing(100, 50, Some(40)).expect("no error"));
        assert_eq!(limiter.peak(), 100);
        assert_eq!(limiter.refused(), Some(164));
    }

    #[test]
    fn the_limit_is_on_the_sum_of_all_memories() {
        let mut limiter = CallLimiter::new(256, COUNTS);
        // Each memory alone is under the limit; the third does not fit.
        assert!(limiter.memory_growing(0, 100, None).expect("no error"));
        assert!(limiter.memory_growing(0, 100, None).expect("no error"));
        assert!(!limiter.memory_growing(0, 100, None).expect("no error"));
        assert_eq!(limiter.refused(), Some(300));
        // What is left still fits.
        assert!(limiter.memory_growing(0, 56, None).expect("no error"));
        assert_eq!(limiter.peak(), 256);
    }

    #[test]
    fn tables_count_by_element_size() {
        let limit = 10 * TABLE_ELEMENT_BYTES + 4;
        let mut limiter = CallLimiter::new(limit, COUNTS);
        assert!(limiter.memory_growing(0, 4, None).expect("no error"));
        assert!(limiter.table_growing(0, 6, None).expect("no error"));
        assert!(limiter.table_growing(6, 10, None).expect("no error"));
        assert_eq!(limiter.peak(), limit);
        assert!(!limiter.table_growing(10, 11, None).expect("no error"));
        assert!(!limiter.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).expect("no error"));
    }

    #[test]
    fn reports_the_per_component_counts() {
        let limiter = CallLimiter::new(1, Counts { instances: 3, memories: 2, tables: 1 });
        assert_eq!((limiter.instances(), limiter.memories(), limiter.tables()), (3, 2, 1));
    }
}
