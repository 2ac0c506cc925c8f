//! The operator's offline commands through the real binary: `berth crd` prints
//! exactly crds/registry.yaml, and `berth render -f` prints every child of a
//! Registry file, or refuses a spec the operator would refuse, with the reason.

use std::io::Write;
use std::process::{Command, Output};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("BERTH_IMAGE")
        .output()
        .expect("berth runs")
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn crd_prints_the_committed_crd() {
    let out = berth(&["crd"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/registry.yaml"))
            .unwrap();
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "crds/registry.yaml differs from `berth crd`; regenerate it with `cargo run -- crd > crds/registry.yaml`"
    );
}

const REGISTRY: &str = "apiVersion: berth.dev/v1alpha1
kind: Registry
metadata:
  name: cache
  namespace: dev
spec:
  ingress:
    enabled: true
    host: registry.example.com
    tls: {clusterIssuer: letsencrypt}
";

#[test]
fn render_prints_every_child() {
    let registry = file(REGISTRY);
    let out = berth(&[
        "render",
        "-f",
        registry.path().to_str().unwrap(),
        "--image",
        "ghcr.io/example/berth:1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let names: Vec<String> = documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "Secret/cache-htpasswd",
            "Secret/cache-admin",
            "PersistentVolumeClaim/cache-data",
            "Service/cache",
            "Service/cache-nodeport",
            "Deployment/cache",
            "Ingress/cache",
            "CronJob/cache-gc",
            "ConfigMap/local-registry-hosting",
        ]
    );
    let deployment = &documents[5];
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/example/berth:1"
    );
}

#[test]
fn render_takes_password_secrets() {
    let registry = file(
        "apiVersion: berth.dev/v1alpha1
kind: Registry
metadata: {name: cache}
spec:
  image: berth:2
  auth:
    users:
      - {name: alice, passwordSecretRef: {name: alice-pw, key: password}}
",
    );
    let secret = file(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: alice-pw}\nstringData: {password: s3cret}\n",
    );
    let out = berth(&[
        "render",
        "-f",
        registry.path().to_str().unwrap(),
        "--secret",
        secret.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(!yaml.contains("placeholder lines"), "{yaml}");
}

#[test]
fn render_refuses_what_the_operator_would_refuse() {
    let bad = file(&REGISTRY.replace("  ingress:", "  storage: {size: lots}\n  ingress:"));
    let out = berth(&[
        "render",
        "-f",
        bad.path().to_str().unwrap(),
        "--image",
        "b:1",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("InvalidStorageSize"), "{stderr}");
}

#[test]
fn a_user_error_prints_its_message_without_a_backtrace() {
    let bad = file(&REGISTRY.replace("  ingress:", "  storage: {size: lots}\n  ingress:"));
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "render",
            "-f",
            bad.path().to_str().unwrap(),
            "--image",
            "b:1",
        ])
        // Set on many developers' machines: it must not turn a refusal into a dump.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("berth runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("Error: "), "{stderr}");
    assert!(lines[0].contains("InvalidStorageSize"), "{stderr}");
}

#[test]
fn render_defaults_to_the_image_berth_exports() {
    // As the operator without BERTH_IMAGE: the image `berth image export` tags.
    let registry = file(REGISTRY);
    let out = berth(&["render", "-f", registry.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let image = concat!("image: berth:", env!("CARGO_PKG_VERSION"));
    assert!(yaml.contains(image), "{yaml}");
}
