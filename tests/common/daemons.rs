//! Real tools a test drives: a check that they are installed (skip outside CI,
//! fail in CI where .ci/run installs them), a runner that shows their output on
//! failure, and private daemons (containerd, dockerd) in a temp folder, each
//! stopped by its PID when the test ends. Needs root for the daemons.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether every tool is installed; outside CI a missing one skips the test.
pub fn need(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {missing:?} not installed, but .ci/run installs them");
    }
    eprintln!("SKIPPED {test}: {missing:?} not installed (.ci/run installs them)");
    false
}

/// Runs a command and returns its stdout; a failure shows what it printed.
pub fn run(program: &str, args: &[&str]) -> String {
    output_of(Command::new(program).args(args))
}

/// Runs `command` (with its environment and folder) and returns its stdout;
/// a failure shows the command and what it printed.
pub fn output_of(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{:?}: {e}", command.get_program()));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}
/// A daemon started by a test, killed by PID when the test ends.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn start(program: &str, args: &[&str], log: &Path, ready: impl Fn() -> bool) -> Daemon {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let daemon = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            assert!(Instant::now() < deadline, "{program} did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private containerd: its own root, state and socket, CRI disabled.
pub fn containerd(dir: &Path) -> (Daemon, String) {
    std::fs::create_dir_all(dir).unwrap();
    let socket = dir.join("containerd.sock").display().to_string();
    let config = dir.join("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{socket}\"\n",
            dir.join("root").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(
        "containerd",
        &["--config", config.to_str().unwrap()],
        &dir.join("containerd.log"),
        || succeeds("ctr", &["-a", &socket, "version"]),
    );
    (daemon, socket)
}

/// A private dockerd (vfs storage, no iptables, no bridge) on its own containerd.
/// Returns the daemons, to drop at the end, and dockerd's socket.
pub fn dockerd(dir: &Path) -> ((Daemon, Daemon), String) {
    let (containerd, containerd_socket) = containerd(&dir.join("containerd"));
    let socket = format!("unix://{}", dir.join("docker.sock").display());
    let path = |name: &str| dir.join(name).display().to_string();
    let dockerd = Daemon::start(
        "dockerd",
        &[
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
            "--data-root",
            &path("docker-data"),
            "--exec-root",
            &path("docker-exec"),
            "--pidfile",
            &path("docker.pid"),
            "-H",
            &socket,
            "--containerd",
            &containerd_socket,
        ],
        &dir.join("dockerd.log"),
        || succeeds("docker", &["-H", &socket, "version"]),
    );
    // Drop order: dockerd before its containerd.
    ((dockerd, containerd), socket)
}
