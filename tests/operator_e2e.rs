//! End to end against a real cluster (kind, k3d, minikube …), ignored by default:
//!
//! ```text
//! KUBECONFIG=~/.kube/config BERTH_E2E_IMAGE=ghcr.io/…/berth:dev \
//!     cargo test --test operator_e2e -- --ignored
//! ```
//!
//! It installs the CRD and runs the operator in this process, one for all the
//! tests (unless `BERTH_E2E_OPERATOR=external` says one already runs in the
//! cluster, e.g. from manifests/install.yaml, which then proves its RBAC too).
//! Each test works in a fresh namespace and deletes it at the end:
//!
//! - `a_registry_comes_up_and_is_kept`: every child and Ready; a deleted
//!   Deployment comes back.
//! - `replicas_are_refused_and_a_password_change_is_seen`: a Registry asking for
//!   2 replicas on a ReadWriteMany volume gets Degraded (ReplicasNotSupported)
//!   from the real API server while its Deployment runs 1 pod; then a change of
//!   the password Secret it refers to reaches the htpasswd Secret through the
//!   operator's metadata-only Secret watch.
//!
//! - `a_registry_that_cannot_start_says_why`: a Registry whose image does not
//!   exist gets Ready=False with the kubelet's reason (ErrImagePull or
//!   ImagePullBackOff) and the pod's name in the message.
//!
//! `BERTH_E2E_IMAGE` must be an image of berth the cluster's nodes can pull (for
//! kind: `kind load docker-image`; for the one-node cluster of ../shared/kube:
//! `berth image export` then `ctr -n k8s.io images import`). The registry pod
//! runs as user 65532; its `prepare-volume` init container gives the volume to
//! that user first, so the root-owned hostPath PersistentVolumes of that
//! cluster (which ignore fsGroup) need nothing done by hand.

use berth::operator::Registry;
use berth::operator::crd::{AccessMode, RegistrySpec, SecretKeyRef, User};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

const MANAGER: &str = "berth-e2e";
const TIMEOUT: Duration = Duration::from_secs(300);

/// Polls until `check` gives Some, or fails after [`TIMEOUT`] naming `what`.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn child<K>(client: &Client, namespace: &str, name: &str) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("{} {name}", K::kind(&())), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten() }
    })
    .await
}

/// The cluster, with the CRD installed and the operator running, and the image
/// to deploy; None when no cluster is configured.
async fn cluster() -> Option<(Client, String)> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("KUBECONFIG is not set; skipping the end-to-end test");
        return None;
    }
    let image = std::env::var("BERTH_E2E_IMAGE")
        .expect("BERTH_E2E_IMAGE: an image of berth the cluster's nodes can pull");
    let client = Client::try_default().await.expect("a cluster");

    // The CRD, as `kubectl apply -f crds/registry.yaml` would.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        Registry::crd_name(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(Registry::crd()),
    )
    .await
    .expect("the CRD applies");
    wait_for("the CRD to be established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get(Registry::crd_name()).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;

    if std::env::var("BERTH_E2E_OPERATOR").as_deref() != Ok("external") {
        start_operator(&image);
    }
    Some((client, image))
}

/// Starts the operator once for the whole test process, on a thread with its
/// own runtime: each test's runtime ends with the test, and two operators in
/// one process would only fight over the same objects.
fn start_operator(image: &str) {
    static STARTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    STARTED.get_or_init(|| {
        let args = berth::operator::OperatorArgs {
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            image: Some(image.to_string()),
        };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            let result = runtime.block_on(berth::operator::run(args));
            // A panic on this thread would fail no test: stop them all instead.
            eprintln!("the operator stopped: {result:?}");
            std::process::exit(101);
        });
    });
}

/// A fresh namespace for one test.
async fn namespace(client: &Client) -> String {
    let name = format!(
        "berth-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("a namespace");
    name
}

/// The PVC outlives the Registry by default, so the namespace goes with it.
async fn delete_namespace(client: &Client, namespace: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::default())
        .await
        .expect("the namespace deletes");
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG and BERTH_E2E_IMAGE, run with --ignored"]
async fn a_registry_comes_up_and_is_kept() {
    let Some((client, image)) = cluster().await else {
        return;
    };
    let namespace = namespace(&client).await;

    let mut spec = RegistrySpec {
        image: Some(image),
        // No cluster-wide ConfigMap: the test must not disturb what the cluster has.
        local_registry_hosting: false,
        ..RegistrySpec::default()
    };
    spec.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into());
    // A node port few clusters use.
    spec.service.node_port = Some(30000 + (std::process::id() % 2000) as i32);
    let mut registry = Registry::new("e2e", spec);
    registry.metadata.namespace = Some(namespace.clone());
    let registries: Api<Registry> = Api::namespaced(client.clone(), &namespace);
    registries
        .patch(
            "e2e",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&registry),
        )
        .await
        .expect("the Registry applies");

    child::<PersistentVolumeClaim>(&client, &namespace, "e2e-data").await;
    child::<Secret>(&client, &namespace, "e2e-htpasswd").await;
    child::<Secret>(&client, &namespace, "e2e-admin").await;
    child::<Service>(&client, &namespace, "e2e").await;
    child::<Service>(&client, &namespace, "e2e-nodeport").await;
    child::<CronJob>(&client, &namespace, "e2e-gc").await;
    let deployment = child::<Deployment>(&client, &namespace, "e2e").await;

    wait_for("the Registry to be Ready", || {
        let registries = registries.clone();
        async move {
            let registry = registries.get("e2e").await.ok()?;
            let status = registry.status?;
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;

    // A deleted child comes back: the controller owns it.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .delete("e2e", &DeleteParams::default())
        .await
        .expect("the Deployment deletes");
    let old_uid = deployment.uid();
    wait_for("the Deployment to come back", || {
        let deployments = deployments.clone();
        let old_uid = old_uid.clone();
        async move {
            let back = deployments.get_opt("e2e").await.ok()??;
            (back.uid() != old_uid && back.metadata.deletion_timestamp.is_none()).then_some(())
        }
    })
    .await;

    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG and BERTH_E2E_IMAGE, run with --ignored"]
async fn a_registry_that_cannot_start_says_why() {
    let Some((client, _)) = cluster().await else {
        return;
    };
    let namespace = namespace(&client).await;
    let mut spec = RegistrySpec {
        // No node can pull this: the kubelet says ErrImagePull, then backs off.
        image: Some("kit.local/berth:does-not-exist".into()),
        local_registry_hosting: false,
        ..RegistrySpec::default()
    };
    spec.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into());
    spec.service.node_port = None;
    let mut registry = Registry::new("nopull", spec);
    registry.metadata.namespace = Some(namespace.clone());
    let registries: Api<Registry> = Api::namespaced(client.clone(), &namespace);
    registries
        .patch(
            "nopull",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&registry),
        )
        .await
        .expect("the Registry applies");

    let ready = wait_for("Ready to say the image cannot be pulled", || {
        let registries = registries.clone();
        async move {
            let registry = registries.get("nopull").await.ok()?;
            let ready = current_condition(&registry, "Ready")?;
            (ready.status == "False"
                && ["ErrImagePull", "ImagePullBackOff"].contains(&ready.reason.as_str()))
            .then_some(ready)
        }
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

    delete_namespace(&client, &namespace).await;
}

/// The condition of this type in the Registry's status, once the status is of
/// the Registry's current generation.
fn current_condition(
    registry: &Registry,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let status = registry.status.as_ref()?;
    if status.observed_generation != registry.metadata.generation {
        return None;
    }
    status.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// The htpasswd file the operator wrote into `NAME-htpasswd`.
async fn htpasswd(secrets: &Api<Secret>, name: &str) -> Option<String> {
    let secret = secrets.get_opt(name).await.ok()??;
    let bytes = secret.data?.remove("htpasswd")?;
    String::from_utf8(bytes.0).ok()
}

/// Whether `file` holds a line for `user` whose bcrypt hash is of `password`.
fn lets_in(file: &str, user: &str, password: &str) -> bool {
    file.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, hash)| {
            name == user && bcrypt::verify(password, hash).unwrap_or(false)
        })
    })
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG and BERTH_E2E_IMAGE, run with --ignored"]
async fn replicas_are_refused_and_a_password_change_is_seen() {
    let Some((client, image)) = cluster().await else {
        return;
    };
    let namespace = namespace(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    // alice's password, in a Secret the Registry only refers to (it does not own
    // it, and no label of ours marks it).
    let password_secret = |password: &str| {
        let mut secret = Secret::default();
        secret.metadata.name = Some("alice-pw".into());
        secret.metadata.namespace = Some(namespace.clone());
        secret.string_data = Some(BTreeMap::from([("password".into(), password.into())]));
        secret
    };
    secrets
        .create(&PostParams::default(), &password_secret("first-s3cret"))
        .await
        .expect("the password Secret");

    let mut spec = RegistrySpec {
        image: Some(image),
        // Asked for, and refused: one process owns the volume's state.
        replicas: 2,
        local_registry_hosting: false,
        ..RegistrySpec::default()
    };
    spec.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into());
    // ReadWriteMany: the volume could be shared, the registry's state cannot.
    spec.storage.access_modes = vec![AccessMode::ReadWriteMany];
    spec.service.node_port = None;
    spec.auth.users = vec![User {
        name: "alice".into(),
        password_secret_ref: SecretKeyRef {
            name: "alice-pw".into(),
            key: "password".into(),
        },
    }];
    let mut registry = Registry::new("scale", spec);
    registry.metadata.namespace = Some(namespace.clone());
    let registries: Api<Registry> = Api::namespaced(client.clone(), &namespace);
    registries
        .patch(
            "scale",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&registry),
        )
        .await
        .expect("the Registry applies: the schema allows replicas 2");

    let degraded = wait_for("Degraded with ReplicasNotSupported", || {
        let registries = registries.clone();
        async move {
            let registry = registries.get("scale").await.ok()?;
            current_condition(&registry, "Degraded")
                .filter(|c| c.status == "True" && c.reason == "ReplicasNotSupported")
        }
    })
    .await;
    assert!(
        degraded.message.contains("spec.replicas is 2")
            && degraded.message.contains("set spec.replicas to 1"),
        "{}",
        degraded.message
    );

    // The registry serves all the same, with one pod.
    wait_for("the Registry to be Ready with one pod", || {
        let registries = registries.clone();
        async move {
            let registry = registries.get("scale").await.ok()?;
            let ready = current_condition(&registry, "Ready")?;
            (ready.status == "True" && registry.status?.ready_replicas == 1).then_some(())
        }
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let one_pod = |deployment: &Deployment| {
        let spec = &deployment.spec;
        assert_eq!(spec.replicas, Some(1), "the Deployment asks for 1 pod");
        assert_eq!(
            spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("RollingUpdate"),
            "ReadWriteMany rolls"
        );
    };
    let deployment = deployments.get("scale").await.expect("the Deployment");
    one_pod(&deployment);
    assert_eq!(
        deployment.status.as_ref().and_then(|s| s.replicas),
        Some(1),
        "one pod runs"
    );
    let first = htpasswd(&secrets, "scale-htpasswd")
        .await
        .expect("the htpasswd Secret");
    assert!(lets_in(&first, "alice", "first-s3cret"), "{first}");

    // Let the passes that the rollout's own status changes start run out, so
    // that the next one comes from the password change alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    secrets
        .replace(
            "alice-pw",
            &PostParams::default(),
            &password_secret("second-s3cret"),
        )
        .await
        .expect("the password changes");
    // Well within the 300 s resync: only a watch event brings this pass.
    let changed_within = Duration::from_secs(60);
    let started = tokio::time::Instant::now();
    let second = loop {
        let file = htpasswd(&secrets, "scale-htpasswd")
            .await
            .unwrap_or_default();
        if lets_in(&file, "alice", "second-s3cret") {
            break file;
        }
        assert!(
            started.elapsed() < changed_within,
            "the htpasswd Secret did not follow the password Secret within {changed_within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "the htpasswd Secret followed the password change in {:?}",
        started.elapsed()
    );
    assert!(!lets_in(&second, "alice", "first-s3cret"), "{second}");

    // The new file rolls the pod, and still to one pod: the refusal holds.
    let rolled = wait_for("the rollout of the new htpasswd", || {
        let deployments = deployments.clone();
        let registries = registries.clone();
        async move {
            let deployment = deployments.get("scale").await.ok()?;
            let status = deployment.status.clone()?;
            let settled = status.observed_generation >= deployment.metadata.generation
                && status.replicas == Some(1)
                && status.updated_replicas == Some(1)
                && status.ready_replicas == Some(1);
            let registry = registries.get("scale").await.ok()?;
            let still_refused = current_condition(&registry, "Degraded")
                .is_some_and(|c| c.reason == "ReplicasNotSupported");
            (settled && still_refused && deployment.metadata.generation > Some(1))
                .then_some(deployment)
        }
    })
    .await;
    one_pod(&rolled);

    delete_namespace(&client, &namespace).await;
}
