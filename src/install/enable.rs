//! `berth enable`: one command from an empty cluster to a registry every node
//! pulls from at `localhost:32000`, as `microk8s enable registry` does.
//!
//! 1. Decide, before anything is written (plan.rs): the size (at least 20Gi, never less
//!    than the Registry already asks for), the StorageClass (it must exist; none
//!    named means the cluster's default, which must exist too), the node port,
//!    the user. A refusal says why and changes nothing.
//! 2. Wait for a namespace still being deleted (a `berth disable` just before),
//!    apply install.yaml's objects (the CRD and the operator), wait for the CRD.
//! 3. Create the Registry's namespace and the user's password Secret when they
//!    are missing, then apply the Registry.
//! 4. Wait for the operator's pod, then for the Registry to be Ready, showing
//!    what it waits for; then say how to push and how to pull from a pod.
//!
//! Running it again is safe: what a flag does not say is kept from the Registry
//! as it is (a size, a class, a user, the node config), so `berth enable --size
//! 60Gi` grows the volume and changes nothing else.

use super::objects::{self, OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE, Object};
use super::plan::{password_secret, plan};
use super::progress::Progress;
use super::wait::{self, Look, wait_until};
use super::{
    CREATED_BY_LABEL, FIELD_MANAGER, InstallError, get_opt, is_namespace_terminating, kube_error,
};
use crate::operator::crd::{DEFAULT_NODE_PORT, Registry};
use crate::operator::status::{READY, STORAGE_READY};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

pub use super::plan::{DEFAULT_NAME, DEFAULT_NAMESPACE, EnableArgs, MIN_SIZE, PASSWORD_KEY};

/// What `berth enable` did, for the closing message.
#[derive(Debug, Clone)]
pub struct Enabled {
    pub registry: Registry,
    /// Whether it waited for (and saw) the Registry Ready.
    pub ready: bool,
    pub login: Option<Login>,
    /// A warning about the volume (e.g. its class cannot grow it).
    pub storage_note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub secret: String,
    /// The password, when this run generated it (it is shown once).
    pub new_password: Option<String>,
}

/// Runs `berth enable`; `poll` is how often it looks while waiting.
pub async fn enable(
    client: &Client,
    args: &EnableArgs,
    progress: &mut dyn Progress,
    poll: Duration,
) -> Result<Enabled, InstallError> {
    let registries: Api<Registry> = Api::namespaced(client.clone(), &args.namespace);
    // On a cluster without berth the Registry kind itself is unknown: no Registry.
    let existing = get_opt(&registries, &args.name)
        .await
        .map_err(kube_error("read the Registry"))?;
    let plan = plan(client, args, existing.as_ref()).await?;
    let install = objects::objects(&args.image)?;
    let deadline = Instant::now() + args.timeout;

    // Right after `berth disable` a namespace may still be going away, and
    // nothing can be created in it until it is gone.
    for namespace in namespaces_used(args) {
        if wait::namespace_deleted(
            client,
            namespace,
            "waiting for it to be gone before installing in it",
            progress,
            poll,
            deadline,
        )
        .await?
        {
            progress.done(&format!("namespace {namespace} deleted; installing"));
        }
    }

    progress.waiting("applying the CRD and the operator");
    apply_install(client, &install, progress, poll, deadline).await?;
    wait_for_crd(client, progress, poll, deadline, &install).await?;
    progress.done(&format!(
        "CRD and operator applied (namespace {OPERATOR_NAMESPACE}, image {})",
        args.image
    ));

    ensure_namespace(client, &args.namespace, progress, poll, deadline).await?;
    let login = match &plan.user {
        Some(user) => Some(ensure_password(client, args, user).await?),
        None => None,
    };
    let mut registry = plan.registry;
    apply_registry(client, &registry).await?;
    progress.done(&format!(
        "Registry {}/{} applied ({})",
        args.namespace, args.name, registry.spec.storage.size.0
    ));
    if args.no_wait {
        return Ok(Enabled {
            registry,
            ready: false,
            login,
            storage_note: None,
        });
    }

    wait_for_operator(client, progress, poll, deadline).await?;
    registry = wait_for_registry(&registries, &args.name, progress, poll, deadline).await?;
    let storage_note = registry
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == STORAGE_READY && c.status != "True")
        .map(|c| format!("{}: {}", c.reason, c.message));
    Ok(Enabled {
        registry,
        ready: true,
        login,
        storage_note,
    })
}

/// The namespaces enable writes in: the operator's, and the Registry's.
fn namespaces_used(args: &EnableArgs) -> Vec<&str> {
    let mut namespaces = vec![OPERATOR_NAMESPACE, args.namespace.as_str()];
    namespaces.dedup();
    namespaces
}

/// Applies install.yaml's objects in their order. A namespace that began to be
/// deleted after enable looked (a `berth disable` still running) refuses new
/// content with a 403: then wait for it to be gone, and apply all again, the
/// namespace first.
async fn apply_install(
    client: &Client,
    install: &[Object],
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
) -> Result<(), InstallError> {
    'again: loop {
        for object in install {
            let applied = object
                .api(client)
                .patch(
                    &object.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&object.body),
                )
                .await;
            match (applied, &object.namespace) {
                (Ok(_), _) => {}
                (Err(error), Some(namespace)) if is_namespace_terminating(&error) => {
                    wait::namespace_deleted(
                        client,
                        namespace,
                        "waiting for it to be gone, then applying again",
                        progress,
                        poll,
                        deadline,
                    )
                    .await?;
                    continue 'again;
                }
                (Err(error), _) => {
                    return Err(kube_error(format!(
                        "apply {} {}",
                        object.kind(),
                        object.name
                    ))(error));
                }
            }
        }
        return Ok(());
    }
}

async fn wait_for_crd(
    client: &Client,
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
    install: &[Object],
) -> Result<(), InstallError> {
    if !install.iter().any(Object::is_crd) {
        return Ok(());
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let what = format!("the CRD {} to be established", Registry::crd_name());
    wait_until(progress, poll, deadline, async || {
        let crd = get_opt(&crds, Registry::crd_name())
            .await
            .map_err(kube_error("read the CRD"))?;
        let established = crd
            .and_then(|c| c.status?.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(match established {
            true => Look::Ready(()),
            false => Look::Waiting {
                progress: format!("waiting for {what}"),
                timeout: what.clone(),
            },
        })
    })
    .await
}

/// Creates the namespace unless it exists, marked as ours so that `disable
/// --purge` deletes only a namespace `enable` made. One being deleted is waited
/// for first: nothing could be created in it.
async fn ensure_namespace(
    client: &Client,
    name: &str,
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
) -> Result<(), InstallError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let why = "waiting for it to be gone before making it again";
    wait::namespace_deleted(client, name, why, progress, poll, deadline).await?;
    if get_opt(&namespaces, name)
        .await
        .map_err(kube_error("read the namespace"))?
        .is_some()
    {
        return Ok(());
    }
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {CREATED_BY_LABEL: FIELD_MANAGER}},
    }))
    .expect("a Namespace");
    match namespaces.create(&PostParams::default(), &namespace).await {
        // Made by someone else between the read and the create: it is there.
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
        result => result
            .map(|_| ())
            .map_err(kube_error(format!("create namespace {name}"))),
    }
}

/// The user's password Secret: kept when it exists (its password is not shown
/// again), else created with a new random password.
async fn ensure_password(
    client: &Client,
    args: &EnableArgs,
    user: &str,
) -> Result<Login, InstallError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &args.namespace);
    let name = password_secret(&args.name, user);
    let login = |new_password| Login {
        user: user.to_string(),
        secret: name.clone(),
        new_password,
    };
    if get_opt(&secrets, &name)
        .await
        .map_err(kube_error("read the password Secret"))?
        .is_some()
    {
        return Ok(login(None));
    }
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| InstallError::Random(e.to_string()))?;
    let password = hex::encode(bytes);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": args.namespace,
                     "labels": {CREATED_BY_LABEL: FIELD_MANAGER}},
        "type": "Opaque",
        "stringData": {PASSWORD_KEY: password},
    }))
    .expect("a Secret");
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(login(Some(password))),
        // Another enable made it meanwhile: its password stands, unseen here.
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(login(None)),
        Err(error) => Err(kube_error(format!("create Secret {name}"))(error)),
    }
}

/// Applies the fields `berth enable` owns, and only those: whatever else someone
/// set on the Registry (an Ingress, GC settings) stays theirs.
async fn apply_registry(client: &Client, registry: &Registry) -> Result<(), InstallError> {
    let spec = &registry.spec;
    let mut storage = json!({"size": spec.storage.size});
    if let Some(class) = &spec.storage.storage_class_name {
        storage["storageClassName"] = class.clone().into();
    }
    let mut body = json!({
        "apiVersion": crate::operator::crd::API_VERSION,
        "kind": crate::operator::crd::KIND,
        "metadata": {"name": registry.name_any(), "namespace": registry.namespace()},
        "spec": {"storage": storage, "service": {"nodePort": spec.service.node_port}},
    });
    if !spec.auth.users.is_empty() {
        body["spec"]["auth"] = json!({"users": spec.auth.users});
    }
    // Left out when it is the default, so the command owns no field it was not asked about.
    if spec.node_config != Default::default() {
        body["spec"]["nodeConfig"] = json!(spec.node_config);
    }
    // The whole list: it holds the Registry's upstreams with the flags' added.
    if !spec.proxy.upstreams.is_empty() {
        body["spec"]["proxy"] = json!(spec.proxy);
    }
    let namespace = registry.namespace().unwrap_or_default();
    Api::<Registry>::namespaced(client.clone(), &namespace)
        .patch(
            &registry.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(kube_error("apply the Registry"))?;
    Ok(())
}

async fn wait_for_operator(
    client: &Client,
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
) -> Result<(), InstallError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let what = format!("the operator (Deployment {OPERATOR_NAMESPACE}/{OPERATOR_DEPLOYMENT})");
    wait_until(progress, poll, deadline, async || {
        let deployment = get_opt(&deployments, OPERATOR_DEPLOYMENT)
            .await
            .map_err(kube_error("read the operator's Deployment"))?;
        let generation = deployment.as_ref().and_then(|d| d.metadata.generation);
        let status = deployment.and_then(|d| d.status).unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        if ready >= 1
            && status.updated_replicas.unwrap_or(0) >= 1
            && status.observed_generation >= generation
        {
            return Ok(Look::Ready(()));
        }
        Ok(Look::Waiting {
            progress: format!("waiting for {what}: {ready}/1 ready"),
            // The usual cause: the nodes do not have the image, and cannot pull it.
            timeout: format!(
                "{what}, {ready}/1 ready; if its pod cannot pull its image, load the image on \
                 the nodes (berth image export -o berth.tar, then kind load image-archive, ctr \
                 images import …) and look at kubectl -n {OPERATOR_NAMESPACE} get pods"
            ),
        })
    })
    .await?;
    progress.done("operator running");
    Ok(())
}

async fn wait_for_registry(
    registries: &Api<Registry>,
    name: &str,
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
) -> Result<Registry, InstallError> {
    let what = format!("Registry {name} to be Ready");
    let registry = wait_until(progress, poll, deadline, async || {
        let registry = get_opt(registries, name)
            .await
            .map_err(kube_error("read the Registry"))?;
        let (ready, message) = match &registry {
            None => (false, "the Registry is not there".to_string()),
            Some(r) => readiness(r),
        };
        Ok(match (ready, registry) {
            (true, Some(registry)) => Look::Ready(registry),
            _ => Look::Waiting {
                progress: format!("waiting for {what}: {message}"),
                timeout: format!("{what} ({message})"),
            },
        })
    })
    .await?;
    progress.done(&format!("Registry {name} is Ready"));
    Ok(registry)
}

/// Whether the operator has seen this generation and calls it Ready; what it
/// says either way.
fn readiness(registry: &Registry) -> (bool, String) {
    let Some(status) = registry
        .status
        .as_ref()
        .filter(|s| s.observed_generation == registry.metadata.generation)
    else {
        return (false, "the operator has not acted on it yet".into());
    };
    match status.conditions.iter().find(|c| c.type_ == READY) {
        Some(c) => (c.status == "True", c.message.clone()),
        None => (false, "no Ready condition yet".into()),
    }
}

impl fmt::Display for Enabled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.registry;
        let (name, namespace) = (r.name_any(), r.namespace().unwrap_or_default());
        let node = format!(
            "localhost:{}",
            r.spec.service.node_port.unwrap_or(DEFAULT_NODE_PORT)
        );
        let cluster = format!("{name}.{namespace}.svc:{}", r.spec.service.port);
        let state = if self.ready { "is ready" } else { "is applied" };
        writeln!(
            f,
            "\nberth {state}: Registry {namespace}/{name}, {} of storage, at {node} on every node.",
            r.spec.storage.size.0
        )?;
        if !self.ready {
            writeln!(
                f,
                "Watch it come up: kubectl -n {namespace} get reg {name} -w"
            )?;
        }
        if let Some(note) = &self.storage_note {
            writeln!(f, "Storage: {note}")?;
        }
        if let Some(login) = &self.login {
            match &login.new_password {
                Some(password) => writeln!(
                    f,
                    "\nUser {} has the password {password}\n(shown once; it is kept in Secret {namespace}/{}).",
                    login.user, login.secret
                )?,
                None => writeln!(
                    f,
                    "\nUser {}'s password is unchanged: kubectl -n {namespace} get secret {} -o jsonpath='{{.data.{PASSWORD_KEY}}}' | base64 -d",
                    login.user, login.secret
                )?,
            }
            writeln!(f, "Log in first: docker login {node} -u {}", login.user)?;
        }
        writeln!(
            f,
            "\nBrowse it: http://{node}/ (the web UI, on a node or through the port-forward below)"
        )?;
        writeln!(
            f,
            "\nPush from a node (elsewhere, first: kubectl -n {namespace} port-forward svc/{name} {port}:{svc_port}):",
            port = node.rsplit(':').next().unwrap_or_default(),
            svc_port = r.spec.service.port,
        )?;
        writeln!(
            f,
            "  docker tag app:dev {node}/app:dev && docker push {node}/app:dev"
        )?;
        writeln!(f, "  podman push --tls-verify=false app:dev {node}/app:dev")?;
        writeln!(
            f,
            "  skopeo copy --dest-tls-verify=false docker-daemon:app:dev docker://{node}/app:dev"
        )?;
        writeln!(
            f,
            "\nUse it from a pod (the node's container runtime pulls it):"
        )?;
        writeln!(f, "  kubectl run app --image={node}/app:dev")?;
        writeln!(f, "  # or in a manifest: image: {node}/app:dev")?;
        if let Some(login) = &self.login {
            writeln!(
                f,
                "  # with a pull secret: kubectl create secret docker-registry regcred --docker-server={node} --docker-username={} --docker-password=…",
                login.user
            )?;
        }
        writeln!(
            f,
            "Pods can also reach it over the cluster network at {cluster}."
        )
    }
}
