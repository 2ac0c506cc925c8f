//! `berth enable` and `berth disable` against a real cluster, ignored by default:
//!
//! ```text
//! berth image export -o berth.tar && kind load image-archive berth.tar   # or your cluster's way
//! KUBECONFIG=~/.kube/config cargo test --test enable_e2e -- --ignored
//! ```
//!
//! It runs the real command line: `berth enable` in a fresh namespace (the
//! operator goes to berth-system, as for a user), waits for it to say the
//! registry is ready, runs it again (nothing changes, it is ready again), then
//! `berth disable --purge --yes` and checks that the namespace and the volume
//! are gone. `BERTH_E2E_IMAGE` overrides the image (default: `berth:VERSION`,
//! which must be on the nodes). It removes the operator at the end unless
//! another Registry uses it.

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::{Api, Client};
use std::process::Command;
use std::time::Duration;

fn berth(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("berth runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG, load the berth image on its nodes, run with --ignored"]
async fn enable_then_disable_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("KUBECONFIG is not set; skipping the end-to-end test");
        return;
    }
    let image =
        std::env::var("BERTH_E2E_IMAGE").unwrap_or_else(|_| berth::image::DEFAULT_IMAGE.into());
    let namespace = format!(
        "berth-enable-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // A node port few clusters use.
    let node_port = (30000 + std::process::id() % 2000).to_string();
    let enable = [
        "enable",
        "--namespace",
        &namespace,
        "--image",
        &image,
        "--node-port",
        &node_port,
    ];
    let first = berth(&enable);
    assert!(first.contains("berth is ready"), "{first}");
    assert!(
        first.contains(&format!("localhost:{node_port}/app:dev")),
        "{first}"
    );
    let again = berth(&enable);
    assert!(again.contains("berth is ready"), "{again}");

    let client = Client::try_default().await.expect("a cluster");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    assert!(claims.get_opt("registry-data").await.unwrap().is_some());

    let disabled = berth(&["disable", "--namespace", &namespace, "--purge", "--yes"]);
    assert!(disabled.contains("deleted"), "{disabled}");
    let namespaces: Api<Namespace> = Api::all(client);
    for _ in 0..150 {
        if namespaces.get_opt(&namespace).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    panic!("namespace {namespace} is still there 5 minutes after disable --purge");
}
