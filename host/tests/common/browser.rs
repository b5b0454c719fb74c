//! A real headless Chromium, driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, which `scripts/test.sh` installs), for the
//! console's tests. Each [`Browser`] runs its own `chromedriver` on a free
//! loopback port with a fresh profile, and both stop on drop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a page gets to reach a state before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Browsers open at once across a test binary: each is a few hundred MB
/// and a busy process, and the machine running the suite has two cores.
fn browsers() -> &'static Semaphore {
    static BROWSERS: OnceLock<Semaphore> = OnceLock::new();
    BROWSERS.get_or_init(|| Semaphore::new(2))
}

/// Where screenshots go: `target/test-artifacts/console/`.
pub fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/console")
}

/// One headless Chromium session.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: SemaphorePermit<'static>,
}

impl Browser {
    /// Starts chromedriver and a Chromium window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Self {
        Self::start_in_time_zone(width, height, None).await
    }

    /// Like [`Browser::start`], with the browser's local time in `zone`
    /// (an IANA name such as `Asia/Kolkata`) rather than the machine's.
    pub async fn start_in_time_zone(width: u32, height: u32, zone: Option<&str>) -> Self {
        let turn = browsers().acquire().await.expect("the browser semaphore is never closed");
        let port = free_port();
        let mut command = Command::new("chromedriver");
        // Chromium inherits it from chromedriver.
        if let Some(zone) = zone {
            command.env("TZ", zone);
        }
        let driver = command
            .arg(format!("--port={port}"))
            // Its own process group, so Chromium goes down with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start chromedriver ({err}); install Debian's chromium and chromium-driver (scripts/test.sh does)")
            });
        let profile = tempfile::tempdir().expect("temp dir");
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if Path::new("/usr/bin/chromium").is_file() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        let webdriver = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&webdriver).await {
                Ok(client) => break client,
                // chromedriver takes a moment to listen.
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("no WebDriver session from chromedriver on port {port}: {err}"),
            }
        };
        Self { client, driver, _profile: profile, _turn: turn }
    }

    /// Opens `url` and waits for the document to load.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|err| panic!("cannot open {url}: {err}"));
    }

    /// Runs `script` in the page (its arguments as `arguments[i]`).
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Waits until `script` returns true, or fails naming `what` and the
    /// page's text.
    pub async fn wait_until(&self, what: &str, script: &str, args: Vec<Value>) {
        let started = Instant::now();
        loop {
            if self.eval(script, args.clone()).await == Value::Bool(true) {
                return;
            }
            if started.elapsed() > PATIENCE {
                let text = self.eval("return document.body.innerText", vec![]).await;
                panic!("the console never showed {what}; the page says:\n{}", text.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the view `name` has loaded its data.
    pub async fn wait_for_view(&self, name: &str) {
        self.wait_until(
            &format!("the {name} view, loaded"),
            "const main = document.querySelector('main'); \
             return !!main && main.dataset.view === arguments[0] && main.dataset.state === 'ready'",
            vec![json!(name)],
        )
        .await;
    }

    /// Waits until an element matches `css`, and returns it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no element matches `{css}`: {err}"))
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_else(|err| panic!("no text in `{css}`: {err}"))
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap_or_else(|err| panic!("cannot clear `{css}`: {err}"));
        field.send_keys(text).await.unwrap_or_else(|err| panic!("cannot type into `{css}`: {err}"));
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|err| panic!("cannot click `{css}`: {err}"));
    }

    /// Chooses `file` in the file input matching `css`, as a user picking
    /// it from disk does.
    pub async fn choose_file(&self, css: &str, file: &Path) {
        let input = self.find(css).await;
        let file = file.canonicalize().unwrap_or_else(|err| panic!("no file {}: {err}", file.display()));
        input.send_keys(&file.display().to_string()).await.unwrap_or_else(|err| panic!("cannot choose a file: {err}"));
    }

    /// Selects the option with `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let select = self.find(css).await;
        select.select_by_value(value).await.unwrap_or_else(|err| panic!("no option `{value}` in `{css}`: {err}"));
    }

    /// Presses `key` on the keyboard, wherever the focus is.
    pub async fn press(&self, key: Key) {
        let press = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.client.perform_actions(press).await.unwrap_or_else(|err| panic!("cannot press {key:?}: {err}"));
    }

    /// Saves the page as `target/test-artifacts/console/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap_or_else(|err| panic!("no screenshot: {err}"));
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }

    /// Ends the session; dropping the browser stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test's browser must not outlive it: the whole group,
        // chromedriver and every Chromium process it started.
        if let Ok(group) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) with a negative pid signals that process
            // group; it reads no memory of ours.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("bound address").port()
}
