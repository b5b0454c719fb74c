//! Per-call memory accounting: enforces the call's limit, remembers the peak
//! (for billing) and whether the guest ran into the limit (so the trap that
//! usually follows is reported as `memory_limit`, not as a generic trap).

use wasmtime::ResourceLimiter;

/// Tables are tiny in practice; a guest asking for more is misbehaving.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The [`ResourceLimiter`] installed in every call's store.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    limit: usize,
    peak: usize,
    refused: Option<usize>,
}

impl CallLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, peak: 0, refused: None }
    }

    /// Largest linear memory the call reached, in bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// The size the guest asked for when it was refused, if it ever was.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit || maximum.is_some_and(|max| desired > max) {
            // Refuse rather than trap: `memory.grow` returns -1 and a guest
            // that handles allocation failure can recover.
            self.refused = Some(self.refused.map_or(desired, |r| r.max(desired)));
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_peak_and_refusals() {
        let mut limiter = CallLimiter::new(100);
        assert!(limiter.memory_growing(0, 64, None).expect("no error"));
        assert!(limiter.memory_growing(64, 100, None).expect("no error"));
        assert!(!limiter.memory_growing(100, 164, None).expect("no error"));
        assert!(!limiter.memory_growing(100, 50, Some(40)).expect("no error"));
        assert_eq!(limiter.peak(), 100);
        assert_eq!(limiter.refused(), Some(164));
    }
}
