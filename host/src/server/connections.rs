//! Connections: the accept loop, their timeouts, the cap, and how a
//! connection ends.
//!
//! Each connection is served by hyper's HTTP/1 server in its own task and
//! is always in one phase:
//!
//! - **head**: waiting for, or reading, a request head. The whole head must
//!   arrive within the header timeout, counted from the accept (or from the
//!   first byte of a later request on a kept-alive connection), so a silent
//!   or slowloris socket is closed after it.
//! - **idle**: kept alive between requests, closed after the idle timeout.
//! - **busy**: a request is being handled. Its body is held to a minimum
//!   rate ([`super::body_rate`]); the handler's own limits bound the rest.
//! - **responding**: the response is being written, held to the same
//!   minimum rate, so a client that never reads cannot keep a slot.
//! - **lingering**: hyper is done (often after an early answer such as 413
//!   or 401 to a client still sending its body), so the server shuts its
//!   writing side and reads and discards what the client still sends, for a
//!   bounded time and byte count, before closing. A client that writes its
//!   whole body before reading then gets the answer instead of a reset.
//!
//! At most `max_connections` connections are admitted. When a new one
//! arrives at the cap, the connection that has waited longest without a
//! request in progress (lingering ones first) is closed to make room, so
//! idle sockets cannot lock clients out. Only when every admitted
//! connection is busy is the newcomer refused: up to [`OVER_CAP`] such
//! connections are answered 503 `overloaded` with `Connection: close`, any
//! more are closed at once. Without a configured cap the limit is derived
//! from the file-descriptor limit (raised to its hard maximum at start),
//! keeping [`FD_RESERVE`] descriptors for files, Redis and the artifact cache.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tower_service::Service;

use super::body_rate::{BodyRate, MinRateBody};
use crate::priority;

/// File descriptors kept for everything but connections when the cap is
/// derived from the descriptor limit: data-dir files, Redis, the artifact
/// cache, the over-cap answers.
pub const FD_RESERVE: usize = 256;

/// Connections beyond the cap answered 503 at once; more are closed unanswered.
pub const OVER_CAP: usize = 64;

/// A derived cap never exceeds this (each connection costs buffers even
/// when the descriptor limit is in the millions).
pub const DERIVED_CEILING: usize = 65_536;

/// How connections are admitted, timed out and closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Connections admitted at once; `None` derives it from the
    /// file-descriptor limit (see [`connection_limit`]).
    pub max_connections: Option<usize>,
    /// The whole request head must arrive within this.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request is closed after this.
    pub idle_timeout: Duration,
    /// The rate a request body must keep up (408 `request_timeout` otherwise).
    pub body_rate: BodyRate,
    /// Longest a closing connection keeps reading what the client still sends.
    pub linger_timeout: Duration,
    /// Most bytes a closing connection reads and discards.
    pub linger_bytes: u64,
    /// Bytes a second every closing connection together reads and
    /// discards: past it reads wait, and TCP's flow control slows the
    /// senders, so refused uploads cannot make the node copy bytes as fast
    /// as clients can send them.
    pub linger_rate: u64,
}

impl Default for ConnectionConfig {
    /// A 10 s header timeout (nginx and Apache use 60 s and 20-40 s; a
    /// request head is a few hundred bytes), 30 s of keep-alive, the body
    /// rate's defaults, and lingering for up to 10 s or 64 MiB (enough for
    /// a body at the upload limits to be read by the server on loopback or
    /// a LAN) at 64 MiB/s for every lingering connection together.
    fn default() -> Self {
        Self {
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_rate: BodyRate::default(),
            linger_timeout: Duration::from_secs(10),
            linger_bytes: 64 * 1024 * 1024,
            linger_rate: 64 * 1024 * 1024,
        }
    }
}

/// Whether a request's connection was admitted under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// False when the connection is over the cap.
    pub admitted: bool,
}

/// Raises the soft file-descriptor limit to the hard one and returns the
/// soft limit in force, if it can be read.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit; the call only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}

/// The cap in force: `configured`, or one derived from the descriptor limit.
pub fn connection_limit(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| derived_limit(raise_fd_limit().unwrap_or(1024)))
}

/// Connections that fit in `descriptors` after the reserve and the over-cap answers.
fn derived_limit(descriptors: u64) -> usize {
    let descriptors = usize::try_from(descriptors).unwrap_or(usize::MAX);
    descriptors.saturating_sub(FD_RESERVE + OVER_CAP).clamp(16, DERIVED_CEILING)
}

/// Where a connection is in its life; decides its deadline and whether it
/// may be closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for or reading a request head, since then.
    Head(Instant),
    /// Kept alive with nothing to do, since then.
    Idle(Instant),
    /// A request is being handled.
    Busy,
    /// The response is being written: since then, with this many bytes
    /// already written on the connection before it.
    Responding(Instant, u64),
    /// Reading and discarding before closing.
    Lingering,
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    HeaderTimeout,
    IdleTimeout,
    ResponseTooSlow,
    Shed,
}

/// One connection's phase, shared by its task, its socket and its requests.
#[derive(Debug)]
struct ConnectionState {
    phase: Mutex<Phase>,
    shed: AtomicBool,
    /// Bytes written on the connection so far.
    written: AtomicU64,
    changed: Notify,
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            shed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is a plain value; a panic elsewhere cannot leave it half-written.
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts on its next request head.
    fn bytes_arrived(&self) {
        let mut phase = self.phase();
        if matches!(*phase, Phase::Idle(_)) {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// Asks the connection's task to close it now.
    fn shed(&self) {
        self.shed.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// The order in which connections at the cap are closed to make room
    /// (lowest first), or `None` when a request is in progress.
    fn shed_order(&self) -> Option<(u8, Instant)> {
        match *self.phase() {
            Phase::Lingering => Some((0, Instant::now())),
            Phase::Head(since) | Phase::Idle(since) => Some((1, since)),
            Phase::Busy | Phase::Responding(..) => None,
        }
    }

    /// The phase's deadline, if it has one.
    fn deadline(&self, config: &ConnectionConfig) -> Option<(Instant, Expiry)> {
        match *self.phase() {
            Phase::Head(since) => Some((since + config.header_timeout, Expiry::HeaderTimeout)),
            Phase::Idle(since) => Some((since + config.idle_timeout, Expiry::IdleTimeout)),
            Phase::Responding(since, before) => {
                let written = self.written.load(Ordering::Relaxed).saturating_sub(before);
                Some((config.body_rate.deadline(since, written), Expiry::ResponseTooSlow))
            }
            Phase::Busy | Phase::Lingering => None,
        }
    }

    /// Resolves when the connection must be closed: its phase's deadline
    /// passed or it was shed.
    async fn expired(&self, config: &ConnectionConfig) -> Expiry {
        loop {
            let changed = self.changed.notified();
            if self.shed.load(Ordering::Relaxed) {
                return Expiry::Shed;
            }
            // A response's deadline moves as it is written: look again when it passes.
            match self.deadline(config) {
                Some((at, expiry)) if at <= Instant::now() => return expiry,
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = changed => {}
                },
                None => changed.await,
            }
        }
    }
}

/// Marks its connection busy while a request is handled and its response
/// written; dropping it (hyper drops the response body once sent) starts
/// the idle clock.
#[derive(Debug)]
struct RequestGuard(Arc<ConnectionState>);

impl RequestGuard {
    fn begin(state: &Arc<ConnectionState>) -> Self {
        state.set(Phase::Busy);
        Self(Arc::clone(state))
    }

    /// The handler has answered; the response is being written.
    fn responding(&self) {
        self.0.set(Phase::Responding(Instant::now(), self.0.written.load(Ordering::Relaxed)));
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.set(Phase::Idle(Instant::now()));
    }
}

/// A response body that keeps its request's [`RequestGuard`] until sent.
struct GuardedBody {
    body: Body,
    _guard: RequestGuard,
}

impl HttpBody for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The admitted connections, by id.
#[derive(Debug)]
struct Registry {
    admitted: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    next_id: AtomicU64,
    over_cap: AtomicUsize,
    max: usize,
}

/// What the registry decided about a new connection.
enum Admit {
    /// Admitted; the slot is given back when the guard drops.
    Admitted(Slot),
    /// Over the cap: answered 503; counted until the guard drops.
    OverCap(OverCapGuard),
    /// Over the cap and over [`OVER_CAP`]: closed unanswered.
    Refused,
}

impl Registry {
    fn new(max: usize) -> Self {
        Self { admitted: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0), over_cap: AtomicUsize::new(0), max }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        // Entries are inserted and removed whole; a panic cannot leave one half-made.
        self.admitted.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits `state`, closing the longest-waiting idle connection to make
    /// room at the cap.
    fn admit(self: &Arc<Self>, state: &Arc<ConnectionState>) -> Admit {
        let mut admitted = self.lock();
        if admitted.len() >= self.max {
            let oldest = admitted
                .iter()
                .filter_map(|(id, other)| other.shed_order().map(|order| (order, *id)))
                .min()
                .map(|(_, id)| id);
            match oldest.and_then(|id| admitted.remove(&id)) {
                Some(victim) => {
                    tracing::debug!("connection cap reached: closing the longest-idle connection");
                    victim.shed();
                }
                None => {
                    drop(admitted);
                    if self.over_cap.fetch_add(1, Ordering::Relaxed) >= OVER_CAP {
                        self.over_cap.fetch_sub(1, Ordering::Relaxed);
                        return Admit::Refused;
                    }
                    return Admit::OverCap(OverCapGuard(Arc::clone(self)));
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        admitted.insert(id, Arc::clone(state));
        Admit::Admitted(Slot { registry: Arc::clone(self), id })
    }
}

/// An admitted connection's place under the cap.
struct Slot {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Counts a connection answered over the cap.
struct OverCapGuard(Arc<Registry>);

impl Drop for OverCapGuard {
    fn drop(&mut self) {
        self.0.over_cap.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, telling its connection when bytes arrive.
struct Watched {
    stream: TcpStream,
    state: Arc<ConnectionState>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            this.state.written.fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            this.state.written.fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// What every connection task shares.
struct Shared {
    router: Router,
    config: ConnectionConfig,
    registry: Arc<Registry>,
    linger_pace: Arc<DrainPace>,
}

/// Serves `router` on `listener` under `config` with at most `max`
/// admitted connections, until `shutdown` resolves; then stops accepting,
/// lets each connection finish its request in progress, and returns once
/// every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ConnectionConfig,
    max: usize,
    shutdown: impl Future<Output = ()>,
) {
    let linger_pace = Arc::new(DrainPace::new(config.linger_rate));
    let shared = Arc::new(Shared { router, config, registry: Arc::new(Registry::new(max)), linger_pace });
    let (stop, stopping) = watch::channel(false);
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let task = connection(stream, peer, Arc::clone(&shared), stopping.clone(), open.clone());
                tokio::spawn(task);
            }
            Err(err) => {
                // Out of file descriptors and the like: pause, do not spin.
                tracing::warn!(cause = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
}

/// Serves one connection from accept to close. `_open` is held until the
/// connection is closed, so [`serve`] knows when all are.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    let state = Arc::new(ConnectionState::new());
    let (admitted, _slot, _over_cap) = match shared.registry.admit(&state) {
        Admit::Admitted(slot) => (true, Some(slot), None),
        Admit::OverCap(guard) => (false, None, Some(guard)),
        Admit::Refused => {
            tracing::debug!(%peer, "connection refused: over the cap and its overflow");
            return;
        }
    };
    // Responses are written whole; waiting to coalesce them only adds latency.
    let _ = stream.set_nodelay(true);
    let admission = ConnectInfo(Admission { admitted });
    let service = {
        let state = Arc::clone(&state);
        let router = shared.router.clone();
        let rate = shared.config.body_rate;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = RequestGuard::begin(&state);
            let (parts, body) = request.into_parts();
            let mut request = axum::extract::Request::from_parts(parts, Body::new(MinRateBody::new(body, rate)));
            request.extensions_mut().insert(admission);
            let call = router.clone().call(request);
            // Boxed: hyper polls the connection without pinning it, so the future must be Unpin.
            Box::pin(async move {
                let response = match call.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                guard.responding();
                Ok::<_, Infallible>(response.map(|body| GuardedBody { body, _guard: guard }))
            })
        })
    };
    let io = TokioIo::new(Watched { stream, state: Arc::clone(&state) });
    let mut http = http1::Builder::new();
    // Our own header and idle deadlines apply; hyper's would also cut idle keep-alive at the header timeout.
    http.header_read_timeout(None).keep_alive(admitted);
    let mut conn = http.serve_connection(io, service);

    let mut stop_requested = Box::pin(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    let mut expired = Box::pin(state.expired(&shared.config));
    let mut draining = false;
    let ended = poll_fn(|cx| {
        if !draining && stop_requested.as_mut().poll(cx).is_ready() {
            draining = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        if let Poll::Ready(expiry) = expired.as_mut().poll(cx) {
            return Poll::Ready(Err(expiry));
        }
        conn.poll_without_shutdown(cx).map(Ok)
    })
    .await;
    drop(expired);

    match ended {
        Err(expiry) => tracing::debug!(%peer, ?expiry, "connection closed by the server"),
        Ok(served) => {
            if let Err(err) = served {
                tracing::debug!(%peer, cause = %err, "connection ended with an error");
            }
            let stream = conn.into_parts().io.into_inner().stream;
            if draining {
                let mut stream = stream;
                let _ = stream.shutdown().await;
            } else {
                state.set(Phase::Lingering);
                let (timeout, bytes) = (shared.config.linger_timeout, shared.config.linger_bytes);
                let pace = Arc::clone(&shared.linger_pace);
                // Draining may read tens of megabytes: it runs on the
                // low-priority drain thread, off the threads answering requests.
                let Ok(stream) = stream.into_std() else { return };
                let drain = async move {
                    if let Ok(stream) = TcpStream::from_std(stream) {
                        linger(stream, timeout, bytes, &pace).await;
                    }
                };
                let drained = match drain_runtime() {
                    Some(runtime) => runtime.spawn(drain),
                    None => tokio::spawn(drain),
                };
                let abort = drained.abort_handle();
                tokio::select! {
                    _ = drained => {}
                    _ = state.expired(&shared.config) => abort.abort(),
                }
            }
        }
    }
}

/// The thread that drains refused requests' bodies, at
/// [`priority::DRAIN_NICENESS`] below the threads answering requests;
/// `None` (drain where the connection runs) if it cannot be started.
fn drain_runtime() -> Option<&'static tokio::runtime::Handle> {
    static DRAIN: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    DRAIN
        .get_or_init(|| priority::lowered_runtime("sluice-drain", 1, priority::DRAIN_NICENESS).ok())
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
}

/// Closes `stream` the way nginx's lingering close does: shut the writing
/// side (the answer is already sent), then read and discard whatever the
/// client still sends until it closes, for at most `timeout` and `max_bytes`.
/// Closing with unread data would make the kernel reset the connection,
/// and a reset can destroy the answer before the client reads it.
async fn linger(mut stream: TcpStream, timeout: Duration, max_bytes: u64, pace: &DrainPace) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buffer = vec![0u8; LINGER_CHUNK];
    let mut discarded = 0u64;
    let _ = tokio::time::timeout(timeout, async {
        while discarded < max_bytes {
            pace.take(LINGER_CHUNK as u64).await;
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => discarded += read as u64,
            }
        }
    })
    .await;
}

/// What a lingering connection reads at a time.
const LINGER_CHUNK: usize = 64 * 1024;

/// Paces the reads of every lingering connection together to a byte rate.
/// Each read books the next slot of the shared budget and waits for it;
/// a budget left unused is banked for at most [`PACE_BANK`], so a lone
/// refused client is read at full speed for its first chunks.
struct DrainPace {
    bytes_per_second: f64,
    next_free: Mutex<Instant>,
}

/// How much unused drain budget is kept for a burst.
const PACE_BANK: Duration = Duration::from_millis(250);

impl DrainPace {
    fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1) as f64,
            // The bank starts full.
            next_free: Mutex::new({
                let now = Instant::now();
                now.checked_sub(PACE_BANK).unwrap_or(now)
            }),
        }
    }

    /// Waits until `bytes` more may be read.
    async fn take(&self, bytes: u64) {
        let start = {
            let mut next_free = self.next_free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let banked_from = now.checked_sub(PACE_BANK).unwrap_or(now);
            let start = (*next_free).max(banked_from);
            *next_free = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lingering_reads_share_one_byte_rate() {
        let pace = Arc::new(DrainPace::new(1024 * 1024));
        let started = Instant::now();
        // 1 MiB in 64 KiB reads by two connections at once: the first
        // quarter second of budget is banked, the rest comes at 1 MiB/s, so
        // the last read starts at 15/16 s less the bank, whoever makes it.
        let reader = |pace: Arc<DrainPace>| async move {
            for _ in 0..8 {
                pace.take(64 * 1024).await;
            }
        };
        tokio::join!(reader(Arc::clone(&pace)), reader(Arc::clone(&pace)));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(680), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn a_derived_cap_keeps_the_reserve_and_stays_sane() {
        assert_eq!(derived_limit(1024), 1024 - FD_RESERVE - OVER_CAP);
        assert_eq!(derived_limit(100), 16);
        assert_eq!(derived_limit(u64::MAX), DERIVED_CEILING);
    }

    #[test]
    fn raising_the_descriptor_limit_reaches_the_hard_limit() {
        let soft = raise_fd_limit().expect("the limit is readable");
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid, writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!((soft, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let registry = Arc::new(Registry::new(2));
        let oldest = Arc::new(ConnectionState::new());
        let busy = Arc::new(ConnectionState::new());
        let _a = registry.admit(&oldest);
        let _b = registry.admit(&busy);
        busy.set(Phase::Busy);
        let newcomer = Arc::new(ConnectionState::new());
        assert!(matches!(registry.admit(&newcomer), Admit::Admitted(_)));
        assert!(oldest.shed.load(Ordering::Relaxed), "the idle one is closed");
        assert!(!busy.shed.load(Ordering::Relaxed), "the busy one is kept");
    }

    #[tokio::test]
    async fn at_the_cap_with_every_connection_busy_the_newcomer_is_over_it() {
        let registry = Arc::new(Registry::new(1));
        let busy = Arc::new(ConnectionState::new());
        let _slot = registry.admit(&busy);
        busy.set(Phase::Busy);
        let over: Vec<_> = (0..OVER_CAP).map(|_| registry.admit(&Arc::new(ConnectionState::new()))).collect();
        assert!(over.iter().all(|admit| matches!(admit, Admit::OverCap(_))));
        assert!(matches!(registry.admit(&Arc::new(ConnectionState::new())), Admit::Refused));
        drop(over);
        assert!(matches!(registry.admit(&Arc::new(ConnectionState::new())), Admit::OverCap(_)));
    }

    fn short() -> ConnectionConfig {
        ConnectionConfig {
            header_timeout: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(80),
            body_rate: BodyRate { grace: Duration::from_millis(60), min_bytes_per_second: 1000 },
            ..ConnectionConfig::default()
        }
    }

    #[tokio::test]
    async fn a_connection_expires_by_its_phase() {
        let config = short();
        let state = ConnectionState::new();
        let started = Instant::now();
        assert_eq!(state.expired(&config).await, Expiry::HeaderTimeout);
        assert!(started.elapsed() >= config.header_timeout);
        state.set(Phase::Idle(Instant::now()));
        let idle = Instant::now();
        assert_eq!(state.expired(&config).await, Expiry::IdleTimeout);
        assert!(idle.elapsed() >= config.idle_timeout);
    }

    #[tokio::test]
    async fn a_response_being_read_keeps_its_connection_and_a_stalled_one_expires() {
        let config = short();
        let state = Arc::new(ConnectionState::new());
        state.set(Phase::Responding(Instant::now(), 0));
        let writer = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                // 100 bytes every 50 ms is twice the minimum rate; then it stalls.
                for _ in 0..6 {
                    state.written.fetch_add(100, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let started = Instant::now();
        assert_eq!(state.expired(&config).await, Expiry::ResponseTooSlow);
        assert!(started.elapsed() >= Duration::from_millis(300), "expired while the client kept reading");
        writer.await.expect("the writer ends");
    }

    #[tokio::test]
    async fn a_busy_connection_has_no_deadline_until_it_is_shed() {
        let config = short();
        let state = Arc::new(ConnectionState::new());
        state.set(Phase::Busy);
        let waiting = tokio::time::timeout(Duration::from_millis(200), state.expired(&config)).await;
        assert!(waiting.is_err(), "a request in progress is not timed out here");
        state.shed();
        assert_eq!(state.expired(&config).await, Expiry::Shed);
    }
}
