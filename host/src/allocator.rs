//! How the process allocator treats large buffers. Images, call bodies and
//! outputs are megabytes each; glibc's malloc by default raises its mmap
//! threshold after the first large free (up to 32 MiB), so later buffers of
//! that size come from per-thread arenas and stay resident once freed. With
//! a thread per worker slot that is tens of megabytes per thread held for
//! nothing. A fixed threshold keeps every large buffer mapped on its own
//! and handed back to the kernel the moment it is freed.

/// Buffers at least this large are mapped individually and unmapped on free.
pub const LARGE_BUFFER: usize = 1024 * 1024;

/// Applies [`LARGE_BUFFER`] to the process allocator. Call once at start,
/// before threads are spawned. A no-op where the allocator is not glibc's.
pub fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(LARGE_BUFFER).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only adjusts allocator parameters; it is called
        // before any other thread exists, as glibc requires.
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
        if applied == 0 {
            tracing::warn!("the allocator refused a fixed mmap threshold; freed large buffers may stay resident");
        }
    }
}
