//! CPU time of a call. A guest runs on whichever thread polls its future
//! (wasmtime runs it on a fiber there), so summing the thread's CPU clock
//! around every poll measures the guest exactly, across yields and threads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// CPU time consumed by the calling thread so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a
    // constant every Linux and macOS kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Wraps a future and adds up the CPU time spent inside its polls.
pub(crate) struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    spent: Duration,
}

impl<F: Future> CpuTimed<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner: Box::pin(inner), spent: Duration::ZERO }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let start = thread_cpu_time();
        let poll = this.inner.as_mut().poll(cx);
        this.spent += thread_cpu_time().saturating_sub(start);
        poll.map(|output| (output, this.spent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_busy_work_inside_polls_and_never_exceeds_wall_time() {
        let wall = std::time::Instant::now();
        let (sum, cpu) = CpuTimed::new(async {
            let mut sum = 0u64;
            for i in 0..20_000_000u64 {
                sum = std::hint::black_box(sum.wrapping_add(i));
            }
            sum
        })
        .await;
        let wall = wall.elapsed();
        assert!(sum > 0);
        assert!(cpu > Duration::ZERO, "busy work must register CPU time");
        assert!(cpu <= wall + Duration::from_millis(1), "cpu {cpu:?} > wall {wall:?}");
    }
}
