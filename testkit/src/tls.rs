//! A `redis-server` that speaks only TLS, with a throwaway certificate
//! authority: the CA's certificate is written beside it so a client can be
//! told to trust it (`SSL_CERT_FILE`), and the server requires a password
//! so tests can check the password never shows.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// The password the TLS server requires.
pub const TLS_REDIS_PASSWORD: &str = "tls-test-s3cret";

/// A running TLS-only `redis-server`; killed when dropped.
#[derive(Debug)]
pub struct TlsRedisGuard {
    child: Child,
    /// `rediss://:<password>@localhost:<port>`.
    pub url: String,
    /// PEM of the certificate authority that signed the server's certificate.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRedisGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a TLS-only `redis-server` on a free loopback port whose
/// certificate (for `localhost` and `127.0.0.1`) is signed by a fresh CA.
/// Panics when `redis-server` is missing or was built without TLS.
pub fn spawn_redis_tls() -> TlsRedisGuard {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let server = server_params.signed_by(&server_key, &issuer).expect("server certificate");

    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let cert_file = write("server.pem", server.pem());
    let key_file = write("server.key", server_key.serialize_pem());

    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--tls-auth-clients", "no"])
        .args(["--requirepass", TLS_REDIS_PASSWORD])
        .arg("--tls-cert-file")
        .arg(&cert_file)
        .arg("--tls-key-file")
        .arg(&key_file)
        .arg("--tls-ca-cert-file")
        .arg(&ca_file)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/test.sh installs it)");
    // Without speaking TLS here, an accepted TCP connection is the best sign of life.
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "TLS redis-server on port {port} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedisGuard { child, url: format!("rediss://:{TLS_REDIS_PASSWORD}@localhost:{port}"), ca_file, _dir: dir }
}
