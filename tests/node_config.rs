//! `berth node-config` writes the hosts.toml that containerd reads: a private
//! containerd's `ctr images pull --hosts-dir DIR` (no `--plain-http`) pulls from a
//! berth on loopback through the file the real command wrote.
//!
//! containerd speaks plain HTTP to a `localhost` registry even without a
//! hosts.toml, so the pull alone would prove little; the control is the same
//! folder with the server switched to https, which must fail: containerd reads
//! the file, and ours is what makes the pull work.

mod common;

use common::Server;
use common::daemons::{containerd, need, run};
use std::process::Command;

#[test]
fn ctr_pulls_through_the_hosts_toml_berth_writes() {
    if !need("node-config", &["containerd", "ctr", "skopeo", "python3"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(&d.join("data"));
    let port = server.addr().rsplit(':').next().unwrap().to_owned();
    let host = format!("localhost:{port}");
    // A real image (a config with its rootfs), which containerd unpacks.
    let layout = d.join("layout");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tools/make_oci_layout.py"
    );
    run("python3", &[script, layout.to_str().unwrap(), "v1"]);
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/nodes/app:v1", server.addr()),
        ],
    );

    let certs = d.join("certs.d");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["node-config", "--once", "--host", &host, "--certs-dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hosts_toml = certs.join(&host).join("hosts.toml");
    let written = std::fs::read_to_string(&hosts_toml).unwrap();
    assert!(
        written.contains(&format!("server = \"http://{host}\"")),
        "{written}"
    );

    let (_containerd, socket) = containerd(&d.join("containerd"));
    let image = format!("{host}/nodes/app:v1");
    let pull = |certs: &std::path::Path| {
        Command::new("ctr")
            .args(["-a", &socket, "images", "pull", "--hosts-dir"])
            .arg(certs)
            .arg(&image)
            .output()
            .unwrap()
    };

    // The control: the same folder pointing containerd at https fails.
    let wrong = d.join("wrong");
    std::fs::create_dir_all(wrong.join(&host)).unwrap();
    std::fs::write(
        wrong.join(&host).join("hosts.toml"),
        written.replace("http://", "https://"),
    )
    .unwrap();
    let refused = pull(&wrong);
    assert!(
        !refused.status.success(),
        "a pull over https from a plain-HTTP berth worked: containerd ignored --hosts-dir"
    );

    let pulled = pull(&certs);
    assert!(
        pulled.status.success(),
        "ctr pull through berth's hosts.toml failed:\n{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let listed = run("ctr", &["-a", &socket, "images", "ls", "-q"]);
    assert!(listed.lines().any(|l| l == image), "{listed}");
}
