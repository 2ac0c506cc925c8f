//! `berth disable`: removes the Registry, then the operator, and keeps the two
//! things whose loss cannot be undone unless `--purge` says otherwise:
//!
//! - the images' volume (PersistentVolumeClaim `NAME-data`), which the operator
//!   never deletes with a Registry unless its deletePolicy says so;
//! - the CRD, because deleting it deletes every Registry of the cluster.
//!
//! `--purge` (after a prompt, or `--yes`) deletes the volume, the namespace if
//! `berth enable` created it (else only what enable created in it), and the CRD
//! when no other Registry is left. The operator itself stays while another
//! Registry still needs it.
//!
//! The Registry goes first, while the operator runs: it carries a finalizer the
//! operator removes after taking down the kube-public ConfigMap it published.
//! When no operator is running to do that, disable does it itself.
//!
//! It returns once the namespaces it deleted are gone, not when they begin to
//! terminate: until then nothing can be created in them, and a `berth enable`
//! right after would be refused.

use super::enable::{DEFAULT_NAME, DEFAULT_NAMESPACE};
use super::objects::{self, OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE, Object};
use super::progress::Progress;
use super::{
    CREATED_BY_LABEL, FIELD_MANAGER, InstallError, get_opt, is_not_found, kube_error, wait,
};
use crate::image::DEFAULT_IMAGE;
use crate::operator::Registry;
use crate::operator::hosting::FINALIZER;
use crate::operator::resources::configmap;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct DisableArgs {
    /// Namespace of the Registry
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name of the Registry
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Also delete the images' volume, the namespace berth enable made, and the CRD
    #[arg(long)]
    pub purge: bool,
    /// Purge without asking
    #[arg(long, short = 'y', requires = "purge")]
    pub yes: bool,
    /// How long to wait for each deletion: the operator letting the Registry
    /// go, a namespace emptied and gone
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl DisableArgs {
    /// The flags' defaults, for tests and library callers.
    pub fn new() -> DisableArgs {
        DisableArgs {
            namespace: DEFAULT_NAMESPACE.into(),
            name: DEFAULT_NAME.into(),
            purge: false,
            yes: false,
            timeout: Duration::from_secs(120),
        }
    }
}

impl Default for DisableArgs {
    fn default() -> Self {
        DisableArgs::new()
    }
}

/// What `berth disable` did and kept, for the closing message.
#[derive(Debug, Clone, Default)]
pub struct Disabled {
    pub lines: Vec<String>,
}

impl fmt::Display for Disabled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Runs `berth disable`. `confirm` asks the user (the question as argument)
/// before a purge without `--yes`.
pub async fn disable(
    client: &Client,
    args: &DisableArgs,
    progress: &mut dyn Progress,
    poll: Duration,
    confirm: &mut dyn FnMut(&str) -> bool,
) -> Result<Disabled, InstallError> {
    let (ns, name) = (args.namespace.as_str(), args.name.as_str());
    let claim = format!("{name}-data");
    let namespace_is_ours = get_opt(&Api::<Namespace>::all(client.clone()), ns)
        .await
        .map_err(kube_error("read the namespace"))?
        .is_some_and(|n| created_by_us(&n));
    if args.purge && !args.yes {
        let namespace = if namespace_is_ours {
            format!(", namespace {ns} with everything in it")
        } else {
            String::new()
        };
        let question = format!(
            "Delete PersistentVolumeClaim {ns}/{claim} and every image in it{namespace}, \
             and the Registry CRD if no other Registry uses it?"
        );
        if !confirm(&question) {
            return Err(InstallError::NotConfirmed);
        }
    }

    let mut report = Disabled::default();
    let registries: Api<Registry> = Api::namespaced(client.clone(), ns);
    // The bucket of a Registry on an object store, whose images stay there.
    let mut bucket = None;
    // Without the CRD the Registry kind is unknown (a plain 404): no Registry.
    match get_opt(&registries, name)
        .await
        .map_err(kube_error("read the Registry"))?
    {
        Some(registry) => {
            bucket = crate::operator::bucket::of(&registry.spec.storage).map(|b| b.config.url);
            delete(&registries, name, "delete the Registry").await?;
            let deadline = Instant::now() + args.timeout;
            wait_until_gone(client, &registries, &registry, progress, poll, deadline).await?;
            progress.done(&format!("Registry {ns}/{name} deleted"));
            report.lines.push(format!("Registry {ns}/{name} deleted."));
        }
        None => report.lines.push(format!("No Registry {ns}/{name}.")),
    }

    let others = other_registries(client).await?;
    // The objects of install.yaml, last applied first.
    let install: Vec<Object> = objects::objects(DEFAULT_IMAGE)?.into_iter().rev().collect();
    // Namespaces deleted, waited for at the end: until one is gone, nothing can
    // be created in it, so a `berth enable` right after would fail.
    let mut deleted_namespaces = Vec::new();
    if others.is_empty() {
        deleted_namespaces.push(OPERATOR_NAMESPACE.to_string());
        for object in install.iter().filter(|o| !o.is_crd()) {
            delete(
                &object.api(client),
                &object.name,
                format!("delete {} {}", object.kind(), object.name),
            )
            .await?;
        }
        progress.done("operator removed");
        report.lines.push(format!(
            "The operator is removed (namespace {OPERATOR_NAMESPACE} and its cluster role)."
        ));
    } else {
        report.lines.push(format!(
            "The operator stays: Registries {} still use it.",
            others.join(", ")
        ));
    }

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim_exists = get_opt(&claims, &claim)
        .await
        .map_err(kube_error("read the volume claim"))?
        .is_some();
    if let Some(url) = &bucket {
        report.lines.push(format!(
            "The images in {url} are kept: berth disable never deletes what is in a bucket \
             (the store's own tools can)."
        ));
    }
    if args.purge {
        purge_namespace(
            client,
            ns,
            &claim,
            claim_exists,
            namespace_is_ours,
            &mut report,
        )
        .await?;
        if namespace_is_ours {
            deleted_namespaces.push(ns.to_string());
        }
        if others.is_empty() {
            for crd in install.iter().filter(|o| o.is_crd()) {
                delete(&crd.api(client), &crd.name, "delete the CRD").await?;
            }
            report
                .lines
                .push(format!("CRD {} deleted.", Registry::crd_name()));
        } else {
            report.lines.push(format!(
                "The CRD {} stays: other Registries are defined by it.",
                Registry::crd_name()
            ));
        }
    } else {
        if claim_exists {
            report.lines.push(format!(
                "The images' volume is kept: PersistentVolumeClaim {ns}/{claim}. \
                 `berth enable` uses it again; to delete it and every image in it: \
                 kubectl -n {ns} delete pvc {claim} (or berth disable --purge)."
            ));
        }
        report.lines.push(format!(
            "The CRD {crd} is kept (deleting it would delete every Registry in the cluster): \
             kubectl delete crd {crd}",
            crd = Registry::crd_name()
        ));
    }

    let deadline = Instant::now() + args.timeout;
    for namespace in &deleted_namespaces {
        let why = "waiting for it to be gone, so that berth enable can install in it again";
        if wait::namespace_deleted(client, namespace, why, progress, poll, deadline).await? {
            progress.done(&format!("namespace {namespace} deleted"));
        }
    }
    Ok(report)
}

fn created_by_us(object: &impl ResourceExt) -> bool {
    object.labels().get(CREATED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER)
}

/// Deletes an object; one that is not there is fine.
async fn delete<K>(api: &Api<K>, name: &str, action: impl Into<String>) -> Result<(), InstallError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(kube_error(action)(error)),
    }
}

/// Waits for the deleted Registry to be gone. Without a running operator to
/// drop its finalizer, does the operator's part: unpublish the kube-public
/// ConfigMap, remove the finalizer.
async fn wait_until_gone(
    client: &Client,
    registries: &Api<Registry>,
    registry: &Registry,
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
) -> Result<(), InstallError> {
    let name = registry.name_any();
    loop {
        let Some(current) = get_opt(registries, &name)
            .await
            .map_err(kube_error("read the Registry"))?
        else {
            return Ok(());
        };
        let past = Instant::now() + poll > deadline;
        if !current.finalizers().is_empty() && (past || !operator_running(client).await?) {
            match release(client, registries, &current).await {
                // Changed meanwhile (the operator wrote a status): read it again.
                Err(InstallError::Kube {
                    error: kube::Error::Api(status),
                    ..
                }) if status.code == 409 => {}
                result => result?,
            }
            continue;
        }
        if past {
            return Err(InstallError::Timeout(format!(
                "Registry {name} to be deleted"
            )));
        }
        progress.waiting(&format!(
            "waiting for the operator to let Registry {name} go"
        ));
        tokio::time::sleep(poll).await;
    }
}

async fn operator_running(client: &Client) -> Result<bool, InstallError> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let deployment = get_opt(&deployments, OPERATOR_DEPLOYMENT)
        .await
        .map_err(kube_error("read the operator's Deployment"))?;
    Ok(deployment
        .and_then(|d| d.status?.ready_replicas)
        .is_some_and(|ready| ready > 0))
}

/// The operator's clean-up of a deleted Registry, done here.
async fn release(
    client: &Client,
    registries: &Api<Registry>,
    registry: &Registry,
) -> Result<(), InstallError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), configmap::NAMESPACE);
    if let Some(published) = get_opt(&configmaps, configmap::NAME)
        .await
        .map_err(kube_error("read the local-registry-hosting ConfigMap"))?
        && configmap::published_by(&published, registry)
    {
        delete(
            &configmaps,
            configmap::NAME,
            "delete the local-registry-hosting ConfigMap",
        )
        .await?;
    }
    let finalizers: Vec<&String> = registry
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": registry.resource_version(),
    }});
    registries
        .patch(
            &registry.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(kube_error("remove the Registry's finalizer"))?;
    Ok(())
}

/// `NS/NAME` of every Registry left in the cluster.
async fn other_registries(client: &Client) -> Result<Vec<String>, InstallError> {
    match Api::<Registry>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list
            .items
            .iter()
            .map(|r| format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()))
            .collect()),
        // No CRD, no Registry.
        Err(error) if is_not_found(&error) => Ok(Vec::new()),
        Err(error) => Err(kube_error("list the Registries")(error)),
    }
}

/// Deletes the volume, and the namespace when `berth enable` made it; else only
/// the password Secrets enable made there.
async fn purge_namespace(
    client: &Client,
    ns: &str,
    claim: &str,
    claim_exists: bool,
    namespace_is_ours: bool,
    report: &mut Disabled,
) -> Result<(), InstallError> {
    if claim_exists {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        delete(&claims, claim, "delete the volume claim").await?;
        report.lines.push(format!(
            "PersistentVolumeClaim {ns}/{claim} deleted, and the images with it."
        ));
    }
    if namespace_is_ours {
        delete(
            &Api::<Namespace>::all(client.clone()),
            ns,
            "delete the namespace",
        )
        .await?;
        report.lines.push(format!("Namespace {ns} deleted."));
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let ours = secrets
        .list(&ListParams::default().labels(&format!("{CREATED_BY_LABEL}={FIELD_MANAGER}")))
        .await
        .map_err(kube_error("list the password Secrets"))?;
    for secret in ours.items.iter().filter(|s| created_by_us(*s)) {
        delete(&secrets, &secret.name_any(), "delete a password Secret").await?;
        report
            .lines
            .push(format!("Secret {ns}/{} deleted.", secret.name_any()));
    }
    Ok(())
}
