//! The connection cap: a listener that admits at most `max` open
//! connections. One over the cap is still served, but every request on it
//! gets 503 `overloaded` with `Connection: close`, so a client learns why
//! instead of hanging in the accept backlog.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A TCP listener that hands out a permit with each connection while it has one.
#[derive(Debug)]
pub struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl CappedListener {
    /// Caps `inner` at `max` open connections.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self { inner, permits: Arc::new(Semaphore::new(max)) }
    }
}

impl Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
                    return (CappedStream { stream, permit }, peer);
                }
                Err(err) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection and, when it was admitted, the permit it holds until it closes.
#[derive(Debug)]
pub struct CappedStream {
    stream: TcpStream,
    permit: Option<OwnedSemaphorePermit>,
}

/// Whether a request's connection was admitted under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// False when the connection is over the cap.
    pub admitted: bool,
}

impl Connected<IncomingStream<'_, CappedListener>> for Admission {
    fn connect_info(stream: IncomingStream<'_, CappedListener>) -> Self {
        Self { admitted: stream.io().permit.is_some() }
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
