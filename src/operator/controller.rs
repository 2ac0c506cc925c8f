//! `berth operator`: connects to the cluster (in-cluster config, or KUBECONFIG),
//! checks that the Registry CRD is installed, serves /healthz and /metrics on a
//! small port, and runs the kube-rs Controller: it watches Registries and every
//! kind of child, so a deleted or edited child brings its Registry back to a pass,
//! and the metadata (never the data) of every Secret, so a changed password does.

use super::crd::Registry;
use super::htpasswd::LineCache;
use super::metrics::Metrics;
use super::reconcile::{Context, error_policy, reconcile};
use super::resources::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{error, info, warn};
use warp::Filter;

pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:8080";

#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Address of the /healthz and /metrics endpoints
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "ADDR", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: SocketAddr,
    /// Image of the registries whose spec.image is empty (the chart sets it to the
    /// operator's own image; the default is what `berth image export` tags)
    #[arg(long, env = "BERTH_IMAGE", value_name = "IMAGE", default_value = crate::image::DEFAULT_IMAGE)]
    pub image: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}")]
    Connect(#[source] kube::Error),
    #[error(
        "the Registry CRD ({0}) is not installed; install it with `kubectl apply -f crds/registry.yaml` (or `berth crd | kubectl apply -f -`), or install the berth Helm chart"
    )]
    CrdMissing(String),
    #[error("cannot check that the Registry CRD is installed: {0}")]
    CrdCheck(#[source] kube::Error),
    #[error("cannot listen on {0} for /healthz and /metrics: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
}

pub async fn run(args: OperatorArgs) -> Result<(), OperatorError> {
    let client = Client::try_default()
        .await
        .map_err(OperatorError::Connect)?;
    check_crd(&client).await?;
    if args.image.is_none() {
        warn!("BERTH_IMAGE is not set: a Registry without spec.image will be Degraded (NoImage)");
    }

    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| OperatorError::Listen(args.metrics_listen, e))?;
    info!(listen = %args.metrics_listen, "serving /healthz and /metrics");
    tokio::spawn(
        warp::serve(routes(metrics.clone()))
            .incoming(listener)
            .run(),
    );

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from(super::FIELD_MANAGER)),
        metrics,
        operator_image: args.image,
        htpasswd_lines: Arc::new(LineCache::default()),
        // Alpha (off by default) in 1.26, on from 1.27.
        unhealthy_pod_eviction: served_since(&client, 27).await,
    });

    controller(&client)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((registry, _)) => info!(registry = %registry.name, namespace = registry.namespace.as_deref().unwrap_or_default(), "reconciled"),
                Err(error) => warn!(%error, "reconcile"),
            }
        })
        .await;
    info!("operator stopped");
    Ok(())
}

/// The Controller over Registries with every watch that brings a Registry back
/// to a pass; `run` drives it.
fn controller(client: &Client) -> Controller<Registry> {
    // Children carry the managed-by label; watching only those keeps the
    // operator's caches small in a cluster full of other objects.
    let children =
        || watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let controller = Controller::new(
        Api::<Registry>::all(client.clone()),
        watcher::Config::default(),
    );
    let registries = controller.store();
    controller
        .owns(Api::<Deployment>::all(client.clone()), children())
        .owns(Api::<Service>::all(client.clone()), children())
        // The claim has no owner reference unless deletePolicy is Delete, so it is
        // matched to its Registry by the instance label instead.
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            children(),
            |claim| registry_of_labels(&claim),
        )
        .owns(Api::<Ingress>::all(client.clone()), children())
        .owns(Api::<CronJob>::all(client.clone()), children())
        .owns(Api::<DaemonSet>::all(client.clone()), children())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), children())
        // Secrets: the ones a Registry owns, and the password Secrets it only
        // refers to, so a password change is applied at once. Those are any
        // Secret of the cluster (no label marks them), so the watch asks for
        // metadata only (PartialObjectMetadata): the name, namespace and owners
        // are all the mapping needs, and no Secret's data ever reaches the
        // operator through it. A pass reads the few Secrets it uses by name.
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default(),
            move |secret| registries_of_secret(&registries, &secret),
        )
}

/// Whether the API server is Kubernetes 1.MINOR or later; false when it
/// cannot tell (what every version takes).
async fn served_since(client: &Client, minor: u32) -> bool {
    match client.apiserver_version().await {
        Ok(version) => {
            let served = version
                .minor
                .trim_end_matches('+')
                .parse::<u32>()
                .is_ok_and(|m| version.major == "1" && m >= minor);
            info!(version = %version.git_version, "API server");
            served
        }
        Err(error) => {
            warn!(%error, "cannot read the API server's version");
            false
        }
    }
}

async fn check_crd(client: &Client) -> Result<(), OperatorError> {
    let name = Registry::crd_name();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            error!("the Registry CRD is not installed");
            Err(OperatorError::CrdMissing(name.to_string()))
        }
        Err(e) => Err(OperatorError::CrdCheck(e)),
    }
}

/// The Registries a Secret matters to: its owner, and those whose auth names it.
/// Only the Secret's metadata is known here (see the watch in [`controller`]).
fn registries_of_secret(
    registries: &Store<Registry>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<Registry>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    let mut refs: Vec<ObjectRef<Registry>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == super::crd::KIND && o.api_version == super::crd::API_VERSION)
        .map(|o| ObjectRef::new(&o.name).within(namespace.as_deref().unwrap_or_default()))
        .collect();
    refs.extend(
        registries
            .state()
            .iter()
            .filter(|r| r.namespace() == namespace && refers_to(r, &name))
            .map(|r| ObjectRef::from_obj(r.as_ref())),
    );
    refs
}

/// The Registry named by a child's instance label, in the child's namespace.
fn registry_of_labels(child: &PersistentVolumeClaim) -> Option<ObjectRef<Registry>> {
    let name = child.labels().get(LABEL_INSTANCE)?;
    Some(ObjectRef::new(name).within(child.namespace().as_deref()?))
}

/// Whether the Registry's auth (or its object store's credentials) reads the
/// Secret `name`.
pub fn refers_to(registry: &Registry, name: &str) -> bool {
    let auth = &registry.spec.auth;
    let storage = super::bucket::of(&registry.spec.storage);
    storage.is_some_and(|b| b.credentials_secret.as_deref() == Some(name))
        || auth.existing_secret.as_deref() == Some(name)
        || auth
            .users
            .iter()
            .any(|u| u.password_secret_ref.name == name)
}

/// `/healthz` (the process is alive) and `/metrics` (Prometheus text).
fn routes(
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok\n");
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.encode(),
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    });
    healthz.or(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::RegistrySpec;
    use crate::operator::fixtures::alice;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kube::core::PartialObjectMetaExt;

    #[tokio::test]
    async fn healthz_and_metrics() {
        let metrics = Arc::new(Metrics::default());
        drop(metrics.pass());
        let routes = routes(metrics);
        let health = warp::test::request().path("/healthz").reply(&routes).await;
        assert_eq!(health.status(), 200);
        let text = warp::test::request().path("/metrics").reply(&routes).await;
        assert_eq!(text.status(), 200);
        let body = String::from_utf8(text.body().to_vec()).unwrap();
        assert!(body.contains("berth_operator_reconciles_total 1"), "{body}");
        let missing = warp::test::request().path("/nothing").reply(&routes).await;
        assert_eq!(missing.status(), 404);
    }

    /// Registries as the controller's store would hold them, in namespace dev.
    fn store(registries: Vec<Registry>) -> Store<Registry> {
        let mut writer = kube::runtime::reflector::store::Writer::default();
        for mut registry in registries {
            registry.metadata.namespace = Some("dev".into());
            writer.apply_watcher_event(&watcher::Event::Apply(registry));
        }
        writer.as_reader()
    }

    fn secret_meta(
        namespace: &str,
        name: &str,
        owners: Vec<OwnerReference>,
    ) -> PartialObjectMeta<Secret> {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        }
        .into_response_partial()
    }

    #[test]
    fn a_secret_maps_by_its_metadata_to_its_owner_and_to_the_registries_naming_it() {
        let mut file = RegistrySpec::default();
        file.auth.existing_secret = Some("alice-pw".into());
        let registries = store(vec![
            Registry::new("cache", alice()),
            Registry::new("mirror", file),
            Registry::new("plain", RegistrySpec::default()),
        ]);
        let names = |refs: Vec<ObjectRef<Registry>>| {
            let mut names: Vec<String> = refs
                .into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect();
            names.sort();
            names
        };

        let password = secret_meta("dev", "alice-pw", vec![]);
        assert_eq!(
            names(registries_of_secret(&registries, &password)),
            ["dev/cache", "dev/mirror"]
        );
        // The same name in another namespace is another Secret.
        let elsewhere = secret_meta("prod", "alice-pw", vec![]);
        assert!(registries_of_secret(&registries, &elsewhere).is_empty());

        // An owned child maps to its owner, a Registry only.
        let owner = |kind: &str, api_version: &str| OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "plain".into(),
            uid: "u".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let htpasswd = secret_meta(
            "dev",
            "plain-htpasswd",
            vec![owner("Registry", "berth.dev/v1alpha1")],
        );
        assert_eq!(
            names(registries_of_secret(&registries, &htpasswd)),
            ["dev/plain"]
        );
        let foreign = secret_meta("dev", "x", vec![owner("Deployment", "apps/v1")]);
        assert!(registries_of_secret(&registries, &foreign).is_empty());
    }

    /// Runs the operator's Controller against a mock API server that answers
    /// every list with no items, and returns `(path?query, Accept)` of each
    /// request it received within a few seconds.
    async fn requests_of_the_controller() -> Vec<(String, String)> {
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            // Watches are held open, as a quiet API server does.
            let mut open_watches = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let uri = request.uri().to_string();
                let accept = request
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push((uri.clone(), accept));
                if uri.contains("watch=true") {
                    open_watches.push(respond);
                    continue;
                }
                let empty = serde_json::json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": "1"}, "items": []});
                respond.send_response(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(
                            serde_json::to_vec(&empty).unwrap(),
                        ))
                        .unwrap(),
                );
            }
        });
        let client = Client::new(service, "default");
        let run = controller(&client)
            .run(
                |_, _| async {
                    Ok::<_, std::io::Error>(kube::runtime::controller::Action::await_change())
                },
                |_, _, _| kube::runtime::controller::Action::await_change(),
                Arc::new(()),
            )
            .for_each(|_| async {});
        // Every watch lists first; the lists come at once, the rest never ends.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), run).await;
        seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn the_secret_watch_asks_for_metadata_only() {
        let requests = requests_of_the_controller().await;
        let secrets: Vec<&(String, String)> = requests
            .iter()
            .filter(|(uri, _)| uri.starts_with("/api/v1/secrets"))
            .collect();
        assert!(
            secrets.iter().any(|(uri, _)| !uri.contains("watch=true"))
                && secrets.iter().any(|(uri, _)| uri.contains("watch=true")),
            "the Secrets are listed and watched: {requests:?}"
        );
        // The API server then sends PartialObjectMetadata, without data.
        for (uri, accept) in &secrets {
            assert!(
                accept.contains("as=PartialObjectMetadata"),
                "{uri} asks for {accept:?}"
            );
        }
        // The Registries themselves are watched whole: a pass needs the spec.
        let registries: Vec<_> = requests
            .iter()
            .filter(|(uri, _)| uri.starts_with("/apis/berth.dev/v1alpha1/registries"))
            .collect();
        assert!(!registries.is_empty(), "{requests:?}");
        for (uri, accept) in registries {
            assert!(!accept.contains("PartialObjectMetadata"), "{uri}");
        }
    }

    #[test]
    fn a_password_secret_maps_to_the_registries_using_it() {
        let registry = Registry::new("cache", alice());
        assert!(refers_to(&registry, "alice-pw"));
        assert!(!refers_to(&registry, "other"));
        let mut existing = RegistrySpec::default();
        existing.auth.existing_secret = Some("file".into());
        assert!(refers_to(&Registry::new("c", existing), "file"));
    }

    #[test]
    fn an_object_store_credentials_secret_maps_to_its_registry() {
        // Its keys are the registry's environment: a change must roll the pods
        // now, not at the next resync.
        let mut spec = RegistrySpec::default();
        spec.storage.s3 = Some(crate::operator::crd::S3Storage {
            bucket: "images".into(),
            credentials_secret: Some("s3-login".into()),
            ..Default::default()
        });
        let registry = Registry::new("c", spec);
        assert!(refers_to(&registry, "s3-login"));
        assert!(!refers_to(&registry, "images"));
    }
}
