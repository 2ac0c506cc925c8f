//! The children of a Registry, one pure builder per object: each takes the
//! Registry (and the [`Settings`] a pass has gathered) and returns the object the
//! operator applies. No I/O here, so the unit tests and `berth render` see exactly
//! what the cluster gets.
//!
//! Names, labels, mount paths and the owner reference are the operator's
//! contract with other tools; they are defined once in this module.

pub mod configmap;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod ingress;
pub mod pvc;
pub mod secret;
pub mod service;

use super::crd::{Endpoints, Registry};
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// What the builders need that is not in the Registry: decided by the reconcile
/// pass from the cluster (or by `berth render` offline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The image of the registry and its GC job.
    pub image: String,
    /// The htpasswd file (empty when the registry has no users).
    pub htpasswd: String,
    /// The bearer token of the admin endpoints, for the GC job.
    pub admin_token: String,
    /// The resourceVersion of the object store's credentials Secret, when
    /// the spec names one.
    pub storage_credentials: Option<String>,
    /// The API server takes a PodDisruptionBudget's
    /// unhealthyPodEvictionPolicy (Kubernetes 1.27 and later).
    pub unhealthy_pod_eviction: bool,
}

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const APP_NAME: &str = "berth-registry";
pub const MANAGED_BY: &str = "berth-operator";

/// The port the registry container listens on, whatever the Services expose.
pub const CONTAINER_PORT: i32 = 5000;
pub const PORT_NAME: &str = "http";
pub const DATA_DIR: &str = "/var/lib/registry";
pub const AUTH_DIR: &str = "/etc/berth/auth";
pub const ADMIN_DIR: &str = "/etc/berth/admin";
/// Where each upstream's credentials Secret is mounted, as `PROXY_DIR/NAME`.
pub const PROXY_DIR: &str = "/etc/berth/proxy";
pub const HTPASSWD_KEY: &str = "htpasswd";
pub const TOKEN_KEY: &str = "token";
/// The distroless `nonroot` user, which owns nothing in the image.
pub const USER_ID: i64 = 65532;

/// The names of the children of Registry NAME.
pub mod names {
    use super::Registry;
    use kube::ResourceExt;

    pub fn data(registry: &Registry) -> String {
        format!("{}-data", registry.name_any())
    }
    pub fn deployment(registry: &Registry) -> String {
        registry.name_any()
    }
    pub fn service(registry: &Registry) -> String {
        registry.name_any()
    }
    pub fn node_port_service(registry: &Registry) -> String {
        format!("{}-nodeport", registry.name_any())
    }
    pub fn htpasswd(registry: &Registry) -> String {
        format!("{}-htpasswd", registry.name_any())
    }
    pub fn admin(registry: &Registry) -> String {
        format!("{}-admin", registry.name_any())
    }
    pub fn ingress(registry: &Registry) -> String {
        registry.name_any()
    }
    pub fn gc(registry: &Registry) -> String {
        format!("{}-gc", registry.name_any())
    }
    pub fn node_config(registry: &Registry) -> String {
        format!("{}-node-config", registry.name_any())
    }
    pub fn disruption_budget(registry: &Registry) -> String {
        registry.name_any()
    }
    pub fn tls(registry: &Registry) -> String {
        format!("{}-tls", registry.name_any())
    }
}

/// The namespace of a Registry; the reconcile pass only sees namespaced ones.
pub fn namespace(registry: &Registry) -> String {
    registry.namespace().unwrap_or_else(|| "default".into())
}

/// `NAME.NS.svc:PORT`, how pods (and the GC job) reach the registry.
pub fn cluster_address(registry: &Registry) -> String {
    format!(
        "{}.{}.svc:{}",
        names::service(registry),
        namespace(registry),
        registry.spec.service.port
    )
}

/// Where clients reach the registry: from pods, from a node, through the
/// Ingress, and where its web UI is.
pub fn endpoints(registry: &Registry) -> Endpoints {
    let spec = &registry.spec;
    let cluster_network = cluster_address(registry);
    let node = spec.service.node_port.map(|p| format!("localhost:{p}"));
    let external = ingress::ingress(registry).and_then(|_| spec.ingress.host.clone());
    // A wildcard host (`*.example.com`) names no one address to browse.
    let browsable = external.as_ref().filter(|host| !host.contains('*'));
    let ui = match (browsable, &node) {
        (Some(host), _) if spec.ingress.tls.is_some() => format!("https://{host}/"),
        (Some(host), _) => format!("http://{host}/"),
        (None, Some(node)) => format!("http://{node}/"),
        (None, None) => format!("http://{cluster_network}/"),
    };
    Endpoints {
        cluster_network: Some(cluster_network),
        node,
        external,
        ui: Some(ui),
    }
}

/// Labels on every child (and on the registry pods).
pub fn labels(registry: &Registry) -> BTreeMap<String, String> {
    let mut labels = selector_labels(registry);
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    labels
}

/// Labels of a Registry's pods that are not registry pods (GC runs, node-config):
/// the child labels under their own `app.kubernetes.io/name`, so the registry
/// Services and Deployment never select them.
pub fn helper_pod_labels(registry: &Registry, app_name: &str) -> BTreeMap<String, String> {
    let mut labels = labels(registry);
    labels.insert(LABEL_NAME.into(), app_name.into());
    labels
}

/// The labels that pick the registry pods; a Deployment selector never changes,
/// so it leaves out anything that might.
pub fn selector_labels(registry: &Registry) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), APP_NAME.to_string()),
        (LABEL_INSTANCE.to_string(), registry.name_any()),
    ])
}

/// The controller owner reference to the Registry. None for a Registry read from
/// a file (`berth render`), which has no uid: a made-up uid would let the garbage
/// collector delete the objects as orphans.
pub fn owner_reference(registry: &Registry) -> Option<OwnerReference> {
    registry.controller_owner_ref(&())
}

/// Metadata of a child in the Registry's namespace, owned by it when `owned`.
pub fn metadata(registry: &Registry, name: String, owned: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(registry)),
        labels: Some(labels(registry)),
        owner_references: owned
            .then(|| owner_reference(registry))
            .flatten()
            .map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The pod security settings of every registry and GC pod: a non-root user, the
/// runtime's seccomp profile.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(USER_ID),
        run_as_group: Some(USER_ID),
        fs_group: Some(USER_ID),
        // Walking a large registry volume to chown it on every start would delay
        // each restart by minutes; only do it when the top is not ours yet.
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The container security settings: read-only root, no privilege escalation, no
/// capabilities.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(USER_ID),
        run_as_group: Some(USER_ID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A Registry as the API server would hand it over, and settings, for the
    //! builder tests.

    use super::Settings;
    use crate::operator::crd::{Registry, RegistrySpec};

    pub const UID: &str = "6f1c1a8e-0000-4000-8000-000000000001";

    pub fn registry(edit: impl FnOnce(&mut RegistrySpec)) -> Registry {
        let mut spec = RegistrySpec::default();
        edit(&mut spec);
        let mut registry = Registry::new("cache", spec);
        registry.metadata.namespace = Some("dev".into());
        registry.metadata.uid = Some(UID.into());
        registry.metadata.generation = Some(1);
        registry
    }

    pub fn settings() -> Settings {
        Settings {
            image: "ghcr.io/berth/berth:1.0".into(),
            htpasswd: String::new(),
            admin_token: "t0ken".into(),
            storage_credentials: None,
            unhealthy_pod_eviction: true,
        }
    }

    /// Asserts the three contract labels and, when `owned`, the controller
    /// reference to the test Registry.
    pub fn assert_child_meta(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        name: &str,
        owned: bool,
    ) {
        assert_eq!(meta.name.as_deref(), Some(name));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/name"], "berth-registry");
        assert_eq!(labels["app.kubernetes.io/instance"], "cache");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "berth-operator");
        match (owned, meta.owner_references.as_deref()) {
            (true, Some([owner])) => {
                assert_eq!(owner.kind, "Registry");
                assert_eq!(owner.api_version, "berth.dev/v1alpha1");
                assert_eq!(owner.name, "cache");
                assert_eq!(owner.uid, UID);
                assert_eq!(owner.controller, Some(true));
            }
            (false, None) => {}
            (owned, refs) => panic!("owned={owned} but owner references {refs:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::registry;
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let r = registry(|_| {});
        assert_eq!(names::data(&r), "cache-data");
        assert_eq!(names::deployment(&r), "cache");
        assert_eq!(names::service(&r), "cache");
        assert_eq!(names::node_port_service(&r), "cache-nodeport");
        assert_eq!(names::htpasswd(&r), "cache-htpasswd");
        assert_eq!(names::admin(&r), "cache-admin");
        assert_eq!(names::ingress(&r), "cache");
        assert_eq!(names::gc(&r), "cache-gc");
        assert_eq!(names::node_config(&r), "cache-node-config");
        assert_eq!(cluster_address(&r), "cache.dev.svc:5000");
    }

    #[test]
    fn the_ui_is_where_a_browser_reaches_it_best() {
        let ui = |edit: fn(&mut crate::operator::crd::RegistrySpec)| {
            let e = endpoints(&registry(edit));
            let names = e.pull_names().map(str::to_owned).collect::<Vec<_>>();
            (e.ui.unwrap(), names)
        };
        assert_eq!(
            ui(|_| {}),
            (
                "http://localhost:32000/".to_owned(),
                vec![
                    "localhost:32000".to_owned(),
                    "cache.dev.svc:5000".to_owned()
                ]
            )
        );
        assert_eq!(
            ui(|s| s.service.node_port = None).0,
            "http://cache.dev.svc:5000/"
        );
        let with_ingress = |s: &mut crate::operator::crd::RegistrySpec| {
            s.ingress.enabled = true;
            s.ingress.host = Some("registry.example.com".into());
        };
        let (url, names) = ui(with_ingress);
        assert_eq!(url, "http://registry.example.com/");
        assert_eq!(names[1], "registry.example.com");
        assert_eq!(
            ui(|s| {
                s.ingress.enabled = true;
                s.ingress.host = Some("registry.example.com".into());
                s.ingress.tls = Some(Default::default());
            })
            .0,
            "https://registry.example.com/"
        );
        let (url, names) = ui(|s| {
            s.ingress.enabled = true;
            s.ingress.host = Some("*.example.com".into());
        });
        assert_eq!(url, "http://localhost:32000/");
        assert!(!names.iter().any(|n| n.contains('*')), "{names:?}");
    }

    #[test]
    fn a_registry_from_a_file_has_no_owner_reference() {
        let mut r = registry(|_| {});
        r.metadata.uid = None;
        assert_eq!(metadata(&r, "x".into(), true).owner_references, None);
    }
}
