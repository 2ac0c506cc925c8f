//! `berth enable`'s flags, and what they decide with the cluster before
//! anything is written: the Registry to apply (the size, the StorageClass, the
//! node port, the users, over what the Registry already has) and the user to
//! make a password for. A refusal says why and changes nothing.

use super::{InstallError, kube_error};
use crate::image::DEFAULT_IMAGE;
use crate::operator::crd::{DEFAULT_NODE_PORT, Registry, SecretKeyRef, UpstreamSpec, User};
use crate::operator::quantity::Amount;
use crate::operator::validate;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use std::time::Duration;

/// The smallest volume `berth enable` makes: images fill less only in demos.
pub const MIN_SIZE: &str = "20Gi";
pub const DEFAULT_NAMESPACE: &str = "container-registry";
pub const DEFAULT_NAME: &str = "registry";
/// The key of a user's password in its Secret.
pub const PASSWORD_KEY: &str = "password";

#[derive(Debug, Clone, clap::Args)]
pub struct EnableArgs {
    /// Size of the images' volume (at least 20Gi; it can grow later, never shrink)
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// StorageClass of the volume (default: the cluster's default class)
    #[arg(long = "storageclass", value_name = "NAME")]
    pub storage_class: Option<String>,
    /// Namespace of the Registry
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name of the Registry
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Require logins, and create this user with a generated password (printed once)
    #[arg(long, value_name = "USER")]
    pub auth: Option<String>,
    /// Node port every node serves the registry on (30000-32767)
    #[arg(long, value_name = "PORT")]
    pub node_port: Option<i32>,
    /// Write containerd's certs.d/localhost:PORT/hosts.toml on every node (a DaemonSet),
    /// so kubelets pull from the node port over plain HTTP
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub containerd_hosts: Option<bool>,
    /// containerd's certs.d folder on the nodes, for --containerd-hosts
    /// (MicroK8s: /var/snap/microk8s/current/args/certs.d)
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<String>,
    /// Mirror an upstream registry through the registry's pull-through cache,
    /// NAME or NAME=URL (docker.io is https://registry-1.docker.io, any other
    /// name https://NAME); every node then pulls it through the cache (this
    /// turns --containerd-hosts on unless it is given false). Repeatable
    #[arg(long, value_name = "NAME[=URL]")]
    pub proxy: Vec<String>,
    /// Image of the operator and the registry (import it on the nodes first:
    /// `berth image export`)
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// How long to wait for the registry to be ready
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Apply and return at once, without waiting for the registry
    #[arg(long)]
    pub no_wait: bool,
}

impl EnableArgs {
    /// The flags' defaults, for tests and library callers.
    pub fn new() -> EnableArgs {
        EnableArgs {
            size: None,
            storage_class: None,
            namespace: DEFAULT_NAMESPACE.into(),
            name: DEFAULT_NAME.into(),
            auth: None,
            node_port: None,
            containerd_hosts: None,
            certs_dir: None,
            proxy: Vec::new(),
            image: DEFAULT_IMAGE.into(),
            timeout: Duration::from_secs(300),
            no_wait: false,
        }
    }
}

impl Default for EnableArgs {
    fn default() -> Self {
        EnableArgs::new()
    }
}

const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// What the flags and the cluster decide, before anything is written.
pub(super) struct Plan {
    pub registry: Registry,
    pub user: Option<String>,
}

/// The Registry the flags ask for, over the one that exists; refuses what cannot
/// be done, before anything is applied.
pub(super) async fn plan(
    client: &Client,
    args: &EnableArgs,
    existing: Option<&Registry>,
) -> Result<Plan, InstallError> {
    let old_spec = existing.map(|r| &r.spec);

    let size = match (&args.size, old_spec) {
        (Some(size), _) => size.clone(),
        (None, Some(spec)) => spec.storage.size.0.clone(),
        (None, None) => MIN_SIZE.to_string(),
    };
    let amount = Amount::parse(&size).map_err(|e| InstallError::Size(e.to_string()))?;
    let minimum = Amount::parse(MIN_SIZE).expect("MIN_SIZE is a quantity");
    if amount < minimum {
        return Err(InstallError::Size(format!(
            "{size} is below the {MIN_SIZE} minimum"
        )));
    }
    if let Some(old) = old_spec.map(|s| &s.storage.size.0)
        && Amount::parse(old).is_ok_and(|old| amount < old)
    {
        return Err(InstallError::Size(format!(
            "{size} is smaller than the {old} the Registry has; a volume can grow, never shrink"
        )));
    }

    let old_class = old_spec.and_then(|s| s.storage.storage_class_name.clone());
    let class = match (&args.storage_class, old_class) {
        (Some(new), Some(old)) if *new != old => {
            return Err(InstallError::StorageClass(format!(
                "the Registry's volume is of StorageClass {old}, and a volume cannot change class; \
                 `berth disable --purge` first to start over on {new}"
            )));
        }
        (Some(new), _) => {
            let classes = storage_classes(client).await?;
            if !classes.iter().any(|c| c.name_any() == *new) {
                return Err(InstallError::StorageClass(format!(
                    "no StorageClass {new} in the cluster ({})",
                    available(&classes)
                )));
            }
            Some(new.clone())
        }
        (None, Some(old)) => Some(old),
        // An existing claim is bound already, whatever the default is now.
        (None, None) if existing.is_some() => None,
        (None, None) => {
            let classes = storage_classes(client).await?;
            if !classes.iter().any(is_default_class) {
                return Err(InstallError::StorageClass(format!(
                    "the cluster has no default StorageClass; name one with --storageclass ({})",
                    available(&classes)
                )));
            }
            None
        }
    };

    let user = args.auth.clone();
    if let Some(user) = &user
        && !is_user_name(user)
    {
        return Err(InstallError::User(user.clone()));
    }

    let mut registry = Registry::new(&args.name, Default::default());
    registry.metadata.namespace = Some(args.namespace.clone());
    let spec = &mut registry.spec;
    spec.storage.size = Quantity(size);
    spec.storage.storage_class_name = class;
    spec.service.node_port = Some(
        args.node_port
            .or(old_spec.and_then(|s| s.service.node_port))
            .unwrap_or(DEFAULT_NODE_PORT),
    );
    // Upstreams add to those the Registry has; one named again gets the new URL.
    spec.proxy = old_spec.map(|s| s.proxy.clone()).unwrap_or_default();
    for flag in &args.proxy {
        let (name, url) = match flag.split_once('=') {
            Some((name, url)) => (name, Some(url.to_owned())),
            None => (flag.as_str(), None),
        };
        match spec.proxy.upstreams.iter_mut().find(|u| u.name == name) {
            Some(known) => known.url = url.or(known.url.take()),
            None => spec.proxy.upstreams.push(UpstreamSpec {
                name: name.to_owned(),
                url,
                ..UpstreamSpec::default()
            }),
        }
    }
    let old_node_config = old_spec.map(|s| s.node_config.clone()).unwrap_or_default();
    spec.node_config.containerd = args
        .containerd_hosts
        .unwrap_or(old_node_config.containerd || !args.proxy.is_empty());
    spec.node_config.certs_dir = args.certs_dir.clone().unwrap_or(old_node_config.certs_dir);
    spec.auth.users = old_spec.map(|s| s.auth.users.clone()).unwrap_or_default();
    if let Some(user) = &user {
        spec.auth.users.retain(|u| u.name != *user);
        spec.auth.users.push(User {
            name: user.clone(),
            password_secret_ref: SecretKeyRef {
                name: password_secret(&args.name, user),
                key: PASSWORD_KEY.into(),
            },
        });
    }
    // What the operator would refuse (a node port out of range …), refused now.
    validate::check(&registry).map_err(|invalid| InstallError::Spec(invalid.message))?;
    Ok(Plan { registry, user })
}

async fn storage_classes(client: &Client) -> Result<Vec<StorageClass>, InstallError> {
    Ok(Api::<StorageClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_error("list the StorageClasses"))?
        .items)
}

fn is_default_class(class: &StorageClass) -> bool {
    DEFAULT_CLASS_ANNOTATIONS
        .iter()
        .any(|a| class.annotations().get(*a).map(String::as_str) == Some("true"))
}

fn available(classes: &[StorageClass]) -> String {
    if classes.is_empty() {
        return "it has none: install a provisioner first".into();
    }
    let names: Vec<String> = classes
        .iter()
        .map(|c| {
            let default = if is_default_class(c) {
                " (default)"
            } else {
                ""
            };
            format!("{}{default}", c.name_any())
        })
        .collect();
    format!("available: {}", names.join(", "))
}

/// A user name that is also a DNS label, since it goes into the Secret's name.
fn is_user_name(user: &str) -> bool {
    let bytes = user.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 40
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The Secret holding a user's password: `NAME-USER-password`.
pub fn password_secret(registry: &str, user: &str) -> String {
    format!("{registry}-{user}-password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_dns_labels() {
        for good in ["alice", "ci-bot", "u2"] {
            assert!(is_user_name(good), "{good}");
        }
        for bad in ["", "Alice", "a:b", "-a", "a-", "a.b", "a_b"] {
            assert!(!is_user_name(bad), "{bad}");
        }
    }
}
