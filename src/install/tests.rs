//! `berth enable` and `berth disable` against the mock API server of
//! src/operator/fixtures.rs, one named scenario per test: the exact writes, the
//! bodies that matter, idempotence, and refusals that write nothing.

use super::disable::{DisableArgs, Disabled, disable};
use super::enable::{EnableArgs, Enabled, enable};
use super::progress::Lines;
use super::{FIELD_MANAGER, InstallError};
use crate::operator::fixtures::{Cluster, client};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(5);
const REGISTRY: &str = "/apis/berth.dev/v1alpha1/namespaces/container-registry/registries/registry";
const CRD: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/registries.berth.dev";
const CLAIM: &str = "/api/v1/namespaces/container-registry/persistentvolumeclaims/registry-data";
const HOSTING: &str = "/api/v1/namespaces/kube-public/configmaps/local-registry-hosting";

/// The writes of install.yaml, in order.
const INSTALL_WRITES: [&str; 7] = [
    "PATCH /api/v1/namespaces/berth-system",
    "PATCH /apis/apiextensions.k8s.io/v1/customresourcedefinitions/registries.berth.dev",
    "PATCH /api/v1/namespaces/berth-system/serviceaccounts/berth-operator",
    "PATCH /apis/rbac.authorization.k8s.io/v1/clusterroles/berth-operator",
    "PATCH /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/berth-operator",
    "PATCH /api/v1/namespaces/berth-system/services/berth-operator-metrics",
    "PATCH /apis/apps/v1/namespaces/berth-system/deployments/berth-operator",
];

/// A cluster with StorageClasses (name, is it the default), as `berth-cli` sees it.
fn cluster(classes: &[(&str, bool)]) -> Arc<Mutex<Cluster>> {
    let mut state = Cluster::default();
    state.field_manager = FIELD_MANAGER;
    let cluster = Arc::new(Mutex::new(state));
    for (name, default) in classes {
        cluster.lock().unwrap().insert(
            format!("/apis/storage.k8s.io/v1/storageclasses/{name}"),
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                   "metadata": {"name": name, "annotations": {
                       "storageclass.kubernetes.io/is-default-class": default.to_string()}},
                   "provisioner": "test", "allowVolumeExpansion": true}),
        );
    }
    cluster
}

/// Plays the operator's part that enable and disable wait for: every Registry
/// whose generation it has not seen becomes Ready, with its volume; a deleted
/// one loses its finalizer, and so goes.
fn operator(cluster: &Arc<Mutex<Cluster>>) -> tokio::task::JoinHandle<()> {
    let cluster = cluster.clone();
    tokio::spawn(async move {
        loop {
            {
                let mut c = cluster.lock().unwrap();
                let registries: Vec<String> = c
                    .objects
                    .keys()
                    .filter(|k| k.contains("/registries/"))
                    .cloned()
                    .collect();
                for path in registries {
                    if !c.objects[&path]["metadata"]["deletionTimestamp"].is_null() {
                        c.objects.remove(&path);
                        continue;
                    }
                    let object = c.objects.get_mut(&path).unwrap();
                    let generation = object["metadata"]["generation"].clone();
                    if object["status"]["observedGeneration"] != generation {
                        object["status"] = json!({
                            "observedGeneration": generation,
                            "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                                "message": "1/1 ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                            "storageSize": object["spec"]["storage"]["size"],
                        });
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

async fn run_enable(
    cluster: &Arc<Mutex<Cluster>>,
    args: EnableArgs,
) -> (Result<Enabled, InstallError>, String) {
    let mut progress = Lines::new(Vec::new());
    let result = enable(&client(cluster), &args, &mut progress, POLL).await;
    (result, String::from_utf8(progress.into_inner()).unwrap())
}

async fn run_disable(
    cluster: &Arc<Mutex<Cluster>>,
    args: DisableArgs,
    answer: bool,
) -> Result<Disabled, InstallError> {
    let mut progress = Lines::new(Vec::new());
    disable(&client(cluster), &args, &mut progress, POLL, &mut |_| {
        answer
    })
    .await
}

fn args(edit: impl FnOnce(&mut EnableArgs)) -> EnableArgs {
    let mut args = EnableArgs::new();
    edit(&mut args);
    args
}

/// The writes since the last call, and the body of the Registry's last apply.
fn take_writes(cluster: &Mutex<Cluster>) -> Vec<String> {
    let mut c = cluster.lock().unwrap();
    let writes = c.writes();
    c.requests.clear();
    writes
}

fn last_body(cluster: &Mutex<Cluster>, path: &str) -> Value {
    let c = cluster.lock().unwrap();
    c.requests
        .iter()
        .rev()
        .find(|r| r.path == path && r.method != "GET")
        .map(|r| r.body.clone())
        .unwrap_or_else(|| panic!("no write to {path}"))
}

fn has(cluster: &Mutex<Cluster>, path: &str) -> bool {
    cluster.lock().unwrap().objects.contains_key(path)
}

#[tokio::test]
async fn enable_on_an_empty_cluster_installs_and_waits_for_ready() {
    let cluster = cluster(&[("standard", true)]);
    let _operator = operator(&cluster);
    let (result, progress) = run_enable(&cluster, EnableArgs::new()).await;
    let enabled = result.expect("enable");

    let registry_body = last_body(&cluster, REGISTRY);
    let mut expected: Vec<String> = INSTALL_WRITES.iter().map(|w| w.to_string()).collect();
    expected.push("POST /api/v1/namespaces".into());
    expected.push(format!("PATCH {REGISTRY}"));
    assert_eq!(take_writes(&cluster), expected);

    assert_eq!(
        registry_body["spec"],
        json!({"storage": {"size": "20Gi"}, "service": {"nodePort": 32000}}),
        "the fields enable owns, and no other"
    );
    let namespace = &cluster.lock().unwrap().objects["/api/v1/namespaces/container-registry"];
    assert_eq!(
        namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "berth-cli"
    );

    assert!(enabled.ready);
    assert!(progress.contains("✓ operator running"), "{progress}");
    assert!(
        progress.contains("✓ Registry registry is Ready"),
        "{progress}"
    );
    let text = enabled.to_string();
    for line in [
        "Registry container-registry/registry, 20Gi of storage, at localhost:32000",
        "docker push localhost:32000/app:dev",
        "Browse it: http://localhost:32000/",
        "podman push --tls-verify=false app:dev localhost:32000/app:dev",
        "skopeo copy --dest-tls-verify=false docker-daemon:app:dev docker://localhost:32000/app:dev",
        "image: localhost:32000/app:dev",
        "registry.container-registry.svc:5000",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[tokio::test]
async fn enable_applies_the_operator_on_the_image_asked_for() {
    let cluster = cluster(&[("standard", true)]);
    let (result, _) = run_enable(
        &cluster,
        args(|a| {
            a.image = "localhost:32000/berth:dev".into();
            a.no_wait = true;
        }),
    )
    .await;
    assert!(!result.unwrap().ready);
    let deployment = last_body(
        &cluster,
        "/apis/apps/v1/namespaces/berth-system/deployments/berth-operator",
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "localhost:32000/berth:dev");
    assert_eq!(
        container["env"][0],
        json!({"name": "BERTH_IMAGE", "value": "localhost:32000/berth:dev"})
    );
}

#[tokio::test]
async fn enable_again_grows_the_volume_and_keeps_what_no_flag_says() {
    let cluster = cluster(&[("standard", true), ("fast", false)]);
    let _operator = operator(&cluster);
    run_enable(&cluster, args(|a| a.storage_class = Some("fast".into())))
        .await
        .0
        .unwrap();
    take_writes(&cluster);

    let (result, _) = run_enable(&cluster, args(|a| a.size = Some("40Gi".into()))).await;
    let enabled = result.unwrap();
    let body = last_body(&cluster, REGISTRY);
    let mut expected: Vec<String> = INSTALL_WRITES.iter().map(|w| w.to_string()).collect();
    expected.push(format!("PATCH {REGISTRY}"));
    assert_eq!(take_writes(&cluster), expected, "no second namespace");
    assert_eq!(
        body["spec"]["storage"],
        json!({"size": "40Gi", "storageClassName": "fast"})
    );
    assert_eq!(enabled.registry.metadata.generation, Some(2));
    assert_eq!(
        enabled.registry.status.unwrap().storage_size.as_deref(),
        Some("40Gi")
    );

    // containerd's hosts.toml on the nodes, in MicroK8s' folder.
    let microk8s = "/var/snap/microk8s/current/args/certs.d";
    run_enable(
        &cluster,
        args(|a| {
            a.containerd_hosts = Some(true);
            a.certs_dir = Some(microk8s.into());
        }),
    )
    .await
    .0
    .unwrap();
    let body = last_body(&cluster, REGISTRY);
    assert_eq!(
        body["spec"]["nodeConfig"],
        json!({"containerd": true, "certsDir": microk8s})
    );
    assert_eq!(body["spec"]["storage"]["size"], "40Gi");

    // No flag: the same Registry again, not back to 20Gi.
    run_enable(&cluster, EnableArgs::new()).await.0.unwrap();
    let body = last_body(&cluster, REGISTRY);
    assert_eq!(
        body["spec"]["storage"],
        json!({"size": "40Gi", "storageClassName": "fast"})
    );
    assert_eq!(body["spec"]["service"]["nodePort"], 32000);
    assert_eq!(body["spec"]["nodeConfig"]["containerd"], true);

    // Upstreams of the pull-through cache add up, and stay without the flag.
    run_enable(&cluster, args(|a| a.proxy = vec!["docker.io".into()]))
        .await
        .0
        .unwrap();
    let mirror = "mirror.local=http://mirror.ns.svc:5000";
    run_enable(&cluster, args(|a| a.proxy = vec![mirror.into()]))
        .await
        .0
        .unwrap();
    run_enable(&cluster, EnableArgs::new()).await.0.unwrap();
    let body = last_body(&cluster, REGISTRY);
    assert_eq!(
        body["spec"]["proxy"],
        json!({"upstreams": [
            {"name": "docker.io"},
            {"name": "mirror.local", "url": "http://mirror.ns.svc:5000"},
        ]})
    );

    // A shrink or another class is refused, with nothing written.
    take_writes(&cluster);
    let (shrink, _) = run_enable(&cluster, args(|a| a.size = Some("30Gi".into()))).await;
    let message = shrink.unwrap_err().to_string();
    assert!(message.contains("never shrink"), "{message}");
    let (reclass, _) = run_enable(
        &cluster,
        args(|a| a.storage_class = Some("standard".into())),
    )
    .await;
    let message = reclass.unwrap_err().to_string();
    assert!(message.contains("cannot change class"), "{message}");
    assert_eq!(take_writes(&cluster), Vec::<String>::new());
}

#[tokio::test]
async fn refusals_come_before_any_write() {
    // (StorageClasses, flags, the reason given)
    type Case = (Vec<(&'static str, bool)>, EnableArgs, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![("standard", true)],
            args(|a| a.size = Some("10Gi".into())),
            "size 10Gi is below the 20Gi minimum",
        ),
        (
            vec![("standard", true)],
            args(|a| a.size = Some("lots".into())),
            "not a Kubernetes quantity",
        ),
        (
            vec![("standard", true), ("slow", false)],
            args(|a| a.storage_class = Some("fast".into())),
            "no StorageClass fast in the cluster (available: slow, standard (default))",
        ),
        (
            vec![("slow", false)],
            EnableArgs::new(),
            "the cluster has no default StorageClass; name one with --storageclass (available: slow)",
        ),
        (
            vec![],
            EnableArgs::new(),
            "it has none: install a provisioner first",
        ),
        (
            vec![("standard", true)],
            args(|a| a.node_port = Some(8080)),
            "nodePort 8080 is outside 30000-32767",
        ),
        (
            vec![("standard", true)],
            args(|a| a.auth = Some("Alice:x".into())),
            "user \"Alice:x\" must be lowercase",
        ),
    ];
    for (classes, args, reason) in cases {
        let cluster = cluster(&classes);
        let (result, _) = run_enable(&cluster, args).await;
        let message = result.unwrap_err().to_string();
        assert!(message.contains(reason), "{reason:?} not in {message:?}");
        assert!(message.contains("nothing was changed"), "{message}");
        assert_eq!(take_writes(&cluster), Vec::<String>::new(), "{reason}");
    }
}

#[tokio::test]
async fn auth_creates_a_password_once_and_the_registry_refers_to_it() {
    let cluster = cluster(&[("standard", true)]);
    let _operator = operator(&cluster);
    let secret = "/api/v1/namespaces/container-registry/secrets/registry-alice-password";
    let (result, _) = run_enable(&cluster, args(|a| a.auth = Some("alice".into()))).await;
    let enabled = result.unwrap();
    let password = enabled
        .login
        .as_ref()
        .unwrap()
        .new_password
        .clone()
        .unwrap();
    assert_eq!(password.len(), 36);
    let created = last_body(&cluster, "/api/v1/namespaces/container-registry/secrets");
    assert_eq!(created["stringData"]["password"], password.as_str());
    assert_eq!(
        created["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "berth-cli"
    );
    assert!(has(&cluster, secret));
    assert_eq!(
        last_body(&cluster, REGISTRY)["spec"]["auth"],
        json!({"users": [{"name": "alice",
            "passwordSecretRef": {"name": "registry-alice-password", "key": "password"}}]})
    );
    let text = enabled.to_string();
    assert!(text.contains(&password), "{text}");
    assert!(
        text.contains("docker login localhost:32000 -u alice"),
        "{text}"
    );

    // Again: the Secret is kept, the password not shown, the user still there.
    take_writes(&cluster);
    let (result, _) = run_enable(&cluster, args(|a| a.size = Some("30Gi".into()))).await;
    let enabled = result.unwrap();
    assert!(enabled.login.is_none());
    assert_eq!(
        last_body(&cluster, REGISTRY)["spec"]["auth"]["users"][0]["name"],
        "alice"
    );
    assert!(!take_writes(&cluster).iter().any(|w| w.starts_with("POST")));
    let (result, _) = run_enable(&cluster, args(|a| a.auth = Some("alice".into()))).await;
    let login = result.unwrap().login.unwrap();
    assert_eq!(login.new_password, None);
}

#[tokio::test]
async fn a_registry_that_never_gets_ready_times_out_and_says_why() {
    let cluster = cluster(&[("standard", true)]);
    let (result, _) = run_enable(&cluster, args(|a| a.timeout = Duration::from_millis(200))).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("timed out waiting for Registry registry to be Ready"),
        "{message}"
    );
    assert!(
        message.contains("the operator has not acted on it yet"),
        "{message}"
    );
}

/// An enabled cluster whose operator made the claim and published the
/// kube-public ConfigMap, with its finalizer on the Registry; and that operator.
async fn enabled_cluster() -> (Arc<Mutex<Cluster>>, tokio::task::JoinHandle<()>) {
    let cluster = cluster(&[("standard", true)]);
    let operator = operator(&cluster);
    run_enable(&cluster, EnableArgs::new()).await.0.unwrap();
    let mut c = cluster.lock().unwrap();
    c.insert(
        CLAIM.into(),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "registry-data", "namespace": "container-registry"}}),
    );
    c.insert(
        HOSTING.into(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "local-registry-hosting", "namespace": "kube-public",
                            "annotations": {"berth.dev/registry": "container-registry/registry"}}}),
    );
    let registry = c.objects.get_mut(REGISTRY).unwrap();
    registry["metadata"]["finalizers"] = json!([crate::operator::hosting::FINALIZER]);
    registry["metadata"]["uid"] = json!("uid-registry");
    drop(c);
    take_writes(&cluster);
    (cluster, operator)
}

const OPERATOR_DELETES: [&str; 6] = [
    "DELETE /apis/apps/v1/namespaces/berth-system/deployments/berth-operator",
    "DELETE /api/v1/namespaces/berth-system/services/berth-operator-metrics",
    "DELETE /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/berth-operator",
    "DELETE /apis/rbac.authorization.k8s.io/v1/clusterroles/berth-operator",
    "DELETE /api/v1/namespaces/berth-system/serviceaccounts/berth-operator",
    "DELETE /api/v1/namespaces/berth-system",
];

#[tokio::test]
async fn disable_removes_the_registry_and_operator_and_keeps_the_volume_and_crd() {
    let (cluster, operator) = enabled_cluster().await;
    // The operator is not running: disable does its clean-up itself.
    operator.abort();
    cluster
        .lock()
        .unwrap()
        .objects
        .remove("/apis/apps/v1/namespaces/berth-system/deployments/berth-operator");
    let report = run_disable(&cluster, DisableArgs::new(), false)
        .await
        .unwrap();

    let writes = take_writes(&cluster);
    assert_eq!(writes[0], format!("DELETE {REGISTRY}"));
    assert!(writes.contains(&format!("DELETE {HOSTING}")), "{writes:#?}");
    assert!(
        writes.contains(&format!("PATCH {REGISTRY}")),
        "the finalizer removed"
    );
    let ops: Vec<&String> = writes
        .iter()
        .filter(|w| !w.contains("registr") && !w.contains("kube-public"))
        .collect();
    assert_eq!(ops, OPERATOR_DELETES.iter().collect::<Vec<_>>());
    assert!(!has(&cluster, REGISTRY));
    assert!(has(&cluster, CLAIM), "the images' volume is kept");
    assert!(has(&cluster, CRD), "the CRD is kept");
    assert!(has(&cluster, "/api/v1/namespaces/container-registry"));

    let text = report.to_string();
    assert!(
        text.contains("kubectl -n container-registry delete pvc registry-data"),
        "{text}"
    );
    assert!(
        text.contains("The CRD registries.berth.dev is kept"),
        "{text}"
    );
    assert!(text.contains("The operator is removed"), "{text}");

    // Again: nothing left to delete, and it says so.
    let again = run_disable(&cluster, DisableArgs::new(), false)
        .await
        .unwrap();
    assert!(
        again
            .to_string()
            .contains("No Registry container-registry/registry")
    );
}

#[tokio::test]
async fn purge_asks_first_then_deletes_the_volume_namespace_and_crd() {
    let (cluster, _operator) = enabled_cluster().await;
    let purge = DisableArgs {
        purge: true,
        ..DisableArgs::new()
    };
    let refused = run_disable(&cluster, purge.clone(), false).await;
    assert!(matches!(refused, Err(InstallError::NotConfirmed)));
    assert_eq!(
        take_writes(&cluster),
        Vec::<String>::new(),
        "nothing deleted"
    );

    let report = run_disable(&cluster, purge, true).await.unwrap();
    let writes = take_writes(&cluster);
    for gone in [
        CLAIM,
        "/api/v1/namespaces/container-registry",
        CRD,
        REGISTRY,
    ] {
        assert!(
            writes.contains(&format!("DELETE {gone}")),
            "{gone}: {writes:#?}"
        );
        assert!(!has(&cluster, gone), "{gone}");
    }
    let text = report.to_string();
    assert!(
        text.contains("Namespace container-registry deleted"),
        "{text}"
    );
    assert!(text.contains("CRD registries.berth.dev deleted"), "{text}");
}

#[tokio::test]
async fn purge_of_a_registry_on_a_bucket_says_the_images_stay_there() {
    let (cluster, _operator) = enabled_cluster().await;
    {
        let mut c = cluster.lock().unwrap();
        c.objects.get_mut(REGISTRY).unwrap()["spec"]["storage"]["s3"] =
            json!({"bucket": "images", "pathStyle": true});
        c.objects.remove(CLAIM);
    }
    let purge = DisableArgs {
        purge: true,
        yes: true,
        ..DisableArgs::new()
    };
    let report = run_disable(&cluster, purge, false).await.unwrap();
    let writes = take_writes(&cluster);
    assert!(!writes.contains(&format!("DELETE {CLAIM}")), "{writes:#?}");
    let text = report.to_string();
    assert!(
        text.contains("The images in s3://images are kept"),
        "{text}"
    );
    assert!(!text.contains("PersistentVolumeClaim"), "{text}");
}

#[tokio::test]
async fn purge_leaves_a_namespace_enable_did_not_make() {
    let cluster = cluster(&[("standard", true)]);
    cluster.lock().unwrap().insert(
        "/api/v1/namespaces/apps".into(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
    );
    let _operator = operator(&cluster);
    run_enable(
        &cluster,
        args(|a| {
            a.namespace = "apps".into();
            a.auth = Some("alice".into());
        }),
    )
    .await
    .0
    .unwrap();
    let purge = DisableArgs {
        namespace: "apps".into(),
        purge: true,
        yes: true,
        ..DisableArgs::new()
    };
    // --yes: the prompt must not be asked (it would say no).
    run_disable(&cluster, purge, false).await.unwrap();
    assert!(has(&cluster, "/api/v1/namespaces/apps"));
    assert!(!has(
        &cluster,
        "/api/v1/namespaces/apps/secrets/registry-alice-password"
    ));
}

#[tokio::test]
async fn the_operator_and_crd_stay_while_another_registry_needs_them() {
    let (cluster, _operator) = enabled_cluster().await;
    cluster.lock().unwrap().insert(
        "/apis/berth.dev/v1alpha1/namespaces/team/registries/cache".into(),
        json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Registry",
               "metadata": {"name": "cache", "namespace": "team"}, "spec": {}}),
    );
    let purge = DisableArgs {
        purge: true,
        yes: true,
        ..DisableArgs::new()
    };
    let report = run_disable(&cluster, purge, true).await.unwrap();
    let writes = take_writes(&cluster);
    assert!(
        !writes
            .iter()
            .any(|w| w.contains("berth-system") || w.contains("clusterrole")),
        "{writes:#?}"
    );
    assert!(has(&cluster, CRD));
    let text = report.to_string();
    assert!(
        text.contains("The operator stays: Registries team/cache still use it"),
        "{text}"
    );
    assert!(
        text.contains("The CRD registries.berth.dev stays"),
        "{text}"
    );
}

/// A cluster where berth was never installed, as a real API server shows it: the
/// Registry kind is unknown, and its paths answer a plain-text 404.
fn cluster_without_crd() -> Arc<Mutex<Cluster>> {
    let cluster = cluster(&[("standard", true)]);
    cluster.lock().unwrap().registries_need_crd = true;
    cluster
}

#[tokio::test]
async fn enable_on_a_cluster_without_the_crd_takes_the_plain_404_for_no_registry() {
    let cluster = cluster_without_crd();
    // The mock answers as kube-apiserver does, and kube 5 makes of it a Status
    // its own get_opt does not take for "not found".
    let registries: kube::Api<crate::operator::Registry> =
        kube::Api::namespaced(client(&cluster), "container-registry");
    match registries.get_opt("registry").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 404);
            assert_eq!(status.message, "404 page not found");
            assert_eq!(status.reason, "Failed to parse error data");
        }
        other => panic!("not what kube makes of a plain 404: {other:?}"),
    }
    take_writes(&cluster);

    let _operator = operator(&cluster);
    let (result, progress) = run_enable(&cluster, EnableArgs::new()).await;
    let enabled = result.expect("enable on a fresh cluster");
    let mut expected: Vec<String> = INSTALL_WRITES.iter().map(|w| w.to_string()).collect();
    expected.push("POST /api/v1/namespaces".into());
    expected.push(format!("PATCH {REGISTRY}"));
    assert_eq!(take_writes(&cluster), expected);
    assert!(enabled.ready, "{progress}");
    assert!(has(&cluster, CRD));

    // disable on such a cluster: nothing to delete there, and no error.
    let fresh = cluster_without_crd();
    let report = run_disable(&fresh, DisableArgs::new(), false)
        .await
        .expect("disable on a cluster without berth");
    assert!(
        report
            .to_string()
            .contains("No Registry container-registry/registry"),
        "{report}"
    );
}

#[tokio::test]
async fn enable_waits_for_a_namespace_still_being_deleted() {
    let cluster = cluster(&[("standard", true)]);
    {
        let mut c = cluster.lock().unwrap();
        c.insert(
            "/api/v1/namespaces/berth-system".into(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "berth-system"}}),
        );
        c.start_deleting_namespace("berth-system", 3);
    }
    let _operator = operator(&cluster);
    let (result, progress) = run_enable(&cluster, EnableArgs::new()).await;
    result.expect("enable after the namespace is gone");
    assert!(
        progress.contains(
            "… namespace berth-system is being deleted; waiting for it to be gone before installing in it\n"
        ),
        "{progress}"
    );
    assert!(
        progress.contains("✓ namespace berth-system deleted; installing"),
        "{progress}"
    );
    let c = cluster.lock().unwrap();
    let looks = c
        .log
        .iter()
        .take_while(|l| !l.starts_with("PATCH"))
        .filter(|l| *l == "GET /api/v1/namespaces/berth-system")
        .count();
    assert_eq!(
        looks, 3,
        "two Terminating answers, then a 404, before any write"
    );
    let namespace = &c.objects["/api/v1/namespaces/berth-system"];
    assert!(namespace["metadata"]["deletionTimestamp"].is_null());
    assert!(has_in(
        &c,
        "/api/v1/namespaces/berth-system/serviceaccounts/berth-operator"
    ));
}

fn has_in(c: &Cluster, path: &str) -> bool {
    c.objects.contains_key(path)
}

#[tokio::test]
async fn enable_refused_by_a_namespace_being_terminated_waits_and_applies_again() {
    let cluster = cluster(&[("standard", true)]);
    // A disable still running: the operator's namespace starts going away just
    // as enable applies it, after enable looked.
    let mut fired = false;
    cluster.lock().unwrap().before_request = Some(Box::new(move |c, request| {
        if !fired && request == "PATCH /api/v1/namespaces/berth-system" {
            fired = true;
            c.insert(
                "/api/v1/namespaces/berth-system".into(),
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "berth-system"}}),
            );
            c.start_deleting_namespace("berth-system", 2);
        }
    }));
    let _operator = operator(&cluster);
    let (result, progress) = run_enable(&cluster, EnableArgs::new()).await;
    result.expect("enable once the namespace is gone");
    assert!(
        progress.contains(
            "… namespace berth-system is being deleted; waiting for it to be gone, then applying again"
        ),
        "{progress}"
    );
    let account = "PATCH /api/v1/namespaces/berth-system/serviceaccounts/berth-operator";
    let writes = take_writes(&cluster);
    assert_eq!(
        writes.iter().filter(|w| *w == account).count(),
        2,
        "refused with 403, then applied: {writes:#?}"
    );
    assert_eq!(
        writes
            .iter()
            .filter(|w| *w == "PATCH /api/v1/namespaces/berth-system")
            .count(),
        2,
        "the namespace applied again first"
    );
    assert!(has(
        &cluster,
        "/apis/apps/v1/namespaces/berth-system/deployments/berth-operator"
    ));
}

async fn run_disable_showing(
    cluster: &Arc<Mutex<Cluster>>,
    args: DisableArgs,
) -> (Result<Disabled, InstallError>, String) {
    let mut progress = Lines::new(Vec::new());
    let result = disable(&client(cluster), &args, &mut progress, POLL, &mut |_| true).await;
    (result, String::from_utf8(progress.into_inner()).unwrap())
}

#[tokio::test]
async fn disable_returns_once_the_operator_namespace_is_gone() {
    let (cluster, _operator) = enabled_cluster().await;
    cluster.lock().unwrap().namespace_deletion_polls = 3;
    let (result, progress) = run_disable_showing(&cluster, DisableArgs::new()).await;
    result.expect("disable");
    assert!(
        progress.contains("… namespace berth-system is being deleted; waiting for it to be gone"),
        "{progress}"
    );
    assert!(
        progress.contains("✓ namespace berth-system deleted"),
        "{progress}"
    );
    assert!(
        !has(&cluster, "/api/v1/namespaces/berth-system"),
        "disable returned before the namespace was gone"
    );

    // One that never goes: a timeout that says what to look at.
    let (cluster, _operator) = enabled_cluster().await;
    cluster.lock().unwrap().namespace_deletion_polls = u32::MAX;
    let short = DisableArgs {
        timeout: Duration::from_millis(100),
        ..DisableArgs::new()
    };
    let (result, _) = run_disable_showing(&cluster, short).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.starts_with("timed out waiting for namespace berth-system to be deleted"),
        "{message}"
    );
    assert!(
        message.contains("kubectl get namespace berth-system -o yaml"),
        "{message}"
    );
}

#[tokio::test]
async fn refusals_of_the_api_server_are_one_line_that_says_what_to_do() {
    // RBAC: the current context may not write cluster roles.
    let cluster = cluster(&[("standard", true)]);
    cluster.lock().unwrap().refuse = Some((
        "/apis/rbac.authorization.k8s.io/".into(),
        http::StatusCode::FORBIDDEN,
    ));
    let message = run_enable(&cluster, EnableArgs::new())
        .await
        .0
        .unwrap_err()
        .to_string();
    for part in [
        "cannot apply ClusterRole berth-operator: refused by the cluster's RBAC",
        "User \"dev\" cannot patch resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\"",
        "needs cluster-admin in the current kube context",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    assert!(
        !message.contains("Status {") && !message.contains('\n'),
        "{message}"
    );

    // An object the server will not take.
    let cluster = cluster_invalid();
    let message = run_enable(&cluster, EnableArgs::new())
        .await
        .0
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "cannot apply Deployment berth-operator: the API server refused the object as invalid"
        ),
        "{message}"
    );
    assert!(
        !message.contains("Status {") && !message.contains('\n'),
        "{message}"
    );

    // disable without the rights on the operator's Deployment, which it reads
    // while the Registry keeps its finalizer. The fake operator is stopped:
    // it would drop the deleted Registry, and disable would not need to read.
    let (cluster, operator) = enabled_cluster().await;
    operator.abort();
    cluster.lock().unwrap().refuse = Some((
        "/apis/apps/v1/namespaces/berth-system/deployments".into(),
        http::StatusCode::FORBIDDEN,
    ));
    let message = run_disable(&cluster, DisableArgs::new(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("cannot read the operator's Deployment: refused by the cluster's RBAC")
            && message.contains(
                "User \"dev\" cannot get resource \"deployments\" in API group \"apps\" \
                 in the namespace \"berth-system\""
            ),
        "{message}"
    );
    assert!(message.contains("needs cluster-admin"), "{message}");
}

fn cluster_invalid() -> Arc<Mutex<Cluster>> {
    let cluster = cluster(&[("standard", true)]);
    cluster.lock().unwrap().refuse = Some((
        "/apis/apps/v1/".into(),
        http::StatusCode::UNPROCESSABLE_ENTITY,
    ));
    cluster
}
