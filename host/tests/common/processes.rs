//! `sluice` processes for multi-process tests: front doors and worker
//! nodes sharing one Redis, each a real child process on loopback, killed
//! on drop. Their logs go to a file so a failing test can show them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The admin token every test front door shares.
pub const ADMIN: &str = "test-admin-token";

/// Compiled artifacts shared by every test process (the data dir of a
/// Redis-mode node holds only its artifact cache).
pub fn node_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-node")
}

/// A running `sluice` child process.
pub struct SluiceProcess {
    child: Child,
    /// `http://127.0.0.1:<port>` for a front door.
    pub url: String,
    log: PathBuf,
    _logs: tempfile::TempDir,
}

impl SluiceProcess {
    /// Starts `sluice <args>` and waits (up to 60 s) for a stdout line
    /// starting with `ready`; returns the process and that line.
    fn start(args: &[&str], ready: &str) -> (Self, String) {
        Self::start_in(&node_data_dir(), args, &[], ready)
    }

    /// As [`Self::start`], with `data_dir` as the node's data directory
    /// and `env` added to the child's environment.
    fn start_in(data_dir: &Path, args: &[&str], env: &[(&str, &Path)], ready: &str) -> (Self, String) {
        let logs = tempfile::tempdir().expect("temp dir");
        let log = logs.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("SLUICE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("sluice starts");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut process = Self { child, url: String::new(), log, _logs: logs };
        loop {
            match received.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with(ready) => return (process, line),
                Ok(_) => {}
                Err(_) => panic!("`sluice {}` did not become ready:\n{}", args.join(" "), process.logs()),
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("`sluice {}` exited with {status}:\n{}", args.join(" "), process.logs());
            }
        }
    }

    /// A front door (`sluice serve --redis … --workers 0`) on a free port.
    pub fn front_door(redis: &str, extra: &[&str]) -> Self {
        Self::front_door_with_env(redis, extra, &[])
    }

    /// As [`Self::front_door`], with `env` added to its environment (e.g.
    /// `SSL_CERT_FILE` naming the CA a TLS Redis was signed by).
    pub fn front_door_with_env(redis: &str, extra: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut args = vec!["serve", "--redis", redis, "--workers", "0", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(&["--admin-token", ADMIN]);
        args.extend_from_slice(extra);
        let (mut process, line) = Self::start_in(&node_data_dir(), &args, env, "sluice listening on ");
        let url = line.trim_start_matches("sluice listening on ").split_whitespace().next().expect("url");
        process.url = url.to_owned();
        process
    }

    /// An embedded node (`sluice serve` with its in-process queue and
    /// workers) on a free port, keeping its state in `data_dir`.
    pub fn embedded(data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN];
        args.extend_from_slice(extra);
        let (mut process, line) = Self::start_in(data_dir, &args, &[], "sluice listening on ");
        let url = line.trim_start_matches("sluice listening on ").split_whitespace().next().expect("url");
        process.url = url.to_owned();
        process
    }

    /// The child's process id, e.g. to read its memory use from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/<pid>/status` in bytes (`VmRSS` now, `VmHWM` the
    /// peak so far).
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("process status");
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().expect("a number of kB");
        kib * 1024
    }

    /// A worker node named `name` (`sluice worker --redis …`).
    pub fn worker(redis: &str, name: &str, extra: &[&str]) -> Self {
        Self::worker_with_env(redis, name, extra, &[])
    }

    /// As [`Self::worker`], with `env` added to its environment.
    pub fn worker_with_env(redis: &str, name: &str, extra: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut args = vec!["worker", "--redis", redis, "--name", name];
        args.extend_from_slice(extra);
        Self::start_in(&node_data_dir(), &args, env, "sluice worker ").0
    }

    /// What the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to 30 s) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the process did not exit within 30 s of SIGTERM:\n{}", self.logs());
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `door` sees `count` live worker nodes.
pub async fn wait_for_workers(door: &SluiceProcess, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::get(format!("{}/readyz", door.url)).await.expect("sent");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status == reqwest::StatusCode::OK && body["worker_nodes"] == count {
            return;
        }
        assert!(Instant::now() < deadline, "expected {count} worker nodes, readyz says {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
