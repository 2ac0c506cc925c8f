//! `berth image export` and `berth image push` with the real tools: skopeo
//! inspects the archive, a private dockerd loads and runs it (no network: `--network
//! none`, or the host's loopback; `berth serve`, and `berth node-config` as the
//! DaemonSet runs it), podman loads it, containerd imports it under the name a
//! kubelet looks for, and a push to a berth on loopback comes back intact.
//!
//! The image must hold a static berth. The test build of berth is dynamically
//! linked, so these tests pack the static build named by `BERTH_STATIC_BINARY`
//! (`.ci/run` makes one: `RUSTFLAGS='-C target-feature=+crt-static' cargo build
//! --bin berth --target x86_64-unknown-linux-gnu`) through the hidden `--binary`
//! flag; without it they say so and skip (fail in CI). Everything else is the
//! real command line of the test build.

mod common;

use common::Server;
use common::daemons::{containerd, dockerd, need, run};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TAG: &str = concat!("berth:", env!("CARGO_PKG_VERSION"));

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("berth runs")
}

/// The static berth to pack: the test build if it is static, else
/// `BERTH_STATIC_BINARY`.
fn static_binary(test: &str) -> Option<PathBuf> {
    let own = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let bytes = std::fs::read(&own).unwrap();
    if berth::image::elf::inspect(&bytes)
        .unwrap()
        .interpreter
        .is_none()
    {
        return Some(own);
    }
    match std::env::var_os("BERTH_STATIC_BINARY") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "BERTH_STATIC_BINARY={} is not a file",
                path.display()
            );
            Some(path)
        }
        None if std::env::var_os("CI").is_some() => {
            panic!("{test}: BERTH_STATIC_BINARY is not set, but .ci/run builds it")
        }
        None => {
            eprintln!(
                "SKIPPED {test}: the test build of berth is dynamic; set BERTH_STATIC_BINARY to a static build \
                 (RUSTFLAGS='-C target-feature=+crt-static' cargo build --bin berth --target x86_64-unknown-linux-gnu)"
            );
            None
        }
    }
}

/// Exports the image of `binary` to `dir/berth.tar`; returns its path.
fn export(dir: &Path, binary: &Path) -> PathBuf {
    let archive = dir.join("berth.tar");
    let out = berth(&[
        "image",
        "export",
        "-o",
        archive.to_str().unwrap(),
        "--binary",
        binary.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("docker load -i"), "{report}");
    archive
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_dynamic_binary_is_refused_with_the_static_build_flags() {
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_berth")).unwrap();
    if berth::image::elf::inspect(&bytes)
        .unwrap()
        .interpreter
        .is_none()
    {
        eprintln!("SKIPPED: this berth is static; there is nothing to refuse");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("berth.tar");
    let out = berth(&["image", "export", "-o", archive.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dynamically linked"), "{stderr}");
    assert!(stderr.contains("-C target-feature=+crt-static"), "{stderr}");
    assert!(!archive.exists(), "no archive after a refusal");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[test]
fn the_archive_loads_into_docker_podman_and_containerd_and_runs() {
    let test = "image export";
    if !need(
        test,
        &[
            "skopeo",
            "dockerd",
            "docker",
            "containerd",
            "ctr",
            "podman",
            "curl",
        ],
    ) {
        return;
    }
    let Some(binary) = static_binary(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let archive = export(d, &binary);
    let oci = format!("oci-archive:{}", archive.display());

    // skopeo reads it as an OCI archive; its config runs berth as a non-root user.
    let inspected = json(&run("skopeo", &["inspect", &oci]));
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    let config = json(&run("skopeo", &["inspect", "--config", &oci]));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/berth"])
    );

    // The same bytes again: the archive is reproducible.
    std::fs::create_dir(d.join("again")).unwrap();
    let again = export(&d.join("again"), &binary);
    assert!(
        std::fs::read(&archive).unwrap() == std::fs::read(&again).unwrap(),
        "two exports of one binary differ"
    );

    // docker load, then run it without a network and on the host's loopback.
    let (_daemons, socket) = dockerd(&d.join("docker"));
    let docker = |args: &[&str]| run("docker", &[&["-H", socket.as_str()], args].concat());
    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains(TAG), "{loaded}");
    let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", TAG]);
    assert_eq!(user.trim(), "65532:65532");
    let version = docker(&["run", "--rm", "--network", "none", TAG, "--version"]);
    assert_eq!(
        version.trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    );

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let container = docker(&[
        "run",
        "-d",
        "--network",
        "host",
        TAG,
        "serve",
        "--listen",
        &listen,
        "--root",
        "/tmp/data",
    ]);
    let container = container.trim();
    let answered = wait_for_v2(&format!("http://{listen}/v2/"));
    let logs = docker(&["logs", container]);
    docker(&["rm", "-f", container]);
    assert!(
        answered,
        "berth serve in the container did not answer on /v2/:\n{logs}"
    );

    // What the node-config DaemonSet runs, with its pod's restrictions: root, no
    // capability, no privilege escalation, a read-only root file system, and the
    // node's certs.d mounted.
    let certs = d.join("certs.d");
    std::fs::create_dir(&certs).unwrap();
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0:0",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "-v",
        &format!("{}:/host/certs.d", certs.display()),
        TAG,
        "node-config",
        "--once",
        "--certs-dir",
        "/host/certs.d",
        "--host",
        "localhost:32000",
    ]);
    let hosts_toml = std::fs::read_to_string(certs.join("localhost:32000/hosts.toml")).unwrap();
    assert_eq!(hosts_toml, berth::nodeconfig::hosts_toml("localhost:32000"));

    // podman load.
    let podman_store = [
        "--root",
        &d.join("podman-root").display().to_string(),
        "--runroot",
        &d.join("podman-run").display().to_string(),
        "--storage-driver",
        "vfs",
    ]
    .map(str::to_owned);
    let mut podman_load: Vec<String> = podman_store.to_vec();
    podman_load.extend(["load".into(), "-i".into(), archive.display().to_string()]);
    let loaded = run(
        "podman",
        &podman_load.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(loaded.contains(TAG), "{loaded}");

    // ctr images import names it as a kubelet asks for it.
    let (_containerd, ctr_socket) = containerd(&d.join("ctr"));
    run(
        "ctr",
        &[
            "-a",
            &ctr_socket,
            "images",
            "import",
            archive.to_str().unwrap(),
        ],
    );
    let images = run("ctr", &["-a", &ctr_socket, "images", "ls", "-q"]);
    assert!(
        images
            .lines()
            .any(|l| l == format!("docker.io/library/{TAG}")),
        "{images}"
    );
}

#[test]
fn push_sends_the_image_to_a_berth_and_skopeo_pulls_it_back() {
    let test = "image push";
    if !need(test, &["skopeo"]) {
        return;
    }
    let Some(binary) = static_binary(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let target = format!("{}/tools/berth:test", server.addr());
    let push = || {
        let out = berth(&[
            "image",
            "push",
            &target,
            "--binary",
            binary.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = push();
    assert!(first.contains("2 blobs sent, 0 already there"), "{first}");
    let second = push();
    assert!(second.contains("0 blobs sent, 2 already there"), "{second}");

    let archive = export(dir.path(), &binary);
    let exported = json(&run(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", archive.display())],
    ));
    let pushed = json(&run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ],
    ));
    assert_eq!(pushed["Digest"], exported["Digest"], "the same image");
    assert!(
        first.contains(exported["Digest"].as_str().unwrap()),
        "{first}"
    );
    let back = dir.path().join("back");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{target}"),
            &format!("oci:{}:test", back.display()),
        ],
    );
    assert!(back.join("index.json").is_file());

    // A registry with logins: refused without --user, accepted with it.
    let hash = bcrypt::hash_with_result("s3cret", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let locked = Server::start_with(
        &dir.path().join("locked"),
        &["--htpasswd", dir.path().join("htpasswd").to_str().unwrap()],
    );
    let target = format!("{}/berth:test", locked.addr());
    let bin = binary.to_str().unwrap();
    let out = berth(&["image", "push", &target, "--binary", bin]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
    let out = berth(&[
        "image",
        "push",
        &target,
        "--binary",
        bin,
        "--user",
        "alice:s3cret",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `url` answers 200 within 30 s.
fn wait_for_v2(url: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let code = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if code == "200" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}
