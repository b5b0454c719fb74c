//! The compiled functions a node keeps in memory, bounded in number. A
//! node runs whatever version a job names, so without a bound every
//! version any tenant ever deployed and called would stay compiled in
//! every worker's memory; past the bound the least recently used one is
//! dropped (it loads again from the artifact cache, in milliseconds, when
//! called). Built-ins are never dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

/// One kept function and when it was last handed out.
struct Entry<F> {
    function: F,
    last_used: AtomicU64,
    pinned: bool,
}

/// Compiled functions (`F`) by version, at most `capacity` of them besides
/// the built-ins.
pub(super) struct LoadedFunctions<F> {
    entries: RwLock<HashMap<String, Entry<F>>>,
    capacity: usize,
    /// A logical clock: each use takes the next tick.
    clock: AtomicU64,
}

impl<F: Clone> LoadedFunctions<F> {
    /// An empty set keeping at most `capacity` (at least 1) unpinned functions.
    pub(super) fn new(capacity: usize) -> Self {
        Self { entries: RwLock::new(HashMap::new()), capacity: capacity.max(1), clock: AtomicU64::new(0) }
    }

    /// Keeps a built-in for good.
    pub(super) fn pin(&self, version: &str, function: F) {
        self.put(version, function, true);
    }

    /// The function for `version`, if kept; marks it used.
    pub(super) fn get(&self, version: &str) -> Option<F> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(version)?;
        entry.last_used.store(self.tick(), Ordering::Relaxed);
        Some(entry.function.clone())
    }

    /// Keeps `function`, dropping the least recently used ones past the capacity.
    pub(super) fn insert(&self, version: &str, function: F) {
        self.put(version, function, false);
    }

    /// Drops `version` unless it is a built-in.
    pub(super) fn remove(&self, version: &str) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.get(version).is_some_and(|entry| !entry.pinned) {
            entries.remove(version);
        }
    }

    /// The versions kept, built-ins included.
    pub(super) fn versions(&self) -> Vec<String> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    fn put(&self, version: &str, function: F, pinned: bool) {
        let version = version.to_owned();
        let entry = Entry { function, last_used: AtomicU64::new(self.tick()), pinned };
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let pinned = pinned || entries.get(&version).is_some_and(|old| old.pinned);
        entries.insert(version, Entry { pinned, ..entry });
        // Evictions are rare (a miss that compiled) and the set is small, so a scan is fine.
        while entries.values().filter(|entry| !entry.pinned).count() > self.capacity {
            let oldest = entries
                .iter()
                .filter(|(_, entry)| !entry.pinned)
                .min_by_key(|(_, entry)| entry.last_used.load(Ordering::Relaxed))
                .map(|(version, _)| version.clone());
            match oldest {
                Some(version) => entries.remove(&version),
                None => break,
            };
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_function_goes_first_and_built_ins_never() {
        let loaded = LoadedFunctions::new(2);
        loaded.pin("builtin", 0);
        loaded.insert("a", 1);
        loaded.insert("b", 2);
        assert_eq!(loaded.get("a"), Some(1), "a is now more recent than b");
        loaded.insert("c", 3);
        assert_eq!((loaded.get("a"), loaded.get("b"), loaded.get("c")), (Some(1), None, Some(3)));
        for n in 0..10 {
            loaded.insert(&format!("v{n}"), n);
        }
        assert_eq!(loaded.versions().len(), 3, "two kept besides the built-in");
        assert_eq!(loaded.get("builtin"), Some(0));
    }

    #[test]
    fn removing_spares_built_ins() {
        let loaded = LoadedFunctions::new(4);
        loaded.pin("builtin", 0);
        loaded.insert("builtin", 0);
        loaded.insert("a", 1);
        loaded.remove("a");
        loaded.remove("builtin");
        assert_eq!((loaded.get("a"), loaded.get("builtin")), (None, Some(0)));
    }
}
