//! Test harness: runs the real `berth serve` binary on a free loopback port with
//! a given data folder, and stops it with SIGKILL (so a restart test is a crash test).
#![allow(dead_code)]

pub mod browser;
pub mod daemons;
pub mod front;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct Server {
    child: Option<Child>,
    /// The S3 server holding the content, with `BERTH_TEST_STORAGE=s3`.
    s3: Option<s3::S3>,
    addr: String,
    scheme: &'static str,
    /// Every line the server logged, for tests that read the request log.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        Server::start_with(root, &[])
    }

    /// Starts with extra `berth serve` arguments. With
    /// `BERTH_TEST_STORAGE=s3`, the content goes to a bucket of an S3 server
    /// of its own, kept in `root` (see s3.rs).
    pub fn start_with(root: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--root"]);
        command.arg(root);
        if !s3::enabled() {
            return Server::spawn(command, args);
        }
        let s3 = s3::S3::start(&root.join("s3"));
        let mut server = Server::start_on(root, &s3, args);
        server.s3 = Some(s3);
        server
    }

    /// Starts with the content in `s3`'s bucket, staging in `root`: several
    /// servers started so are replicas of one registry.
    pub fn start_on(root: &Path, s3: &s3::S3, args: &[&str]) -> Server {
        Server::start_under(root, s3, s3::BUCKET, args)
    }

    /// As [`Server::start_on`], under `place`: the bucket, or `BUCKET/PREFIX`.
    pub fn start_under(root: &Path, s3: &s3::S3, place: &str, args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--root"]);
        command.arg(root);
        command.args(s3.serve_args(place)).envs(s3::S3::env());
        Server::spawn(command, args)
    }

    /// Where the content is: the data folder, or the S3 server's folder of
    /// its bucket (whose objects are files laid out as in a data folder).
    pub fn content(&self, root: &Path) -> PathBuf {
        match &self.s3 {
            Some(s3) => s3.bucket_dir(s3::BUCKET),
            None => root.to_owned(),
        }
    }

    /// Starts with no `--root`, in working folder `dir`, as a user would.
    pub fn start_in(dir: &Path) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        command.current_dir(dir);
        Server::spawn(command, &[])
    }

    fn spawn(mut command: Command, args: &[&str]) -> Server {
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start berth serve");
        let scheme = if args.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines
                .next()
                .expect("berth serve exited before listening")
                .unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                // The URL ends at a space (text logs) or a quote (JSON logs).
                let url = rest.split([' ', '"']).next().unwrap();
                break url.split("://").nth(1).unwrap().to_owned();
            }
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server {
            child: Some(child),
            s3: None,
            addr,
            scheme,
            log,
        }
    }

    /// `http://127.0.0.1:PORT` (or https) followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Kills the process (SIGKILL: no graceful shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A certificate for 127.0.0.1 and localhost and its key, made by openssl in
/// `dir`; `None` (the test skipped) outside CI without openssl.
pub fn self_signed(dir: &Path, test: &str) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // Not a CA: rustls refuses a CA's certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if made.as_ref().is_ok_and(|o| o.status.success()) {
        return Some((cert, key));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "openssl is needed to make a test certificate"
    );
    eprintln!("SKIPPED {test}: openssl not available");
    None
}

/// A registry for one test: a fresh data folder, `berth serve` on it, and a
/// client. Every test that needs nothing more starts here. The store behind
/// it is the data folder, or a bucket with `BERTH_TEST_STORAGE=s3`, so that
/// the same tests run on both.
pub struct TestRegistry {
    pub server: Server,
    pub http: reqwest::Client,
    root: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(&[])
    }

    /// With extra `berth serve` arguments.
    pub fn start_with(args: &[&str]) -> TestRegistry {
        let root = tempfile::tempdir().unwrap();
        let server = Server::start_with(root.path(), args);
        TestRegistry {
            server,
            http: api::client(),
            root,
        }
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Where the content is laid out: the data folder or the bucket's folder.
    pub fn content(&self) -> PathBuf {
        self.server.content(self.root.path())
    }

    /// `http://127.0.0.1:PORT`, which the request helpers of [`api`] take.
    pub fn base(&self) -> String {
        self.server.url("")
    }

    /// The client and the base URL, for the helpers of [`api`].
    pub fn client(&self) -> (reqwest::Client, String) {
        (self.http.clone(), self.base())
    }
}

/// The filesystem store's layout, seen from outside: the one place the tests
/// know that a blob is the file `blobs/<algorithm>/<prefix>/<hex>`.
pub mod on_disk {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// Every blob stored under the data folder `root`: its digest and size.
    pub fn blobs(root: &Path) -> BTreeMap<String, u64> {
        let mut found = BTreeMap::new();
        for algorithm in ["sha256", "sha512"] {
            let Ok(prefixes) = std::fs::read_dir(root.join("blobs").join(algorithm)) else {
                continue;
            };
            for prefix in prefixes {
                for entry in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
                    let entry = entry.unwrap();
                    let hex = entry.file_name().into_string().unwrap();
                    // A test may count while a collection deletes: a blob gone
                    // between the listing and its size is simply gone.
                    match entry.metadata() {
                        Ok(meta) => found.insert(format!("{algorithm}:{hex}"), meta.len()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => panic!("{}: {e}", entry.path().display()),
                    };
                }
            }
        }
        found
    }

    /// What upload sessions left under `content`: every file of `uploads/`
    /// but the claims a session in a bucket keeps on its offsets once it
    /// ended (they name no bytes; the upload purge removes them).
    pub fn upload_leftovers(content: &Path) -> Vec<PathBuf> {
        files_under(&content.join("uploads"))
            .into_iter()
            .filter(|f| !f.components().any(|c| c.as_os_str() == "offsets"))
            .collect()
    }

    /// Every file under `dir`, at any depth.
    pub fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // A bucket's folder has no `uploads/` before its first upload.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return files,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(files_under(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}

/// HTTP helpers for the API tests.
pub mod api {
    use sha2::{Digest as _, Sha256};

    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    pub fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    pub fn client() -> reqwest::Client {
        builder().build().unwrap()
    }

    /// A client whose requests give up after `timeout`, for a server that may
    /// be killed in the middle of one.
    pub fn client_with_timeout(timeout: std::time::Duration) -> reqwest::Client {
        builder().timeout(timeout).build().unwrap()
    }

    /// Every test client starts here: reqwest is built without a TLS
    /// provider of its own, and berth's builder brings one. An idle pooled
    /// connection is dropped after 5 s: berth closes a kept-alive connection
    /// that sends nothing for 10 s, and a request sent on it just as it
    /// closes fails (reqwest keeps idle connections 90 s by default).
    pub fn builder() -> reqwest::ClientBuilder {
        berth::tls::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(std::time::Duration::from_secs(5))
    }

    pub fn header(r: &reqwest::Response, name: &str) -> String {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Asserts that `r` is an OCI error of this status whose body names this code.
    pub async fn expect_error(r: reqwest::Response, status: u16, code: &str) {
        let (got, url) = (r.status(), r.url().clone());
        let body = r.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{url}: {text}");
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{url}: not an OCI error body ({e}): {text}"));
        assert_eq!(parsed["errors"][0]["code"], code, "{url}: {text}");
    }

    /// The error code of an OCI error body.
    pub async fn error_code(r: reqwest::Response) -> String {
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        body["errors"][0]["code"].as_str().unwrap().to_owned()
    }

    pub async fn json(r: reqwest::Response) -> serde_json::Value {
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    /// Pushes a blob in one request and returns its digest.
    pub async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
        push_blob_as(http, base, repo, data, digest(data)).await
    }

    /// Pushes a blob in one request under digest `d` (e.g. a sha512 one).
    pub async fn push_blob_as(
        http: &reqwest::Client,
        base: &str,
        repo: &str,
        data: &[u8],
        d: String,
    ) -> String {
        let r = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "push of {d}");
        d
    }

    pub fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
        serde_json::json!({ "mediaType": media_type, "digest": digest(data), "size": data.len() })
    }

    /// An OCI image manifest for a config and layers (their bytes).
    pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    /// Pushes the blobs and the manifest of a small image under `reference`;
    /// returns the manifest's bytes.
    pub async fn push_image(
        http: &reqwest::Client,
        base: &str,
        repo: &str,
        reference: &str,
        seed: &str,
    ) -> Vec<u8> {
        let config = format!(r#"{{"seed":"{seed}"}}"#).into_bytes();
        let layer = format!("layer of {seed}").repeat(100).into_bytes();
        push_blob(http, base, repo, &config).await;
        push_blob(http, base, repo, &layer).await;
        let manifest = image_manifest(&config, &[&layer]);
        put_manifest(http, base, repo, reference, OCI_MANIFEST, &manifest).await;
        manifest
    }

    /// Pushes the blobs and the manifest of an image, starting again from
    /// the blobs when a collection swept one of them between its upload and
    /// the manifest (no grace period makes that happen).
    pub async fn push_racing(
        http: &reqwest::Client,
        base: &str,
        repo: &str,
        tag: &str,
        blobs: &[Vec<u8>],
        manifest: &[u8],
    ) {
        for _ in 0..200 {
            for blob in blobs {
                push_blob(http, base, repo, blob).await;
            }
            let r = http
                .put(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.to_vec())
                .send()
                .await
                .unwrap();
            match r.status().as_u16() {
                201 => return,
                400 => assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN"),
                other => panic!("manifest push answered {other}"),
            }
        }
        panic!("{repo}:{tag} never got through");
    }

    pub async fn put_manifest(
        http: &reqwest::Client,
        base: &str,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) {
        let r = http
            .put(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "manifest push of {repo}:{reference}");
        assert_eq!(header(&r, "docker-content-digest"), digest(body));
    }
}

/// One line of the registry's request log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Server {
    /// The requests logged so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        let field = |line: &str, key: &str| -> Option<String> {
            let rest = line.split(&format!(" {key}=")).nth(1)?;
            let value = rest.split(' ').next()?;
            Some(value.trim_matches('"').to_owned())
        };
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("berth::access"))
            .filter_map(|l| {
                Some(Request {
                    method: field(l, "method")?,
                    path: field(l, "path")?,
                    status: field(l, "status")?.parse().ok()?,
                })
            })
            .collect()
    }
}
