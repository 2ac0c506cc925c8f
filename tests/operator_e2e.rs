//! End to end against a real cluster (kind, k3d, minikube …), ignored by default:
//!
//! ```text
//! KUBECONFIG=~/.kube/config BERTH_E2E_IMAGE=ghcr.io/…/berth:dev \
//!     cargo test --test operator_e2e -- --ignored
//! ```
//!
//! It installs the CRD, runs the operator in this process (unless
//! `BERTH_E2E_OPERATOR=external` says one already runs in the cluster), applies a
//! Registry in a fresh namespace, waits for every child and for Ready, deletes
//! the Deployment and waits for it to come back, then deletes the namespace.
//! `BERTH_E2E_IMAGE` must be an image of berth the cluster's nodes can pull (for
//! kind: `kind load docker-image`).

use berth::operator::Registry;
use berth::operator::crd::RegistrySpec;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
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

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG and BERTH_E2E_IMAGE, run with --ignored"]
async fn a_registry_comes_up_and_is_kept() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("KUBECONFIG is not set; skipping the end-to-end test");
        return;
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
        let args = berth::operator::OperatorArgs {
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            image: Some(image.clone()),
        };
        tokio::spawn(async move {
            if let Err(e) = berth::operator::run(args).await {
                panic!("the operator stopped: {e}");
            }
        });
    }

    let namespace = format!(
        "berth-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("a namespace");

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

    // The PVC outlives the Registry by default, so the namespace goes with it.
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("the namespace deletes");
}
