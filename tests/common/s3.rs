//! A real S3 server for the object-storage runs: s3s-fs (installed by
//! tests/tools/install-s3s.sh into target/s3s/, or $BERTH_S3S_FS), serving a
//! folder on a free loopback port with SigV4 and its own credentials. Each of
//! its buckets is a folder of that folder, and each object a file in it.
//!
//! With `BERTH_TEST_STORAGE=s3`, every [`super::Server`] keeps its content in
//! a bucket of its own server, whose folder is in the server's data folder:
//! a restart on the same data folder finds the same bucket.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "berth-test";
pub const SECRET_KEY: &str = "berth-test-secret";
/// The bucket of a test server's content.
pub const BUCKET: &str = "berth";

/// Whether servers keep their content in S3 (`BERTH_TEST_STORAGE=s3`).
pub fn enabled() -> bool {
    match std::env::var("BERTH_TEST_STORAGE").as_deref() {
        Ok("s3") => true,
        Ok("fs") | Err(_) => false,
        Ok(other) => panic!("BERTH_TEST_STORAGE={other}: fs or s3"),
    }
}

fn binary() -> PathBuf {
    std::env::var_os("BERTH_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/s3s/bin/s3s-fs"))
}

/// An s3s-fs process, killed when dropped.
pub struct S3 {
    child: Child,
    host: String,
    port: u16,
    dir: PathBuf,
}

impl S3 {
    /// Serves `dir` (made if missing) on loopback, with [`BUCKET`] in it.
    pub fn start(dir: &Path) -> S3 {
        S3::start_at(dir, "127.0.0.1")
    }

    /// Serves `dir` on `host` (an address of this machine), with [`BUCKET`]
    /// in it.
    pub fn start_at(dir: &Path, host: &str) -> S3 {
        let binary = binary();
        assert!(
            binary.exists(),
            "{} is missing: run tests/tools/install-s3s.sh (.ci/run does)",
            binary.display()
        );
        std::fs::create_dir_all(dir.join(BUCKET)).unwrap();
        let port = std::net::TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(&binary)
            .args(["--host", host, "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let s3 = S3 {
            child,
            host: host.to_owned(),
            port,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((host, port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The folder holding the objects of `bucket`.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.join(bucket)
    }

    /// The `berth serve` arguments that keep its content in `place`: a
    /// bucket, or `BUCKET/PREFIX`.
    pub fn serve_args(&self, place: &str) -> Vec<String> {
        vec![
            "--storage".into(),
            format!("s3://{place}"),
            "--storage-option".into(),
            format!("endpoint={}", self.endpoint()),
        ]
    }

    /// The environment `berth serve` takes the credentials from.
    pub fn env() -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
