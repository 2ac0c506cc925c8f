//! One reconcile pass over a Registry, and the error policy beside it.
//!
//! A pass reads only what the builders cannot know (the users' passwords, the
//! admin token already issued, the volume claim as it is), builds every child
//! with the pure builders of resources/, applies each with server-side apply
//! (field manager `berth-operator`, forced, so a hand edit is undone), deletes the
//! optional children the spec turned off, and writes the status (computed in
//! report.rs) through the status subresource, also with server-side apply. The
//! kube-public ConfigMap and its finalizer are hosting.rs's.
//!
//! A spec the operator cannot act on is not an error to retry: it becomes
//! Degraded with the reason, a Warning event, and a slow requeue. Errors are for
//! the API server failing us; the controller retries them after a pause.

use super::bucket;
use super::crd::{API_VERSION, KIND, Registry};
use super::hosting::Hosting;
use super::htpasswd::{Credential, LineCache, password_from_secret};
use super::metrics::Metrics;
use super::report::{self, Applied, Report};
use super::resources::{
    HTPASSWD_KEY, Settings, TOKEN_KEY, configmap, cronjob, daemonset, deployment, disruption,
    ingress, names, pvc, secret, selector_labels, service,
};
use super::status;
use super::storage::{self, Change, Plan};
use super::upstreams;
use super::validate::{self, Invalid};
use super::{Error, FIELD_MANAGER};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// A healthy Registry is looked at again this often even without a change, to
/// catch what no watch reports (a StorageClass that now allows expansion).
pub const RESYNC: Duration = Duration::from_secs(300);
/// A Registry whose pods are not ready is looked at again this often: a pod
/// that crash-loops or cannot pull changes no Deployment status, and the
/// Deployment is all the operator watches of its pods.
pub const NOT_READY_RESYNC: Duration = Duration::from_secs(20);
/// With upstreams, a Registry is looked at this often, so that its status
/// says how they are doing (upstreams.rs).
pub const PROXY_RESYNC: Duration = Duration::from_secs(60);
/// A spec that cannot be acted on waits for a change, or this long.
pub const INVALID_RETRY: Duration = Duration::from_secs(600);
/// A pass that failed on the API is tried again after this.
pub const ERROR_RETRY: Duration = Duration::from_secs(30);

/// What every pass shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// `BERTH_IMAGE`: the image to deploy when `spec.image` is not set.
    pub operator_image: Option<String>,
    pub htpasswd_lines: Arc<LineCache>,
    /// The API server takes a PodDisruptionBudget's unhealthyPodEvictionPolicy
    /// (Kubernetes 1.27 and later; one before 1.26 refuses a server-side
    /// apply that names it, 1.26 drops it).
    pub unhealthy_pod_eviction: bool,
}

pub async fn reconcile(registry: Arc<Registry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.pass();
    let pass = Pass::new(&registry, &ctx)?;
    let result = pass.run().await;
    if let Err(error) = &result {
        // Best effort: the error itself is what the controller acts on.
        pass.event(EventType::Warning, "ReconcileFailed", error.to_string())
            .await;
    }
    result
}

pub fn error_policy(registry: Arc<Registry>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        registry = %registry.name_any(),
        namespace = registry.namespace().unwrap_or_default(),
        %error,
        "reconcile failed; retrying in {}s",
        ERROR_RETRY.as_secs()
    );
    ctx.metrics.failure(error.kind());
    Action::requeue(ERROR_RETRY)
}

/// Why a pass stopped before the end.
enum Stop {
    Invalid(Invalid),
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        // The API server refusing what we built means the spec leads to an object
        // it will never accept: no retry changes that, the spec must.
        if let Error::Kube(kube::Error::Api(status)) = &error
            && (status.is_invalid() || status.code == 400)
        {
            return Stop::Invalid(Invalid {
                reason: "Rejected",
                message: format!("the API server refused a child: {}", status.message),
            });
        }
        Stop::Failed(error)
    }
}

impl From<kube::Error> for Stop {
    fn from(error: kube::Error) -> Self {
        Stop::from(Error::Kube(error))
    }
}

impl From<Invalid> for Stop {
    fn from(invalid: Invalid) -> Self {
        Stop::Invalid(invalid)
    }
}

struct Pass<'a> {
    registry: &'a Registry,
    ctx: &'a Context,
    name: String,
    namespace: String,
    uid: String,
    /// Children that did not exist before this pass, for one Created event.
    created: std::sync::Mutex<Vec<String>>,
}

impl<'a> Pass<'a> {
    fn new(registry: &'a Registry, ctx: &'a Context) -> Result<Self, Error> {
        Ok(Pass {
            registry,
            ctx,
            name: registry
                .metadata
                .name
                .clone()
                .ok_or(Error::MissingField("name"))?,
            namespace: registry
                .metadata
                .namespace
                .clone()
                .ok_or(Error::MissingField("namespace"))?,
            uid: registry
                .metadata
                .uid
                .clone()
                .ok_or(Error::MissingField("uid"))?,
            created: std::sync::Mutex::default(),
        })
    }

    async fn run(&self) -> Result<Action, Error> {
        if self.registry.metadata.deletion_timestamp.is_some() {
            self.hosting().release().await?;
            return Ok(Action::await_change());
        }
        // Before the children: the ConfigMap is published only under the finalizer.
        self.hosting().sync_finalizer().await?;

        let outcome = async {
            validate::check(self.registry)?;
            let image = validate::image(self.registry, self.ctx.operator_image.as_deref())?;
            self.apply_children(image).await
        }
        .await;
        match outcome {
            Ok(outcome) => {
                let waiting =
                    !outcome.rollout.ready.status && validate::replicas(self.registry) > 0;
                self.write_status(report::applied(self.registry, &outcome, &now()))
                    .await?;
                self.announce().await;
                Ok(Action::requeue(if waiting {
                    NOT_READY_RESYNC
                } else if self.registry.spec.proxy.upstreams.is_empty() {
                    RESYNC
                } else {
                    PROXY_RESYNC
                }))
            }
            Err(Stop::Invalid(invalid)) => {
                info!(registry = %self.name, namespace = %self.namespace, %invalid, "cannot act on the spec");
                self.write_status(report::invalid(self.registry, &invalid, &now()))
                    .await?;
                Ok(Action::requeue(INVALID_RETRY))
            }
            Err(Stop::Failed(error)) => Err(error),
        }
    }

    async fn apply_children(&self, image: String) -> Result<Applied, Stop> {
        let registry = self.registry;
        let settings = Settings {
            image,
            htpasswd: self.htpasswd().await?,
            admin_token: self.admin_token().await?,
            storage_credentials: self.storage_credentials().await?,
            unhealthy_pod_eviction: self.ctx.unhealthy_pod_eviction,
        };

        // Secrets first: the pods mount them.
        self.apply(secret::htpasswd_secret(registry, &settings))
            .await?;
        self.apply(secret::admin_secret(registry, &settings))
            .await?;

        let (claim, storage) = self.apply_claim().await?;

        self.apply(service::cluster_service(registry)).await?;
        self.apply_or_delete(
            service::node_port_service(registry),
            &names::node_port_service(registry),
        )
        .await?;
        let deployment = self
            .apply(deployment::deployment(registry, &settings))
            .await?;
        self.apply_or_delete(
            disruption::disruption_budget(registry, &settings),
            &names::disruption_budget(registry),
        )
        .await?;
        self.apply_or_delete(ingress::ingress(registry), &names::ingress(registry))
            .await?;
        self.apply_or_delete(cronjob::cronjob(registry, &settings), &names::gc(registry))
            .await?;
        self.apply_or_delete(
            daemonset::daemonset(registry, &settings),
            &names::node_config(registry),
        )
        .await?;
        // Not an apply_or_delete: turned off, the ConfigMap goes with the
        // finalizer, before the children (hosting.rs).
        if let Some(hosting) = configmap::configmap(registry) {
            self.publish_hosting(hosting).await?;
        }

        // Measured against the pods that run, not those asked for: a refused
        // replicas > 1 must not leave the rollout waiting for pods that never come.
        let replicas = validate::replicas(registry);
        let mut rollout = status::rollout(&deployment, replicas);
        if !rollout.ready.status && replicas > 0 {
            // The Deployment only counts ready pods; why they are not is in
            // the pods and the claim, or, with no pod at all, in the Deployment.
            let pods = self.registry_pods().await?;
            rollout.explain(
                status::diagnose(&pods, claim.as_ref())
                    .or_else(|| status::replica_failure(&deployment)),
            );
        }
        let ready = rollout.ready_replicas > 0;
        let upstreams = upstreams::report(registry, &settings.admin_token, ready).await;
        Ok(Applied {
            image: settings.image,
            claim,
            storage,
            rollout,
            upstreams,
        })
    }

    /// The registry pods of this Registry (by the Deployment's selector labels).
    async fn registry_pods(&self) -> Result<Vec<Pod>, Stop> {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let selector = selector_labels(self.registry)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::from)?;
        Ok(list.items)
    }

    /// The htpasswd file: the existing Secret's copy, or lines made from the
    /// users' password Secrets (empty without auth).
    async fn htpasswd(&self) -> Result<String, Stop> {
        let auth = &self.registry.spec.auth;
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        if let Some(name) = &auth.existing_secret {
            let secret = secrets.get_opt(name).await?;
            return secret
                .as_ref()
                .and_then(|s| secret::value(s, HTPASSWD_KEY))
                .map(str::to_string)
                .ok_or_else(|| {
                    Stop::Invalid(Invalid {
                        reason: "AuthSecretMissing",
                        message: format!(
                            "spec.auth.existingSecret: Secret {name} with a key {HTPASSWD_KEY} is not in namespace {}",
                            self.namespace
                        ),
                    })
                });
        }
        let mut credentials = Vec::with_capacity(auth.users.len());
        for user in &auth.users {
            let reference = &user.password_secret_ref;
            let password = secrets
                .get_opt(&reference.name)
                .await?
                .and_then(|s| s.data?.remove(&reference.key))
                .ok_or_else(|| {
                    Stop::Invalid(Invalid {
                        reason: "AuthSecretMissing",
                        message: format!(
                            "user {}: Secret {} with a key {} is not in namespace {}",
                            user.name, reference.name, reference.key, self.namespace
                        ),
                    })
                })?;
            credentials.push(Credential {
                user: user.name.clone(),
                password: password_from_secret(&password.0),
            });
        }
        if credentials.is_empty() {
            return Ok(String::new());
        }
        let lines = self.ctx.htpasswd_lines.clone();
        let uid = self.uid.clone();
        // bcrypt is slow on purpose; keep it off the runtime's worker threads.
        tokio::task::spawn_blocking(move || lines.file(&uid, &credentials))
            .await
            .map_err(|e| Stop::Failed(Error::Hash(e.to_string())))?
            .map_err(|e| Stop::Failed(Error::Hash(e.to_string())))
    }

    /// The resourceVersion of the object store's credentials Secret, once its
    /// keys are found to be the ones the store needs (None without such a
    /// Secret).
    async fn storage_credentials(&self) -> Result<Option<String>, Stop> {
        let Some(bucket) = bucket::of(&self.registry.spec.storage) else {
            return Ok(None);
        };
        let Some(name) = &bucket.credentials_secret else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let secret = secrets.get_opt(name).await?.ok_or_else(|| {
            Stop::Invalid(Invalid {
                reason: "StorageSecretMissing",
                message: format!(
                    "{}.credentialsSecret: Secret {name} is not in namespace {}",
                    bucket.field, self.namespace
                ),
            })
        })?;
        let data = secret.data.unwrap_or_default();
        bucket
            .check_keys(data.keys().map(String::as_str))
            .map_err(|message| {
                Stop::Invalid(Invalid {
                    reason: "StorageSecretMissing",
                    message,
                })
            })?;
        Ok(secret.metadata.resource_version)
    }

    /// The admin token already issued, or a new random one.
    async fn admin_token(&self) -> Result<String, Stop> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let existing = secrets.get_opt(&names::admin(self.registry)).await?;
        if let Some(token) = existing
            .as_ref()
            .and_then(|s| secret::value(s, TOKEN_KEY))
            .filter(|t| !t.is_empty())
        {
            return Ok(token.to_string());
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Stop::Failed(Error::Random(e.to_string())))?;
        Ok(hex::encode(bytes))
    }

    /// Applies the claim unless the spec asks for what cannot be done; returns
    /// the claim as it is and the plan followed.
    /// On an object store there is no claim to apply; one made before the
    /// spec named the store is left as it is, with the images it holds.
    async fn apply_claim(&self) -> Result<(Option<PersistentVolumeClaim>, Plan), Stop> {
        if self.registry.spec.storage.object_store() {
            return Ok((None, Plan::Apply { grow_from: None }));
        }
        let desired = pvc::pvc(self.registry);
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let existing = claims.get_opt(&names::data(self.registry)).await?;
        let plan = match storage::change(&desired, existing.as_ref()) {
            Change::Settled(plan) => plan,
            Change::Grow { from, class } => {
                let found = match &class {
                    Some(name) => {
                        Api::<StorageClass>::all(self.ctx.client.clone())
                            .get_opt(name)
                            .await?
                    }
                    None => None,
                };
                storage::decide_growth(
                    from,
                    class.as_deref(),
                    found.as_ref(),
                    &self.registry.spec.storage.size.0,
                )
            }
        };
        match &plan {
            Plan::Apply { grow_from } => {
                let claim = self.apply(desired).await?;
                if let Some(from) = grow_from {
                    self.event(
                        EventType::Normal,
                        "Resizing",
                        format!(
                            "growing PersistentVolumeClaim {} from {from} to {}",
                            names::data(self.registry),
                            self.registry.spec.storage.size.0
                        ),
                    )
                    .await;
                }
                Ok((Some(claim), plan))
            }
            Plan::Refuse { .. } => Ok((existing, plan)),
        }
    }

    fn hosting(&self) -> Hosting<'_> {
        Hosting::new(
            self.ctx.client.clone(),
            self.registry,
            &self.namespace,
            &self.name,
        )
    }

    /// Publishes the KEP-1755 ConfigMap, unless another Registry (or another
    /// tool) already did, which a Warning event says.
    async fn publish_hosting(&self, hosting: ConfigMap) -> Result<(), Stop> {
        match self.hosting().taken_by().await? {
            Some(holder) => {
                self.event(
                    EventType::Warning,
                    "LocalRegistryHostingTaken",
                    format!(
                        "{}/{} is published by {holder}; this Registry is not advertised there",
                        configmap::NAMESPACE,
                        configmap::NAME
                    ),
                )
                .await
            }
            None => {
                self.apply(hosting).await?;
            }
        }
        Ok(())
    }

    /// Server-side apply of one child; remembers it when it is new.
    async fn apply<K>(&self, object: K) -> Result<K, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let name = object
            .meta()
            .name
            .clone()
            .ok_or(Error::MissingField("child name"))?;
        let namespace = object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| self.namespace.clone());
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let existed = api.get_metadata_opt(&name).await?.is_some();
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        if !existed {
            self.created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{} {name}", K::kind(&())));
        }
        Ok(applied)
    }

    /// Applies an optional child the spec turns on, or deletes it (`name`) when
    /// the spec turns it off.
    async fn apply_or_delete<K>(&self, wanted: Option<K>, name: &str) -> Result<(), Stop>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        match wanted {
            Some(object) => {
                self.apply(object).await?;
            }
            None => self.delete_owned::<K>(name).await?,
        }
        Ok(())
    }

    /// Deletes a child the spec turned off, if it is there and ours.
    async fn delete_owned<K>(&self, name: &str) -> Result<(), Stop>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let Some(existing) = api.get_metadata_opt(name).await? else {
            return Ok(());
        };
        let ours = existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == self.uid);
        if ours {
            api.delete(name, &DeleteParams::default()).await?;
            self.event(
                EventType::Normal,
                "Deleted",
                format!("deleted {} {name}, which the spec turned off", K::kind(&())),
            )
            .await;
        }
        Ok(())
    }

    /// Publishes the Warning of a Degraded that is news, and writes the status
    /// through the status subresource.
    async fn write_status(&self, report: Report) -> Result<(), Error> {
        if let Some(degraded) = report.warning {
            self.event(EventType::Warning, &degraded.reason, degraded.message)
                .await;
        }
        let registries: Api<Registry> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "status": report.status,
        });
        registries
            .patch_status(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }

    /// One Created event listing the children this pass made.
    async fn announce(&self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        if !created.is_empty() {
            self.event(
                EventType::Normal,
                "Created",
                format!("created {}", created.join(", ")),
            )
            .await;
        }
    }

    /// Publishes an event on the Registry. Events are advice: a failure to
    /// publish one is logged and does not fail the pass.
    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self
            .ctx
            .recorder
            .publish(&event, &self.registry.object_ref(&()))
            .await
        {
            warn!(registry = %self.name, namespace = %self.namespace, %error, "cannot publish an event");
        }
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// An event note may hold at most 1 kB.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    //! The reconcile loop against the mock API server of fixtures.rs, one named
    //! scenario per test.

    use super::*;
    use crate::operator::crd::RegistrySpec;
    use crate::operator::fixtures::{
        self, Scenario, alice, condition, context, current, default_children, edit, fresh, get,
        owner_uid, pass, path, status_of,
    };
    use crate::operator::resources::deployment::HTPASSWD_HASH_ANNOTATION;
    use crate::operator::status::{DEGRADED, PROGRESSING, READY, STORAGE_READY};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[tokio::test]
    async fn first_apply_creates_every_child() {
        let (ctx, cluster, registry) = fresh();
        assert_eq!(pass(&ctx, registry).await, Action::requeue(RESYNC));

        for child in default_children() {
            let object = get(&cluster, &child).unwrap_or_else(|| panic!("{child} missing"));
            let labels = &object["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/instance"], "cache", "{child}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "berth-operator");
            let owned = !child.contains("persistentvolumeclaims") && !child.contains("kube-public");
            assert_eq!(owner_uid(&object) == Some(fixtures::UID), owned, "{child}");
        }
        let events = cluster.lock().unwrap().events.clone();
        assert!(events.contains(&"Created".to_string()), "{events:?}");
        // Secrets first: the pods mount them.
        {
            let c = cluster.lock().unwrap();
            let apply =
                |api, plural, name| c.position(0, &format!("PATCH {}", path(api, plural, name)));
            let deployment = apply("apps/v1", "deployments", "cache");
            for secret in ["cache-htpasswd", "cache-admin"] {
                assert!(apply("v1", "secrets", secret) < deployment, "{secret}");
            }
        }

        let admin = get(&cluster, &path("v1", "secrets", "cache-admin")).unwrap();
        let token = admin["data"]["token"].as_str().unwrap();
        assert_eq!(token.len(), 88, "64 hex characters, base64-encoded");

        let registry = status_of(&cluster);
        let status = registry.status.clone().unwrap();
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.ready_replicas, 1);
        assert_eq!(
            status.endpoints.cluster_network.as_deref(),
            Some("cache.dev.svc:5000")
        );
        assert_eq!(status.endpoints.node.as_deref(), Some("localhost:32000"));
        assert_eq!(status.endpoints.external, None);
        assert_eq!(status.storage_size.as_deref(), Some("20Gi"));
        assert_eq!(status.image.as_deref(), Some("ghcr.io/berth/berth:test"));
        for (type_, want) in [
            (READY, "True"),
            (PROGRESSING, "False"),
            (DEGRADED, "False"),
            (STORAGE_READY, "True"),
        ] {
            assert_eq!(condition(&registry, type_).unwrap().status, want, "{type_}");
        }
    }

    /// The Ready and Progressing conditions after a pass, as (status, reason, message).
    fn why(cluster: &std::sync::Mutex<fixtures::Cluster>) -> [(String, String, String); 2] {
        let registry = status_of(cluster);
        [READY, PROGRESSING].map(|type_| {
            let c = condition(&registry, type_).unwrap();
            (c.status.clone(), c.reason.clone(), c.message.clone())
        })
    }

    #[tokio::test]
    async fn a_crash_looping_registry_says_why_in_ready() {
        let (ctx, cluster) = context(Scenario::Existing {
            spec: RegistrySpec::default(),
            claim_size: "20Gi".into(),
        });
        cluster.lock().unwrap().stalled = true;
        fixtures::registry_pod(
            &cluster,
            "cache-7d9f-abcde",
            serde_json::json!({
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{
                    "name": "registry", "ready": false, "restartCount": 4,
                    "image": "berth:1", "imageID": "", "started": false,
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                        "message": "back-off 1m20s restarting failed container=registry"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                        "message": "Error: cannot open the data folder /var/lib/registry: storage: Permission denied (os error 13)\n"}}
                }]
            }),
        );
        // A GC Job's pod that cannot pull is not the registry's trouble: the
        // pods are picked by the registry's labels.
        cluster.lock().unwrap().insert(
            path("v1", "pods", "cache-gc-1234"),
            serde_json::json!({"metadata": {"name": "cache-gc-1234", "namespace": "dev",
                "labels": {"app.kubernetes.io/name": "berth-gc", "app.kubernetes.io/instance": "cache"}},
                "status": {"containerStatuses": [{"name": "gc", "ready": false, "restartCount": 0,
                    "image": "x", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
        );

        let action = pass(&ctx, current(&cluster)).await;
        // Pod trouble changes no Deployment status: the operator looks again soon.
        assert_eq!(action, Action::requeue(NOT_READY_RESYNC));
        let [ready, progressing] = why(&cluster);
        assert_eq!(
            (ready.0.as_str(), ready.1.as_str()),
            ("False", "CrashLoopBackOff")
        );
        for part in [
            "0/1 pods ready",
            "container registry of pod cache-7d9f-abcde",
            "exited with code 1",
            "cannot open the data folder /var/lib/registry: storage: Permission denied",
            "restarted 4 times",
        ] {
            assert!(ready.2.contains(part), "{part:?} not in {:?}", ready.2);
        }
        assert_eq!(
            (progressing.0.as_str(), progressing.1.as_str()),
            ("True", "CrashLoopBackOff")
        );
        assert_eq!(progressing.2, ready.2);
        // The pods were read, in the Registry's namespace.
        let c = cluster.lock().unwrap();
        let listed = c.log.iter().any(|l| l == "GET /api/v1/namespaces/dev/pods");
        assert!(listed, "{:?}", c.log);
    }

    #[tokio::test]
    async fn an_unbound_claim_is_the_reason_before_the_pod() {
        let (ctx, cluster) = context(Scenario::Fresh(RegistrySpec::default()));
        cluster.lock().unwrap().stalled = true;
        fixtures::registry_pod(
            &cluster,
            "cache-7d9f-abcde",
            serde_json::json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."}]
            }),
        );
        pass(&ctx, current(&cluster)).await;
        let [ready, progressing] = why(&cluster);
        assert_eq!(
            (ready.0.as_str(), ready.1.as_str()),
            ("False", "ClaimPending")
        );
        assert!(
            ready.2.contains("the volume claim cache-data is Pending"),
            "{}",
            ready.2
        );
        assert_eq!(progressing.1, "ClaimPending");
        let registry = status_of(&cluster);
        assert_eq!(condition(&registry, STORAGE_READY).unwrap().status, "False");

        // Once the claim is bound, the scheduler's word is what is left.
        {
            let mut c = cluster.lock().unwrap();
            let claim = path("v1", "persistentvolumeclaims", "cache-data");
            let mut bound = c.get(&claim).unwrap().clone();
            bound["status"] =
                serde_json::json!({"phase": "Bound", "capacity": {"storage": "20Gi"}});
            c.insert(claim, bound);
        }
        pass(&ctx, current(&cluster)).await;
        let [ready, _] = why(&cluster);
        assert_eq!(ready.1, "Unschedulable");
        assert!(
            ready
                .2
                .contains("pod cache-7d9f-abcde cannot be scheduled: 0/1 nodes"),
            "{}",
            ready.2
        );
    }

    #[tokio::test]
    async fn a_second_pass_changes_nothing() {
        let (ctx, cluster, registry) = fresh();
        pass(&ctx, registry).await;
        let before = cluster.lock().unwrap().objects.clone();
        let events_before = cluster.lock().unwrap().events.len();
        pass(&ctx, current(&cluster)).await;
        let c = cluster.lock().unwrap();
        for child in default_children() {
            let (old, new) = (&before[&child], &c.objects[&child]);
            assert_eq!(old["data"], new["data"], "{child}");
            assert_eq!(old["spec"], new["spec"], "{child}");
        }
        let old_ready = &before[&fixtures::registry_path()]["status"]["conditions"];
        let new_ready = &c.objects[&fixtures::registry_path()]["status"]["conditions"];
        assert_eq!(
            old_ready, new_ready,
            "the same conditions, with the same times"
        );
        assert_eq!(c.events.len(), events_before, "no event: nothing happened");
    }

    #[tokio::test]
    async fn growth_needs_a_storage_class_that_expands() {
        let mut spec = RegistrySpec::default();
        spec.storage.size = Quantity("40Gi".into());
        let (ctx, cluster) = context(Scenario::Existing {
            spec,
            claim_size: "20Gi".into(),
        });
        pass(&ctx, current(&cluster)).await;
        let registry = status_of(&cluster);
        let storage = condition(&registry, STORAGE_READY).unwrap();
        assert_eq!(storage.reason, "ExpansionNotSupported");
        assert!(
            storage.message.contains("StorageClass standard"),
            "{}",
            storage.message
        );

        // Once the class allows it, the claim grows and a Resizing event says so.
        cluster
            .lock()
            .unwrap()
            .objects
            .get_mut("/apis/storage.k8s.io/v1/storageclasses/standard")
            .unwrap()["allowVolumeExpansion"] = true.into();
        pass(&ctx, current(&cluster)).await;
        let c = cluster.lock().unwrap();
        let claim = &c.objects[&path("v1", "persistentvolumeclaims", "cache-data")];
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "40Gi");
        assert!(c.events.contains(&"Resizing".to_string()));
    }

    #[tokio::test]
    async fn the_node_config_daemonset_comes_and_goes_with_the_spec() {
        let (ctx, cluster, registry) = fresh();
        let daemonset = path("apps/v1", "daemonsets", "cache-node-config");
        pass(&ctx, registry).await;
        assert!(get(&cluster, &daemonset).is_none(), "off by default");

        edit(&cluster, |s| s.node_config.containerd = true);
        pass(&ctx, current(&cluster)).await;
        let applied = get(&cluster, &daemonset).expect("the DaemonSet");
        assert_eq!(owner_uid(&applied), Some(fixtures::UID));
        let pod = &applied["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["hostPath"]["path"],
            "/etc/containerd/certs.d"
        );
        assert_eq!(pod["containers"][0]["image"], "ghcr.io/berth/berth:test");

        edit(&cluster, |s| s.node_config.containerd = false);
        pass(&ctx, current(&cluster)).await;
        assert!(
            get(&cluster, &daemonset).is_none(),
            "deleted when turned off"
        );
    }

    #[tokio::test]
    async fn a_deleted_child_is_applied_again() {
        let (ctx, cluster, registry) = fresh();
        pass(&ctx, registry).await;
        let deployment = path("apps/v1", "deployments", "cache");
        cluster.lock().unwrap().objects.remove(&deployment);
        let created_before = cluster
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| *e == "Created")
            .count();

        pass(&ctx, current(&cluster)).await;
        let c = cluster.lock().unwrap();
        assert!(
            c.objects.contains_key(&deployment),
            "the Deployment is back"
        );
        let created_after = c.events.iter().filter(|e| *e == "Created").count();
        assert_eq!(created_after, created_before + 1);
    }

    #[tokio::test]
    async fn turned_off_children_are_deleted() {
        let (ctx, cluster, registry) = fresh();
        pass(&ctx, registry).await;
        edit(&cluster, |s| {
            s.service.node_port = None;
            s.gc.enabled = false;
        });
        pass(&ctx, current(&cluster)).await;
        {
            let c = cluster.lock().unwrap();
            assert!(
                !c.objects
                    .contains_key(&path("v1", "services", "cache-nodeport"))
            );
            assert!(
                !c.objects
                    .contains_key(&path("batch/v1", "cronjobs", "cache-gc"))
            );
            assert!(c.objects.contains_key(&path("v1", "services", "cache")));
            assert!(c.events.contains(&"Deleted".to_string()));
        }
        assert_eq!(status_of(&cluster).status.unwrap().endpoints.node, None);
    }

    #[tokio::test]
    async fn users_become_htpasswd_lines_and_a_pod_annotation() {
        let (ctx, cluster) = context(Scenario::Fresh(alice()));
        let registry = current(&cluster);

        // The password Secret is missing: Degraded, nothing applied.
        pass(&ctx, registry.clone()).await;
        assert_eq!(
            condition(&status_of(&cluster), DEGRADED).unwrap().reason,
            "AuthSecretMissing"
        );

        cluster.lock().unwrap().insert(
            path("v1", "secrets", "alice-pw"),
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "alice-pw", "namespace": "dev"},
                "data": {"password": "czNjcmV0Cg=="}}), // "s3cret\n"
        );
        pass(&ctx, current(&cluster)).await;
        let secret: Secret = serde_json::from_value(
            get(&cluster, &path("v1", "secrets", "cache-htpasswd")).unwrap(),
        )
        .unwrap();
        let file = secret::value(&secret, HTPASSWD_KEY).unwrap().to_string();
        let (user, hash) = file.trim_end().split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(bcrypt::verify("s3cret", hash).unwrap());

        let deployment = get(&cluster, &path("apps/v1", "deployments", "cache")).unwrap();
        let annotation =
            &deployment["spec"]["template"]["metadata"]["annotations"][HTPASSWD_HASH_ANNOTATION];
        use sha2::Digest;
        assert_eq!(
            annotation.as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(file.as_bytes()))
        );
        assert_eq!(
            condition(&status_of(&cluster), DEGRADED).unwrap().status,
            "False"
        );
    }

    #[tokio::test]
    async fn a_child_the_api_server_refuses_gives_degraded_not_a_retry_loop() {
        let (ctx, cluster, registry) = fresh();
        cluster.lock().unwrap().refuse = Some((
            "/apis/batch/v1".into(),
            http::StatusCode::UNPROCESSABLE_ENTITY,
        ));
        assert_eq!(pass(&ctx, registry).await, Action::requeue(INVALID_RETRY));
        let registry = status_of(&cluster);
        let degraded = condition(&registry, DEGRADED).unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "Rejected")
        );
        assert!(
            degraded.message.contains("cronjobs"),
            "{}",
            degraded.message
        );
    }

    #[tokio::test]
    async fn an_api_failure_is_retried_and_counted() {
        let (ctx, cluster, registry) = fresh();
        cluster.lock().unwrap().refuse =
            Some(("/apis/apps/v1".into(), http::StatusCode::FORBIDDEN));
        let error = reconcile(registry.clone(), ctx.clone()).await.unwrap_err();
        assert_eq!(error.kind(), "api");
        assert_eq!(
            error_policy(registry, &error, ctx.clone()),
            Action::requeue(ERROR_RETRY)
        );
        let metrics = ctx.metrics.encode();
        assert!(
            metrics.contains("berth_operator_reconcile_failures_total{error=\"api\"} 1"),
            "{metrics}"
        );
        assert!(
            cluster
                .lock()
                .unwrap()
                .events
                .contains(&"ReconcileFailed".to_string())
        );
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("hello".into(), 10), "hello");
    }
}
