//! A local `redis-server` for tests and benchmarks: started on a free
//! loopback port with AOF in a temporary directory, killed on drop. It never
//! listens beyond 127.0.0.1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// When Redis flushes its append-only file to disk: what a crash of the
/// Redis machine can lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFsync {
    /// Once a second: up to a second of acknowledged writes (accepted jobs,
    /// results) can be lost if the machine or process crashes.
    EverySec,
    /// Before every reply: nothing acknowledged is lost, at the cost of a
    /// disk flush per write.
    Always,
}

impl AppendFsync {
    fn as_str(self) -> &'static str {
        match self {
            Self::EverySec => "everysec",
            Self::Always => "always",
        }
    }
}

/// A running `redis-server`; stopped (SIGKILL) when dropped.
#[derive(Debug)]
pub struct RedisGuard {
    child: Option<Child>,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    port: u16,
    fsync: AppendFsync,
    dir: tempfile::TempDir,
}

impl RedisGuard {
    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (AOF replayed).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(start(self.port, self.fsync, self.dir.path()));
        wait_until_up(self.port);
    }
}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(port: u16, fsync: AppendFsync, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
        .args(["--appendfsync", fsync.as_str(), "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/test.sh installs it)")
}

fn wait_until_up(port: u16) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let mut reply = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not come up within 10 s");
}

/// Starts a `redis-server` on a free port with AOF (`appendfsync everysec`,
/// Redis's default) in a temporary directory. Panics when `redis-server` is
/// not installed (scripts/test.sh installs it).
pub fn spawn_redis() -> RedisGuard {
    spawn_redis_with(AppendFsync::EverySec)
}

/// Like [`spawn_redis`] with the given fsync policy.
pub fn spawn_redis_with(fsync: AppendFsync) -> RedisGuard {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let child = start(port, fsync, dir.path());
    wait_until_up(port);
    RedisGuard { child: Some(child), url: format!("redis://127.0.0.1:{port}"), port, fsync, dir }
}
