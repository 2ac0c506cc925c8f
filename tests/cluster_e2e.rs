//! berth's whole life in a real cluster: the one-node Kubernetes of
//! ../shared/kube (etcd, kube-apiserver, controller-manager, scheduler, kubelet,
//! kube-proxy, containerd), where pods really run, NodePorts answer on
//! localhost and the kubelet pulls through containerd.
//!
//! ```text
//! sudo tests/tools/cluster-up.sh /tmp/kube STATIC_BERTH   # the cluster, with the berth image on its node
//! BERTH_E2E_CLUSTER=/tmp/kube cargo test --test cluster_e2e
//! sudo bash ../shared/kube/cluster.sh down /tmp/kube
//! ```
//!
//! `.ci/run` does all three. Without `BERTH_E2E_CLUSTER` the suite is skipped
//! with a message, except in CI, where it fails. It needs a fresh cluster (it
//! checks that berth is not installed) and leaves none of berth behind when it
//! passes. One test, in the order of a user's story, each step checking what
//! the user would look at:
//!
//! 1. `berth enable` on a cluster without the CRD: operator and registry pods
//!    Ready, `kubectl get reg`; enable again rolls nothing.
//! 2. The operator in the cluster, under the RBAC install.yaml ships: a Registry
//!    that cannot pull its image says why; `replicas: 2` is refused and runs one
//!    pod; a password change reaches the htpasswd Secret; a deleted child is
//!    put back. Then two registry pods on one S3 bucket (s3s-fs on the
//!    node's address): no claim, a disruption budget, an image pushed
//!    through the NodePort served whole by each pod, after a pod is replaced
//!    and after new credentials roll them; back to a volume, one pod on a
//!    claim.
//! 3. A push to `localhost:32000` through the NodePort; a pod of that image,
//!    pulled by the kubelet through the hosts.toml the node-config DaemonSet
//!    wrote; the web UI at the URL the Registry's status names shows it.
//! 4. `berth enable --auth`: anonymous pushes and pulls refused (and the web
//!    UI asks for a login), the printed password pushes, a pod pulls with an
//!    imagePullSecret.
//! 5. A Job made from the GC CronJob frees the blobs of a deleted tag.
//! 6. Grow the claim, a shrink refused, a deleted registry pod replaced with
//!    the images still there.
//! 7. `berth disable` keeps the images for the next `berth enable`, and the
//!    node-config pod removes the mirror's hosts.toml as it stops;
//!    `berth disable --purge --yes` leaves nothing of berth.
//! 8. `helm install` of charts/berth, then `kubectl apply -f
//!    manifests/install.yaml`, each ending with a Ready Registry.

mod common;

use base64::Engine;
use berth::install::objects::{OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE};
use berth::operator::Registry;
use common::api as oci;
use common::daemons::output_of;
use common::s3::{self, S3};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where `berth enable` puts the Registry, by default.
const NS: &str = "container-registry";
const NAME: &str = "registry";
/// The node port every step pushes and pulls through.
const NODE: &str = "localhost:32000";
/// The upstream the cache mirrors in step 3b.
const MIRROR: &str = "mirror.test";
/// Where the test's own pods run.
const APPS: &str = "berth-e2e-apps";
const TIMEOUT: Duration = Duration::from_secs(240);
const MANAGER: &str = "berth-e2e";

#[tokio::test]
async fn berth_lives_its_whole_life_on_a_real_cluster() {
    let Some(k) = Kube::connect().await else {
        return;
    };
    let started = std::time::Instant::now();
    let step = |name: &str| eprintln!("\n=== {name} (at {:?})", started.elapsed());

    step("1. berth enable on a fresh cluster");
    enable_on_a_fresh_cluster(&k).await;
    k.create_namespace(APPS).await;

    step("2. the operator in the cluster");
    a_registry_that_cannot_pull_says_why(&k).await;
    replicas_refused_password_followed_child_restored(&k).await;

    step("2b. several registry pods on one S3 bucket");
    replicas_share_an_object_store(&k).await;

    step("3. push through the NodePort, pull from a pod");
    let app_v1 = push_and_pull_through_the_node_port(&k).await;
    the_web_ui_shows_it_at_the_url_of_the_status(&k, &app_v1).await;

    step("3b. berth enable --proxy: a pod pulls an upstream's image through the cache");
    pods_pull_an_upstream_through_the_cache(&k, &app_v1).await;

    step("4. berth enable --auth");
    let alice = logins_are_required(&k).await;

    step("5. a GC Job from the CronJob");
    gc_frees_a_deleted_tag(&k, &alice).await;

    step("6. size and a replaced pod");
    the_volume_grows_never_shrinks_and_persists(&k, &alice, &app_v1).await;

    step("7. disable, enable, disable --purge");
    disable_keeps_images_and_purge_leaves_nothing(&k, &app_v1).await;

    step("8. helm install and kubectl apply");
    helm_install_ends_ready(&k).await;
    kubectl_apply_ends_ready(&k).await;
    k.delete_namespace(APPS).await;
    eprintln!("\n=== done in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// The steps

async fn enable_on_a_fresh_cluster(k: &Kube) {
    let crds: Api<CustomResourceDefinition> = Api::all(k.client.clone());
    assert!(
        crds.get_opt(Registry::crd_name()).await.unwrap().is_none(),
        "the cluster is not fresh: the Registry CRD is installed; start a new cluster"
    );
    let certs_dir = k.dir.join("containerd/certs.d");
    assert!(
        !certs_dir.join(NODE).exists(),
        "the cluster is not fresh: the node has a hosts.toml for {NODE}"
    );
    let enable = [
        "enable",
        "--containerd-hosts",
        "--certs-dir",
        certs_dir.to_str().unwrap(),
    ];
    let out = k.berth(&enable);
    assert!(
        out.contains(&format!(
            "berth is ready: Registry {NS}/{NAME}, 20Gi of storage, at {NODE} on every node."
        )),
        "{out}"
    );

    let crd = crds.get(Registry::crd_name()).await.unwrap();
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"),
        "the CRD is not established: {conditions:?}"
    );
    let operator = k.ready_pods(OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT).await;
    let registry = k.ready_pods(NS, NAME).await;
    let registry_ready = k.registry_ready().await;
    assert_eq!(registry_ready.reason, "Available", "{registry_ready:?}");

    // What `kubectl get reg` shows: Ready, the endpoint for pods, the web
    // UI, the size of the volume (the bound claim's capacity).
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(k.client.clone(), NS);
    let claim = claims.get("registry-data").await.unwrap();
    let capacity = claim.status.unwrap().capacity.unwrap()["storage"].0.clone();
    let table = k.kubectl(&["-n", NS, "get", "registries"]);
    let columns: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        columns,
        ["NAME", "READY", "ENDPOINT", "UI", "SIZE", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        [
            NAME,
            "True",
            "registry.container-registry.svc:5000",
            "http://localhost:32000/",
            &capacity
        ],
        "{table}"
    );

    // Again: ready at once, and nothing rolled.
    let generations = k.generations().await;
    let again = k.berth(&enable);
    assert!(again.contains("berth is ready"), "{again}");
    assert_eq!(
        k.generations().await,
        generations,
        "enable again changed a Deployment"
    );
    assert_eq!(
        k.ready_pods(OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT).await,
        operator
    );
    assert_eq!(
        k.ready_pods(NS, NAME).await,
        registry,
        "the registry pod was replaced"
    );
}

/// A Registry whose image no node can pull: Ready=False with the kubelet's
/// reason and the pod's name, instead of a silent RollingOut.
async fn a_registry_that_cannot_pull_says_why(k: &Kube) {
    let ns = "berth-e2e-nopull";
    k.create_namespace(ns).await;
    let registries = k
        .apply_registry(
            ns,
            "nopull",
            json!({"image": "kit.local/berth:does-not-exist", "localRegistryHosting": false,
               "storage": {"size": "1Gi"}, "service": {"nodePort": null}}),
        )
        .await;
    let ready = k
        .wait_for("Ready to say the image cannot be pulled", || async {
            let ready = current_condition(&registries.get("nopull").await.ok()?, "Ready")?;
            (ready.status == "False"
                && ["ErrImagePull", "ImagePullBackOff"].contains(&ready.reason.as_str()))
            .then_some(ready)
        })
        .await;
    eprintln!(
        "Ready: {} {}: {}",
        ready.status, ready.reason, ready.message
    );
    assert!(
        ready.message.starts_with("0/1 pods ready: "),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("of pod nopull-"),
        "{}",
        ready.message
    );
    k.delete_namespace(ns).await;
}

/// `replicas: 2` on a ReadWriteMany volume is refused (one process owns the
/// store) and the Deployment runs one pod; a change of the password Secret a
/// user refers to reaches the htpasswd Secret through the Secret watch; a
/// deleted Deployment is put back.
async fn replicas_refused_password_followed_child_restored(k: &Kube) {
    let ns = "berth-e2e-scale";
    k.create_namespace(ns).await;
    let secrets: Api<Secret> = Api::namespaced(k.client.clone(), ns);
    let password_secret = |password: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "alice-pw", "namespace": ns},
            "stringData": {"password": password},
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &password_secret("first-s3cret"))
        .await
        .unwrap();
    let registries = k
        .apply_registry(
            ns,
            "scale",
            json!({"replicas": 2, "localRegistryHosting": false,
               "storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]},
               "service": {"nodePort": null},
               "auth": {"users": [{"name": "alice",
                   "passwordSecretRef": {"name": "alice-pw", "key": "password"}}]}}),
        )
        .await;
    let degraded = k
        .wait_for("Degraded with ReplicasNotSupported", || async {
            current_condition(&registries.get("scale").await.ok()?, "Degraded")
                .filter(|c| c.status == "True" && c.reason == "ReplicasNotSupported")
        })
        .await;
    assert!(
        degraded.message.contains("spec.replicas is 2")
            && degraded.message.contains("set spec.replicas to 1"),
        "{}",
        degraded.message
    );
    k.wait_for("the Registry Ready with one pod", || async {
        let registry = registries.get("scale").await.ok()?;
        let ready = current_condition(&registry, "Ready")?;
        (ready.status == "True" && registry.status?.ready_replicas == 1).then_some(())
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(k.client.clone(), ns);
    let deployment = deployments.get("scale").await.unwrap();
    assert_eq!(deployment.spec.replicas, Some(1));
    assert_eq!(k.ready_pods(ns, "scale").await.len(), 1);
    let htpasswd = |secrets: Api<Secret>| async move {
        let data = secrets.get("scale-htpasswd").await.ok()?.data?;
        String::from_utf8(data.get("htpasswd")?.0.clone()).ok()
    };
    let first = htpasswd(secrets.clone()).await.unwrap();
    assert!(lets_in(&first, "alice", "first-s3cret"), "{first}");

    secrets
        .replace(
            "alice-pw",
            &PostParams::default(),
            &password_secret("second-s3cret"),
        )
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    // Well within the operator's 300 s resync: only the watch brings it.
    loop {
        let file = htpasswd(secrets.clone()).await.unwrap_or_default();
        if lets_in(&file, "alice", "second-s3cret") {
            assert!(!lets_in(&file, "alice", "first-s3cret"), "{file}");
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(60),
            "the htpasswd Secret did not follow the password within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the htpasswd Secret followed the password in {:?}",
        changed.elapsed()
    );

    let old = deployment.uid();
    deployments
        .delete("scale", &DeleteParams::default())
        .await
        .unwrap();
    k.wait_for("the deleted Deployment to come back", || async {
        let back = deployments.get_opt("scale").await.ok()??;
        (back.uid() != old && back.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    k.delete_namespace(ns).await;
}

/// Two registry pods on one S3 bucket: s3s-fs on the node's address, where an
/// object store outside the cluster would be. Both pods Ready (each /readyz
/// writes to the bucket), no claim, a PodDisruptionBudget the disruption
/// controller counts both pods in; an image pushed through the NodePort
/// (kube-proxy spreads the connections over the pods) is served whole by
/// each pod at its own address, from the bucket; a deleted pod's replacement
/// serves it too, and so do the pods a change of the credentials rolls. Then
/// back to a volume: one pod on a claim.
async fn replicas_share_an_object_store(k: &Kube) {
    let ns = "berth-e2e-bucket";
    let dir = k.dir.join("e2e-s3");
    let _ = std::fs::remove_dir_all(&dir);
    let s3 = S3::start_at(&dir, &k.node_address().await);
    k.create_namespace(ns).await;
    let secrets: Api<Secret> = Api::namespaced(k.client.clone(), ns);
    let login = |extra: serde_json::Value| -> Secret {
        let mut data = json!({
            "AWS_ACCESS_KEY_ID": s3::ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3::SECRET_KEY,
        });
        data.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "metadata": {"name": "s3-login", "namespace": ns}, "stringData": data,
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &login(json!({})))
        .await
        .unwrap();
    let registries = k
        .apply_registry(
            ns,
            "shared",
            json!({"replicas": 2, "localRegistryHosting": false,
               "service": {"nodePort": 32010},
               "storage": {"s3": {"bucket": s3::BUCKET, "endpoint": s3.endpoint(),
                                  "region": "us-east-1", "credentialsSecret": "s3-login"}}}),
        )
        .await;
    let registry = k
        .wait_for("the Registry Ready with two pods", || async {
            let registry = registries.get("shared").await.ok()?;
            let ready = current_condition(&registry, "Ready")?;
            (ready.status == "True" && registry.status.as_ref()?.ready_replicas == 2)
                .then_some(registry)
        })
        .await;
    let storage = current_condition(&registry, "StorageReady").unwrap();
    assert_eq!(
        (storage.status.as_str(), storage.reason.as_str()),
        ("True", "ObjectStore"),
        "{storage:?}"
    );
    let degraded = current_condition(&registry, "Degraded").unwrap();
    assert_eq!(degraded.status, "False", "{degraded:?}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(k.client.clone(), ns);
    assert!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // The cluster's disruption controller sees both pods under the budget.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(k.client.clone(), ns);
    k.wait_for("the budget to allow one disruption of two pods", || async {
        let status = budgets.get("shared").await.ok()?.status?;
        (status.expected_pods == Some(2) && status.disruptions_allowed == Some(1)).then_some(())
    })
    .await;

    let shared = "localhost:32010";
    // kube-proxy writes the NodePort's rules a moment after the Service.
    k.wait_for("the NodePort to answer", || async {
        let r = k
            .http
            .get(format!("http://{shared}/v2/"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    k.skopeo_push_to(shared, "team/app:v1", None)
        .expect("skopeo pushes through the NodePort");
    let pods = k.ready_pods(ns, "shared").await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    let mut digests = BTreeSet::new();
    for pod in &pods {
        digests.insert(k.pull_whole_from_pod(ns, pod, "team/app:v1").await);
    }
    let [digest] = Vec::from_iter(digests).try_into().expect("one digest");
    // In the bucket, not in a pod.
    let hex = digest.strip_prefix("sha256:").unwrap();
    let object = s3
        .bucket_dir(s3::BUCKET)
        .join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    assert!(
        object.is_file(),
        "{} is not in the bucket",
        object.display()
    );

    let victim = pods.iter().next().unwrap().clone();
    Api::<Pod>::namespaced(k.client.clone(), ns)
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let replaced = k
        .wait_for("a replacement pod", || async {
            let now = k.try_ready_pods(ns, "shared").await?;
            (now.len() == 2 && !now.contains(&victim)).then_some(now)
        })
        .await;
    for pod in &replaced {
        assert_eq!(k.pull_whole_from_pod(ns, pod, "team/app:v1").await, digest);
    }

    // The pods read the credentials once, at start: a change rolls them.
    secrets
        .replace(
            "s3-login",
            &PostParams::default(),
            &login(json!({"AWS_REGION": "us-east-1"})),
        )
        .await
        .unwrap();
    let rolled = k
        .wait_for("the pods to roll for the new credentials", || async {
            let now = k.try_ready_pods(ns, "shared").await?;
            (now.len() == 2 && now.is_disjoint(&replaced)).then_some(now)
        })
        .await;
    for pod in &rolled {
        assert_eq!(k.pull_whole_from_pod(ns, pod, "team/app:v1").await, digest);
    }

    // Back to a volume, through the server-side applies of a real API
    // server: one pod on a new claim (Recreate, with the rolling update's
    // fields gone), the budget deleted, two replicas refused again.
    k.apply_registry(
        ns,
        "shared",
        json!({"replicas": 2, "localRegistryHosting": false,
           "service": {"nodePort": 32010}, "storage": {"size": "1Gi"}}),
    )
    .await;
    k.wait_for("the Registry Ready on a volume", || async {
        let registry = registries.get("shared").await.ok()?;
        let storage = current_condition(&registry, "StorageReady")?;
        let degraded = current_condition(&registry, "Degraded")?;
        let ready = current_condition(&registry, "Ready")?;
        (storage.status == "True"
            && storage.reason != "ObjectStore"
            && degraded.reason == "ReplicasNotSupported"
            && ready.status == "True")
            .then_some(())
    })
    .await;
    let deployment = Api::<Deployment>::namespaced(k.client.clone(), ns)
        .get("shared")
        .await
        .unwrap();
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(1));
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert_eq!(strategy.rolling_update, None);
    let pod = spec.template.spec.unwrap();
    let data = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        data.persistent_volume_claim.unwrap().claim_name,
        "shared-data"
    );
    assert!(data.empty_dir.is_none());
    assert_eq!(pod.containers[0].env, None);
    assert!(claims.get_opt("shared-data").await.unwrap().is_some());
    k.wait_for("the budget to be deleted", || async {
        budgets
            .get_opt("shared")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(k.ready_pods(ns, "shared").await.len(), 1);
    k.delete_namespace(ns).await;
    drop(s3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Pushes busybox to `localhost:32000/app:v1` with skopeo and runs it in a
/// pod; returns the manifest's digest.
async fn push_and_pull_through_the_node_port(k: &Kube) -> String {
    let hosts = k.dir.join("containerd/certs.d/localhost:32000/hosts.toml");
    let written = k
        .wait_for("the node-config DaemonSet to write hosts.toml", || async {
            std::fs::read_to_string(&hosts).ok()
        })
        .await;
    assert!(written.contains("http://localhost:32000"), "{written}");

    k.skopeo_push("app:v1", None)
        .expect("skopeo pushes anonymously");
    // skopeo compresses the archive's layers: the digest is the registry's.
    let digest = manifest_digest(&k.http, "app:v1")
        .await
        .expect("app:v1 is served");

    let outcome = k.run_pod("pull-app", &format!("{NODE}/app:v1"), None).await;
    assert_eq!(outcome, Ok("pulled through berth".into()));
    digest
}

/// The Registry's status names its web UI, the NodePort's; there the
/// repository and the image's page are, with the pull commands by the
/// node's name and by the in-cluster one the operator gave the registry.
async fn the_web_ui_shows_it_at_the_url_of_the_status(k: &Kube, app_v1: &str) {
    let registries: Api<Registry> = Api::namespaced(k.client.clone(), NS);
    let status = registries.get(NAME).await.unwrap().status.unwrap();
    let ui = status.endpoints.ui.expect("the status names the web UI");
    assert_eq!(ui, format!("http://{NODE}/"));
    let page = |path: String| async move {
        let r = k.http.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(oci::header(&r, "content-type").starts_with("text/html"));
        r.text().await.unwrap()
    };
    let home = page(ui.clone()).await;
    assert!(home.contains(r#"href="/r/app""#), "{home}");
    let image = page(format!("{ui}r/app/-/v1")).await;
    for command in [
        format!("docker pull {NODE}/app:v1"),
        format!("docker pull {NAME}.{NS}.svc:5000/app:v1"),
        format!("docker pull {NODE}/app@{app_v1}"),
    ] {
        assert!(image.contains(&command), "{command} in {image}");
    }
}

/// `berth enable --proxy`: the registry mirrors an upstream, and the
/// node-config DaemonSet makes it every node's mirror of that upstream, so a
/// pod whose image names the upstream is pulled through the cache. The kit
/// has no internet; the upstream is the cluster's own registry, reached by its
/// Service name from the registry pod (the upstream repository `app` becomes
/// the cached `mirror.test/app`).
async fn pods_pull_an_upstream_through_the_cache(k: &Kube, app_v1: &str) {
    let upstream = format!("http://{NAME}.{NS}.svc.cluster.local:5000");
    let out = k.berth(&["enable", "--proxy", &format!("{MIRROR}={upstream}")]);
    assert!(out.contains("berth is ready"), "{out}");
    let hosts = k
        .dir
        .join(format!("containerd/certs.d/{MIRROR}/hosts.toml"));
    let written = k
        .wait_for(
            "the node-config DaemonSet to write the mirror's hosts.toml",
            || async { std::fs::read_to_string(&hosts).ok() },
        )
        .await;
    assert!(
        written.contains(&format!("server = \"{upstream}\""))
            && written.contains("[host.\"http://localhost:32000\"]"),
        "{written}"
    );
    // Through a wait: the client may hold a connection to the pod that
    // enable's rollout replaced.
    let catalog = || {
        k.wait_for("the catalog", || async {
            let r = k
                .http
                .get(format!("http://{NODE}/v2/_catalog"))
                .send()
                .await
                .ok()?;
            Some(oci::json(r).await["repositories"].clone())
        })
    };
    let mirrored = json!(format!("{MIRROR}/app"));
    let before = catalog().await;
    assert!(!before.as_array().unwrap().contains(&mirrored), "{before}");

    // containerd asks localhost:32000 with ?ns=mirror.test; the cache fetches
    // from upstream and the kubelet runs the image.
    let outcome = k
        .run_pod("through-cache", &format!("{MIRROR}/app:v1"), None)
        .await;
    assert_eq!(outcome, Ok("pulled through berth".into()));
    let after = catalog().await;
    assert!(after.as_array().unwrap().contains(&mirrored), "{after}");
    assert_eq!(
        manifest_digest(&k.http, &format!("{MIRROR}/app:v1"))
            .await
            .as_deref(),
        Some(app_v1),
        "the cache holds upstream's manifest under its digest"
    );
    // Mirrored repositories take no push.
    let refused = k
        .http
        .post(format!("http://{NODE}/v2/{MIRROR}/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
    // The operator asks the registry (its admin API, in the cluster) how the
    // upstream is doing, and the status says: it answered the pod's pull.
    let registries: Api<Registry> = Api::namespaced(k.client.clone(), NS);
    let upstream_status = k
        .wait_for("the Registry status to report the upstream", || async {
            let status = registries.get(NAME).await.ok()?.status?;
            let one = status.upstreams.into_iter().find(|u| u.name == MIRROR)?;
            (one.state == "Ok").then_some(one)
        })
        .await;
    assert_eq!(upstream_status.url, upstream);
    assert!(
        upstream_status.last_contact.is_some(),
        "{upstream_status:?}"
    );
}

/// `berth enable --auth alice`: returns alice's printed password.
async fn logins_are_required(k: &Kube) -> String {
    let out = k.berth(&["enable", "--auth", "alice"]);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("User alice has the password "))
        .unwrap_or_else(|| panic!("no password printed:\n{out}"))
        .trim()
        .to_string();
    // The new pod serves (enable waited for it); the old one is gone.
    k.wait_for("the registry to ask for a login", || async {
        let r = k.http.get(format!("http://{NODE}/v2/")).send().await.ok()?;
        (r.status() == 401).then_some(())
    })
    .await;
    // The web UI asks the browser for the same login.
    let ui = k.http.get(format!("http://{NODE}/")).send().await.unwrap();
    assert_eq!(ui.status(), 401);
    assert!(oci::header(&ui, "www-authenticate").starts_with("Basic "));
    let anonymous = k
        .http
        .post(format!("http://{NODE}/v2/private/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(oci::header(&anonymous, "www-authenticate").starts_with("Basic "));
    assert_eq!(oci::error_code(anonymous).await, "UNAUTHORIZED");
    let refused = k.skopeo_push("private:v1", None).unwrap_err();
    assert!(
        refused.contains("401") || refused.contains("nauthorized"),
        "{refused}"
    );

    k.skopeo_push("private:v1", Some(("alice", &password)))
        .expect("skopeo pushes with the printed password");

    // The kubelet is refused without the pull secret and pulls with it.
    let without = k
        .run_pod("no-secret", &format!("{NODE}/private:v1"), None)
        .await;
    assert!(
        matches!(&without, Err(reason) if reason.contains("ErrImagePull") || reason.contains("ImagePullBackOff")),
        "{without:?}"
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let config =
        json!({"auths": {NODE: {"username": "alice", "password": password, "auth": auth}}});
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred", "namespace": APPS},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(k.client.clone(), APPS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let with = k
        .run_pod(
            "with-secret",
            &format!("{NODE}/private:v1"),
            Some("regcred"),
        )
        .await;
    assert_eq!(with, Ok("pulled through berth".into()));
    password
}

/// Untagged manifests and a short grace, so that what the test just pushed
/// can go; a Job from the CronJob then frees the blobs of a deleted tag.
async fn gc_frees_a_deleted_tag(k: &Kube, password: &str) {
    let registries: Api<Registry> = Api::namespaced(k.client.clone(), NS);
    registries
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gc": {"deleteUntagged": true, "grace": "2s"}}})),
        )
        .await
        .unwrap();
    let cronjobs: Api<CronJob> = Api::namespaced(k.client.clone(), NS);
    k.wait_for("the CronJob to carry --grace 2s", || async {
        let cronjob = cronjobs.get("registry-gc").await.ok()?;
        let args = cronjob.spec.job_template.spec?.template.spec?.containers[0]
            .args
            .clone()?;
        args.windows(2)
            .any(|w| w == ["--grace", "2s"])
            .then_some(())
    })
    .await;

    let http = alice_client(password);
    let base = format!("http://{NODE}");
    oci::push_image(&http, &base, "app", "v2", "gc-seed").await;
    let layer = oci::digest(&"layer of gc-seed".repeat(100).into_bytes());
    let config = oci::digest(br#"{"seed":"gc-seed"}"#);
    let blob = |digest: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let url = format!("{base}/v2/app/blobs/{digest}");
            http.get(url).send().await.unwrap().status()
        }
    };
    assert_eq!(blob(layer.clone()).await, 200);
    let deleted = http
        .delete(format!("{base}/v2/app/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202, "the tag deletes");
    let before = k.metric(&http, "berth_gc_blobs_deleted_total").await;
    // Past the grace period.
    tokio::time::sleep(Duration::from_secs(3)).await;

    k.kubectl(&[
        "-n",
        NS,
        "create",
        "job",
        "gc-now",
        "--from=cronjob/registry-gc",
    ]);
    let jobs: Api<Job> = Api::namespaced(k.client.clone(), NS);
    k.wait_for("the GC Job to complete", || async {
        let status = jobs.get("gc-now").await.ok()?.status?;
        assert!(
            status.failed.unwrap_or(0) == 0,
            "the GC Job failed:\n{}",
            k.kubectl(&["-n", NS, "logs", "job/gc-now"])
        );
        (status.succeeded == Some(1)).then_some(())
    })
    .await;
    let report = k.kubectl(&["-n", NS, "logs", "job/gc-now"]);
    eprintln!("{report}");
    assert!(report.contains("blobs were deleted"), "{report}");
    assert!(report.contains("1 manifests were deleted"), "{report}");

    assert_eq!(blob(layer).await, 404, "the deleted tag's layer is freed");
    assert_eq!(blob(config).await, 404, "the deleted tag's config is freed");
    let after = k.metric(&http, "berth_gc_blobs_deleted_total").await;
    assert!(
        after >= before + 2.0,
        "blobs deleted: {before} then {after}"
    );
    for kept in ["app:v1", "private:v1"] {
        assert!(
            manifest_digest(&http, kept).await.is_some(),
            "{kept} is kept"
        );
    }
}

async fn the_volume_grows_never_shrinks_and_persists(k: &Kube, password: &str, app_v1: &str) {
    let registries: Api<Registry> = Api::namespaced(k.client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(k.client.clone(), NS);
    let size = |size: &'static str| {
        let registries = registries.clone();
        async move {
            registries
                .patch(
                    NAME,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"storage": {"size": size}}})),
                )
                .await
                .unwrap();
        }
    };
    let requested = || async {
        let claim = claims.get("registry-data").await.ok()?;
        Some(claim.spec?.resources?.requests?.get("storage")?.0.clone())
    };

    size("30Gi").await;
    k.wait_for("the claim to ask for 30Gi", || async {
        (requested().await? == "30Gi").then_some(())
    })
    .await;

    size("10Gi").await;
    let refused = k
        .wait_for("the shrink to be refused in the status", || async {
            let registry = registries.get(NAME).await.ok()?;
            let status = registry.status.as_ref()?;
            (status.observed_generation == registry.metadata.generation).then_some(())?;
            status
                .conditions
                .iter()
                .find(|c| c.reason == "ShrinkNotSupported")
                .cloned()
        })
        .await;
    eprintln!("{}: {}", refused.type_, refused.message);
    assert!(
        refused.message.contains("stays at 30Gi"),
        "{}",
        refused.message
    );
    assert_eq!(requested().await.as_deref(), Some("30Gi"));
    size("30Gi").await;

    // A new pod on the same volume serves the same image.
    let pods: Api<Pod> = Api::namespaced(k.client.clone(), NS);
    let old = k.ready_pods(NS, NAME).await;
    for name in &old {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    k.wait_for("a new registry pod", || async {
        let now = k.try_ready_pods(NS, NAME).await?;
        now.is_disjoint(&old).then_some(())
    })
    .await;
    let http = alice_client(password);
    let served = k
        .wait_for("the new pod to serve app:v1", || {
            manifest_digest(&http, "app:v1")
        })
        .await;
    assert_eq!(served, app_v1);
}

async fn disable_keeps_images_and_purge_leaves_nothing(k: &Kube, app_v1: &str) {
    let out = k.berth(&["disable"]);
    eprintln!("{out}");
    let registries: Api<Registry> = Api::namespaced(k.client.clone(), NS);
    assert!(
        registries.get_opt(NAME).await.unwrap().is_none(),
        "the Registry is gone"
    );
    let operators: Api<Deployment> = Api::namespaced(k.client.clone(), OPERATOR_NAMESPACE);
    assert!(
        operators
            .get_opt(OPERATOR_DEPLOYMENT)
            .await
            .unwrap()
            .is_none(),
        "the operator is gone"
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(k.client.clone(), NS);
    assert!(
        claims.get_opt("registry-data").await.unwrap().is_some(),
        "the claim is kept"
    );
    // The node-config pod, stopped, took its mirror's hosts.toml with it: the
    // node pulls mirror.test from upstream again, not from whatever serves the
    // node port next. The registry's own file stays.
    let certs = k.dir.join("containerd/certs.d");
    k.wait_for("the mirror's hosts.toml to go", || async {
        (!certs.join(MIRROR).join("hosts.toml").exists()).then_some(())
    })
    .await;
    assert!(certs.join("localhost:32000/hosts.toml").exists());

    // Enable again, without --auth: the images pushed before are served.
    let out = k.berth(&["enable"]);
    assert!(out.contains("berth is ready"), "{out}");
    let served = k
        .wait_for("app:v1 served after enable", || {
            manifest_digest(&k.http, "app:v1")
        })
        .await;
    assert_eq!(served, app_v1);

    let out = k.berth(&["disable", "--purge", "--yes"]);
    eprintln!("{out}");
    k.nothing_of_berth_is_left().await;
}

async fn helm_install_ends_ready(k: &Kube) {
    let chart = repo().join("charts/berth");
    output_of(
        k.tool("helm")
            .args(["install", "berth", chart.to_str().unwrap()])
            .args(["--namespace", OPERATOR_NAMESPACE, "--create-namespace"])
            .args(["--wait", "--timeout", "3m"]),
    );
    k.example_registry_is_ready().await;
    output_of(k.tool("helm").args([
        "uninstall",
        "berth",
        "--namespace",
        OPERATOR_NAMESPACE,
        "--wait",
    ]));
    // helm keeps the CRDs of a chart's crds/ folder: a user deletes it by hand.
    k.kubectl(&["delete", "crd", Registry::crd_name()]);
    k.delete_namespace(OPERATOR_NAMESPACE).await;
    k.nothing_of_berth_is_left().await;
}

async fn kubectl_apply_ends_ready(k: &Kube) {
    k.kubectl(&["apply", "-f", "manifests/install.yaml"]);
    k.example_registry_is_ready().await;
    k.kubectl(&["delete", "-f", "manifests/install.yaml", "--wait"]);
    k.nothing_of_berth_is_left().await;
}

// ---------------------------------------------------------------------------
// The cluster and what the steps use of it

struct Kube {
    /// The kit's folder: admin.kubeconfig, containerd's socket and certs.d.
    dir: PathBuf,
    kubeconfig: PathBuf,
    client: Client,
    /// Anonymous, to the node port.
    http: reqwest::Client,
}

impl Kube {
    /// The cluster `BERTH_E2E_CLUSTER` names, or None (a skip) outside CI.
    async fn connect() -> Option<Kube> {
        let Some(dir) = std::env::var_os("BERTH_E2E_CLUSTER").map(PathBuf::from) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "BERTH_E2E_CLUSTER is not set, but CI must run this suite: .ci/run starts the \
                 cluster with tests/tools/cluster-up.sh"
            );
            eprintln!(
                "SKIPPED cluster_e2e: no cluster; start one with tests/tools/cluster-up.sh DIR \
                 STATIC_BERTH (root), then set BERTH_E2E_CLUSTER=DIR"
            );
            return None;
        };
        let kubeconfig = dir.join("admin.kubeconfig");
        let file = Kubeconfig::read_from(&kubeconfig)
            .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
        let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .expect("the kit's kubeconfig");
        let client = Client::try_from(config).expect("a client");
        let version = client
            .apiserver_version()
            .await
            .unwrap_or_else(|e| panic!("the API server of {} does not answer: {e}", dir.display()));
        eprintln!("cluster: Kubernetes {}", version.git_version);
        Some(Kube {
            dir,
            kubeconfig,
            client,
            http: oci::client(),
        })
    }

    /// Polls until `check` gives Some; on timeout, shows the cluster's state.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                let state = self.kubectl_output(&[
                    "get",
                    "registries,pods,pvc,jobs,events",
                    "-A",
                    "-o",
                    "wide",
                ]);
                panic!("timed out after {TIMEOUT:?} waiting for {what}; the cluster:\n{state}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// `berth ARGS` against the cluster; its standard output.
    fn berth(&self, args: &[&str]) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(args).env("KUBECONFIG", &self.kubeconfig);
        output_of(&mut command)
    }

    fn tool(&self, name: &str) -> Command {
        let tools = std::env::var_os("BERTH_KUBE_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/kube-tools"));
        let mut command = Command::new(tools.join(name));
        command
            .current_dir(repo())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        command
    }

    fn kubectl(&self, args: &[&str]) -> String {
        output_of(self.tool("kubectl").args(args))
    }

    /// kubectl's output whether it succeeds or not, for a failure's report.
    fn kubectl_output(&self, args: &[&str]) -> String {
        match self.tool("kubectl").args(args).output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("kubectl: {e}"),
        }
    }

    async fn create_namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    }

    /// Deletes a namespace and waits until it is gone.
    async fn delete_namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        self.wait_for(&format!("namespace {name} to be gone"), || async {
            namespaces.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }

    /// Server-side applies a Registry with this spec.
    async fn apply_registry(&self, ns: &str, name: &str, spec: serde_json::Value) -> Api<Registry> {
        let registries: Api<Registry> = Api::namespaced(self.client.clone(), ns);
        let registry = json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "Registry",
            "metadata": {"name": name, "namespace": ns}, "spec": spec,
        });
        registries
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&registry))
            .await
            .unwrap_or_else(|e| panic!("Registry {ns}/{name}: {e}"));
        registries
    }

    /// The names of the pods of Deployment `ns/name`, once all of them (and at
    /// least one) are Running and Ready and none is being deleted.
    async fn ready_pods(&self, ns: &str, name: &str) -> BTreeSet<String> {
        self.wait_for(
            &format!("the pods of Deployment {ns}/{name} to be Ready"),
            || self.try_ready_pods(ns, name),
        )
        .await
    }

    async fn try_ready_pods(&self, ns: &str, name: &str) -> Option<BTreeSet<String>> {
        let deployment = Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .ok()??;
        let labels = deployment.spec.selector.match_labels?;
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .ok()?;
        let ready = |pod: &Pod| {
            pod.metadata.deletion_timestamp.is_none()
                && pod.status.as_ref().is_some_and(|s| {
                    s.phase.as_deref() == Some("Running")
                        && s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        };
        (!pods.items.is_empty() && pods.items.iter().all(ready))
            .then(|| pods.items.iter().map(|p| p.name_any()).collect())
    }

    /// The Registry's Ready condition, once it is True for its current spec.
    async fn registry_ready(&self) -> Condition {
        let registries: Api<Registry> = Api::namespaced(self.client.clone(), NS);
        self.wait_for("the Registry to be Ready", || async {
            current_condition(&registries.get(NAME).await.ok()?, "Ready")
                .filter(|c| c.status == "True")
        })
        .await
    }

    /// The generations of the operator's and the registry's Deployments.
    async fn generations(&self) -> (Option<i64>, Option<i64>) {
        let generation = |ns: &str, name: &str| {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
            let name = name.to_string();
            async move { api.get(&name).await.unwrap().metadata.generation }
        };
        (
            generation(OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT).await,
            generation(NS, NAME).await,
        )
    }

    /// The node's address, where pods reach this machine.
    async fn node_address(&self) -> String {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        let addresses = nodes.items[0].status.as_ref().unwrap().addresses.clone();
        addresses
            .into_iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
            .expect("the node has an InternalIP")
            .address
    }

    /// Pulls `image` (`REPO:TAG`) from the registry pod `ns/pod` at its own
    /// address, checking that every blob is the bytes its digest names;
    /// returns the manifest's digest.
    async fn pull_whole_from_pod(&self, ns: &str, pod: &str, image: &str) -> String {
        let ip = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get(pod)
            .await
            .unwrap()
            .status
            .and_then(|s| s.pod_ip)
            .unwrap_or_else(|| panic!("pod {pod} has no address"));
        let (repo, tag) = image.split_once(':').unwrap();
        let base = format!("http://{ip}:5000/v2/{repo}");
        let r = self
            .http
            .get(format!("{base}/manifests/{tag}"))
            .header(
                "accept",
                [oci::OCI_MANIFEST, oci::DOCKER_MANIFEST].join(", "),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{image} from pod {pod}");
        let digest = oci::header(&r, "docker-content-digest");
        let body = r.bytes().await.unwrap();
        assert_eq!(oci::digest(&body), digest, "{image} from pod {pod}");
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        for blob in layers.iter().chain([&manifest["config"]]) {
            let wanted = blob["digest"].as_str().unwrap();
            let r = self
                .http
                .get(format!("{base}/blobs/{wanted}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{wanted} from pod {pod}");
            assert_eq!(
                oci::digest(&r.bytes().await.unwrap()),
                wanted,
                "from pod {pod}"
            );
        }
        digest
    }

    /// The kit's busybox image, as an OCI archive containerd exported.
    fn busybox(&self) -> PathBuf {
        let archive = self.dir.join("busybox.tar");
        if !archive.exists() {
            let socket = self.dir.join("containerd/containerd.sock");
            let mut command = Command::new("ctr");
            command
                .arg("--address")
                .arg(socket)
                .args(["-n", "k8s.io", "images", "export"]);
            command.arg(&archive).arg("kit.local/busybox:1.35");
            output_of(&mut command);
        }
        archive
    }

    /// `skopeo copy` of busybox to `localhost:32000/REFERENCE`; its error output
    /// when it fails.
    fn skopeo_push(&self, reference: &str, login: Option<(&str, &str)>) -> Result<(), String> {
        self.skopeo_push_to(NODE, reference, login)
    }

    /// `skopeo copy` of busybox to `REGISTRY/REFERENCE`.
    fn skopeo_push_to(
        &self,
        registry: &str,
        reference: &str,
        login: Option<(&str, &str)>,
    ) -> Result<(), String> {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--dest-tls-verify=false"]);
        if let Some((user, password)) = login {
            command.arg(format!("--dest-creds={user}:{password}"));
        }
        command.arg(format!("oci-archive:{}", self.busybox().display()));
        command.arg(format!("docker://{registry}/{reference}"));
        let out = command.output().expect("skopeo runs");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs a pod of `image` (pulled every time) that prints a line: Ok with its
    /// log once it succeeded, Err with the kubelet's reason when the image
    /// cannot be pulled.
    async fn run_pod(
        &self,
        name: &str,
        image: &str,
        pull_secret: Option<&str>,
    ) -> Result<String, String> {
        let secrets: Vec<_> = pull_secret
            .map(|s| json!({"name": s}))
            .into_iter()
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": APPS},
            "spec": {
                "restartPolicy": "Never",
                "imagePullSecrets": secrets,
                "containers": [{
                    "name": "app", "image": image, "imagePullPolicy": "Always",
                    "command": ["sh", "-c", "echo pulled through berth"],
                }],
            },
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), APPS);
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let outcome = self
            .wait_for(&format!("pod {name} to run or fail to pull"), || async {
                let status = pods.get(name).await.ok()?.status?;
                if status.phase.as_deref() == Some("Succeeded") {
                    return Some(Ok(()));
                }
                let waiting = status.container_statuses?.first()?.state.clone()?.waiting?;
                let reason = waiting.reason.unwrap_or_default();
                ["ErrImagePull", "ImagePullBackOff"]
                    .contains(&reason.as_str())
                    .then(|| Err(format!("{reason}: {}", waiting.message.unwrap_or_default())))
            })
            .await;
        let result = match outcome {
            Ok(()) => Ok(pods
                .logs(name, &LogParams::default())
                .await
                .unwrap()
                .trim()
                .to_string()),
            Err(reason) => Err(reason),
        };
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        result
    }

    /// The value of a counter the registry exports, through the node port.
    async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let text = http
            .get(format!("http://{NODE}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }

    /// manifests/examples/registry.yaml applied (the operator of a helm or
    /// kubectl install running): Ready, taking a push at localhost:32000;
    /// then deleted again with its namespace.
    async fn example_registry_is_ready(&self) {
        self.ready_pods(OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT)
            .await;
        self.kubectl(&["apply", "-f", "manifests/examples/registry.yaml"]);
        self.registry_ready().await;
        // kube-proxy opens a new NodePort a moment after the Service exists.
        self.wait_for("the node port to answer", || async {
            let r = self.http.get(format!("http://{NODE}/v2/")).send().await;
            (r.ok()?.status() == 200).then_some(())
        })
        .await;
        oci::push_image(
            &self.http,
            &format!("http://{NODE}"),
            "hello",
            "v1",
            "example",
        )
        .await;
        assert!(manifest_digest(&self.http, "hello:v1").await.is_some());
        self.kubectl(&["delete", "-f", "manifests/examples/registry.yaml", "--wait"]);
    }

    /// No namespace, CRD, cluster role, kube-public ConfigMap or claim of
    /// berth's is left; a volume berth used is released for others.
    async fn nothing_of_berth_is_left(&self) {
        let c = &self.client;
        let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
        assert!(
            crds.get_opt(Registry::crd_name()).await.unwrap().is_none(),
            "the CRD is left"
        );
        let namespaces: Api<Namespace> = Api::all(c.clone());
        for ns in [NS, OPERATOR_NAMESPACE] {
            assert!(
                namespaces.get_opt(ns).await.unwrap().is_none(),
                "namespace {ns} is left"
            );
        }
        let roles = names(Api::<ClusterRole>::all(c.clone())).await;
        let bindings = names(Api::<ClusterRoleBinding>::all(c.clone())).await;
        for name in roles.iter().chain(&bindings) {
            assert!(!name.contains("berth"), "{name} is left");
        }
        let hosting: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-public");
        assert!(
            hosting
                .get_opt("local-registry-hosting")
                .await
                .unwrap()
                .is_none(),
            "the local-registry-hosting ConfigMap is left"
        );
        let volumes: Api<PersistentVolume> = Api::all(c.clone());
        self.wait_for("berth's volumes to be released", || async {
            let list = volumes.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|pv| {
                    let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                    claim.and_then(|r| r.namespace.as_deref()) != Some(NS)
                })
                .then_some(())
        })
        .await;
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn names<K>(api: Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items.iter().map(|o| o.name_any()).collect()
}

/// The digest of the manifest `localhost:32000/REPO:TAG` serves, if it does.
async fn manifest_digest(http: &reqwest::Client, image: &str) -> Option<String> {
    let (repo, tag) = image.split_once(':').unwrap();
    let r = http
        .head(format!("http://{NODE}/v2/{repo}/manifests/{tag}"))
        .header(
            "accept",
            [oci::OCI_MANIFEST, oci::DOCKER_MANIFEST].join(", "),
        )
        .send()
        .await
        .ok()?;
    (r.status() == 200).then(|| oci::header(&r, "docker-content-digest"))
}

/// A client that logs in as alice on every request.
fn alice_client(password: &str) -> reqwest::Client {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {token}").parse().unwrap(),
    );
    common::api::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The condition of this type, once the status is of the current generation.
fn current_condition(registry: &Registry, type_: &str) -> Option<Condition> {
    let status = registry.status.as_ref()?;
    if status.observed_generation != registry.metadata.generation {
        return None;
    }
    status.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Whether an htpasswd file lets `user` in with `password`.
fn lets_in(file: &str, user: &str, password: &str) -> bool {
    file.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, hash)| {
            name == user && bcrypt::verify(password, hash).unwrap_or(false)
        })
    })
}
