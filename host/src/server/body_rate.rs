//! The request body's deadline: after a grace period a body must keep
//! arriving at a minimum average rate, so a client trickling one byte a
//! second cannot hold a connection (and a handler) forever. A body that
//! falls behind ends with [`BodyError::TooSlow`], which the body readers
//! answer with 408 `request_timeout`.
//!
//! The rule is cumulative: `t` after the handler first asks for the body,
//! at least `(t - grace) × min_rate` bytes must have arrived. So a body of
//! `n` bytes always has `grace + n / min_rate` to arrive, bursts are fine,
//! and the deadline scales with the size the client chose to send.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// The minimum rate a request body must keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    /// Time a body has before the rate is enforced (slow starts, TLS
    /// proxies, a client computing its first chunk).
    pub grace: Duration,
    /// Average bytes per second the body must arrive at after the grace.
    pub min_bytes_per_second: u64,
}

impl Default for BodyRate {
    /// 10 s of grace, then 16 KiB/s: a 16 MiB body may take 17 minutes, a
    /// one-byte-a-second trickle is cut off after about ten seconds.
    fn default() -> Self {
        Self { grace: Duration::from_secs(10), min_bytes_per_second: 16 * 1024 }
    }
}

impl BodyRate {
    /// When a body that started at `start` and has delivered `received`
    /// bytes must have delivered its next one.
    pub(crate) fn deadline(&self, start: Instant, received: u64) -> Instant {
        let rate = self.min_bytes_per_second.max(1);
        let earned = Duration::from_secs(received / rate)
            .saturating_add(Duration::from_nanos((received % rate).saturating_mul(1_000_000_000) / rate));
        // A year is as good as never, and cannot overflow an Instant.
        start + self.grace.saturating_add(earned).min(Duration::from_secs(365 * 86_400))
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body fell below the minimum rate.
    #[error(
        "the request body arrived too slowly: {received} bytes in {elapsed:?} (at least {min_rate} bytes/s after {grace:?})"
    )]
    TooSlow {
        /// Bytes received before the deadline.
        received: u64,
        /// Time since the body was first read.
        elapsed: Duration,
        /// The rule's rate.
        min_rate: u64,
        /// The rule's grace.
        grace: Duration,
    },
    /// The connection failed or the framing was invalid.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body held to a [`BodyRate`].
pub struct MinRateBody {
    inner: Incoming,
    rate: BodyRate,
    /// When the handler first asked for a frame (the clock does not run
    /// while the server itself is busy before reading).
    started: Option<Instant>,
    received: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl std::fmt::Debug for MinRateBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinRateBody").field("rate", &self.rate).field("received", &self.received).finish()
    }
}

impl MinRateBody {
    /// Holds `inner` to `rate`.
    pub fn new(inner: Incoming, rate: BodyRate) -> Self {
        Self { inner, rate, started: None, received: 0, sleep: None, failed: false }
    }
}

impl HttpBody for MinRateBody {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.failed = true;
                Poll::Ready(Some(Err(BodyError::Read(err))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.rate.deadline(started, this.received);
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.failed = true;
                Poll::Ready(Some(Err(BodyError::TooSlow {
                    received: this.received,
                    elapsed: started.elapsed(),
                    min_rate: this.rate.min_bytes_per_second,
                    grace: this.rate.grace,
                })))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_what_arrived() {
        let rule = BodyRate { grace: Duration::from_secs(10), min_bytes_per_second: 1000 };
        let start = Instant::now();
        assert_eq!(rule.deadline(start, 0), start + Duration::from_secs(10));
        assert_eq!(rule.deadline(start, 1500), start + Duration::from_millis(11_500));
        assert!(rule.deadline(start, u64::MAX) > start);
    }
}
