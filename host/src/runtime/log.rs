//! Captured stdout/stderr. A guest's output is its invocation log: kept up
//! to a cap and otherwise counted and dropped, so a flood neither fails the
//! call nor costs the host memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use serde::Serialize;
use sluice_scheduler::JobLog;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may write in one `write` call; the stream always has
/// room because it discards what is over the cap.
const WRITE_PERMIT: usize = 64 * 1024;

/// What a call printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallLog {
    /// Standard output, lossily decoded, up to the cap.
    pub stdout: String,
    /// Standard error, lossily decoded, up to the cap.
    pub stderr: String,
    /// Bytes written past the caps and dropped (both streams together).
    pub dropped_bytes: u64,
}

impl CallLog {
    /// The log as the queue keeps it with the job: what was dropped past
    /// the caps shows as `truncated`.
    pub fn into_job_log(self) -> JobLog {
        JobLog { stdout: self.stdout, stderr: self.stderr, truncated: self.dropped_bytes > 0 }
    }
}

#[derive(Debug)]
struct Buffer {
    kept: Vec<u8>,
    cap: usize,
    dropped: u64,
}

/// One capped output stream, shared between WASI's handles to it.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    buffer: Arc<Mutex<Buffer>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        Self { buffer: Arc::new(Mutex::new(Buffer { kept: Vec::new(), cap, dropped: 0 })) }
    }

    fn push(&self, bytes: &[u8]) {
        // A poisoned lock only means another handle panicked mid-push; the
        // bytes are still a valid prefix.
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buffer.cap.saturating_sub(buffer.kept.len());
        let kept = bytes.len().min(room);
        buffer.kept.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }

    /// The kept bytes (lossily decoded) and how many were dropped.
    pub(crate) fn contents(&self) -> (String, u64) {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        (String::from_utf8_lossy(&buffer.kept).into_owned(), buffer.dropped)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let pipe = CappedPipe::new(5);
        pipe.push(b"abc");
        pipe.push(b"defgh");
        assert_eq!(pipe.contents(), ("abcde".to_owned(), 3));
    }
}
