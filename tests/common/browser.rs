//! A real headless browser for the web UI's tests: Debian's chromium, driven
//! through its chromedriver over WebDriver (fantoccini). Each [`Browser`] is a
//! chromedriver of its own; each session a fresh profile, so that one user's
//! remembered credentials never reach another's session.
//!
//! Screenshots go under `$BERTH_ARTIFACTS/web-ui/` (default
//! `target/artifacts/web-ui/`), which CI keeps.

use super::daemons;
use fantoccini::{Client, ClientBuilder};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The flags that keep chromium to the page under test: no sandbox (CI runs
/// as root), and none of its own traffic, which this closed network refuses.
/// A certificate error is ignored: the HTTPS test's is self-signed.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--ignore-certificate-errors",
];

pub struct Browser {
    driver: Child,
    port: u16,
    profiles: tempfile::TempDir,
    sessions: std::sync::atomic::AtomicUsize,
}

impl Browser {
    /// Starts chromedriver; `None` (the test skipped) outside CI without
    /// chromium installed.
    pub fn start(test: &str) -> Option<Browser> {
        if !daemons::need(test, &["chromium", "chromedriver"]) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Browser {
            driver,
            port,
            profiles: tempfile::tempdir().unwrap(),
            sessions: Default::default(),
        })
    }

    /// A new browser window of `width`×`height`, with a profile of its own.
    /// Under 500 pixels (headless chromium's narrowest window), the page is
    /// shown as on a phone of that size.
    pub async fn session(&self, width: u32, height: u32) -> Client {
        self.session_with(width, height, &[]).await
    }

    /// [`Browser::session`] with more chromium flags.
    pub async fn session_with(&self, width: u32, height: u32, flags: &[&str]) -> Client {
        let n = self
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.profiles.path().join(n.to_string());
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        args.extend(flags.iter().map(|f| f.to_string()));
        let mut capabilities = serde_json::Map::new();
        let mut options = serde_json::json!({ "binary": "/usr/bin/chromium", "args": args });
        if width < 500 {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2 }
            });
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go.
pub fn artifacts() -> PathBuf {
    let dir = match std::env::var_os("BERTH_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts"),
    }
    .join("web-ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves what `client` shows as `<name>.png` under [`artifacts`].
pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let path = artifacts().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}
