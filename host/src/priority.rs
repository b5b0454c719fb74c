//! CPU priority of the threads doing bulk work. Request handling is short
//! and latency-bound; guest code, usage aggregation and draining what a
//! refused client still sends are long and throughput-bound. Bulk work
//! runs on threads of its own at a lower priority (a `nice` increment), so
//! a request is read, queued and answered at once even while the cores are
//! busy; with nothing
//! else runnable, bulk threads still get every core. Lowering a thread's
//! priority needs no privilege (raising it back would).

/// How much lower worker slot threads run.
pub const SLOT_NICENESS: i32 = 5;

/// How much lower the slot threads run that take a tenant's second and
/// later jobs running at once: each step is about a quarter less CPU
/// weight, so five steps give such a job about a third of a first job's.
pub const EXTRA_SLOT_NICENESS: i32 = 10;

/// How much lower the thread aggregating usage runs: below every worker
/// slot, since a minute of calls is seconds of meter work that can wait,
/// and at the slots' level it took CPU from the calls themselves.
pub const METER_NICENESS: i32 = 15;

/// How much lower the thread draining refused requests' bodies runs.
pub const DRAIN_NICENESS: i32 = 10;

/// Lowers the calling thread's priority by `by` (Linux schedules threads
/// separately). A failure leaves the priority as it was.
pub fn lower_this_thread(by: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        let thread = unsafe { libc::gettid() };
        let Ok(thread) = libc::id_t::try_from(thread) else { return };
        // SAFETY: reads the priority of this thread only (-1 is a valid
        // priority; a failed read just makes the new value off by one).
        let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, thread) };
        // SAFETY: changes the priority of this thread only.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, thread, current + by) } != 0 {
            tracing::debug!(by, "cannot lower a bulk thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

/// A runtime of `threads` threads at `by` below the rest of the process.
pub fn lowered_runtime(name: &str, threads: usize, by: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .on_thread_start(move || lower_this_thread(by))
        .enable_all()
        .build()
}
