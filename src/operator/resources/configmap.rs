//! The KEP-1755 ConfigMap `local-registry-hosting` in kube-public, through which
//! tools (tilt, skaffold, ctlptl) discover a cluster's local registry. It lives in
//! another namespace than the Registry, so it cannot carry an owner reference: a
//! finalizer on the Registry removes it, and the annotation below says which
//! Registry published it (there is one per cluster).

use super::{cluster_address, labels, namespace};
use crate::operator::crd::Registry;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde::Serialize;
use std::collections::BTreeMap;

pub const NAME: &str = "local-registry-hosting";
pub const NAMESPACE: &str = "kube-public";
pub const DATA_KEY: &str = "localRegistryHosting.v1";
/// `NS/NAME` of the Registry that published the ConfigMap.
pub const PUBLISHER_ANNOTATION: &str = "berth.dev/registry";

/// The `LocalRegistryHostingV1` document of the KEP.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocalRegistryHosting {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_from_container_runtime: Option<String>,
    host_from_cluster_network: String,
}

/// `NS/NAME` of a Registry, the value of [`PUBLISHER_ANNOTATION`].
pub fn publisher(registry: &Registry) -> String {
    format!("{}/{}", namespace(registry), registry.name_any())
}

/// The ConfigMap, or None when `spec.localRegistryHosting` is false.
pub fn configmap(registry: &Registry) -> Option<ConfigMap> {
    if !registry.spec.local_registry_hosting {
        return None;
    }
    // Without a NodePort, nothing outside the cluster network reaches the
    // registry, and the KEP's host fields stay out.
    let node = registry
        .spec
        .service
        .node_port
        .map(|port| format!("localhost:{port}"));
    let document = LocalRegistryHosting {
        host: node.clone(),
        host_from_container_runtime: node,
        host_from_cluster_network: cluster_address(registry),
    };
    let yaml =
        serde_saphyr::to_string(&document).expect("a struct of strings always serializes to YAML");
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(registry)),
            annotations: Some(BTreeMap::from([(
                PUBLISHER_ANNOTATION.to_string(),
                publisher(registry),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(DATA_KEY.to_string(), yaml)])),
        ..ConfigMap::default()
    })
}

/// Whether this Registry published the ConfigMap (and may change or delete it).
pub fn published_by(configmap: &ConfigMap, registry: &Registry) -> bool {
    configmap
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PUBLISHER_ANNOTATION))
        .is_some_and(|p| *p == publisher(registry))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry};
    use super::*;

    fn document(c: &ConfigMap) -> serde_json::Value {
        serde_saphyr::from_str(&c.data.as_ref().unwrap()[DATA_KEY]).unwrap()
    }

    #[test]
    fn defaults() {
        let c = configmap(&registry(|_| {})).unwrap();
        // Cross-namespace: labels, but no owner reference.
        assert_child_meta(&c.metadata, "local-registry-hosting", false);
        assert_eq!(c.metadata.namespace.as_deref(), Some("kube-public"));
        assert_eq!(
            document(&c),
            serde_json::json!({
                "host": "localhost:32000",
                "hostFromContainerRuntime": "localhost:32000",
                "hostFromClusterNetwork": "cache.dev.svc:5000",
            })
        );
        assert!(published_by(&c, &registry(|_| {})));
    }

    #[test]
    fn spec_fields() {
        let c = configmap(&registry(|s| {
            s.service.node_port = None;
            s.service.port = 5001;
        }))
        .unwrap();
        assert_eq!(
            document(&c),
            serde_json::json!({"hostFromClusterNetwork": "cache.dev.svc:5001"})
        );
        assert!(configmap(&registry(|s| s.local_registry_hosting = false)).is_none());
    }

    #[test]
    fn another_registry_did_not_publish_it() {
        let c = configmap(&registry(|_| {})).unwrap();
        let mut other = registry(|_| {});
        other.metadata.name = Some("other".into());
        assert!(!published_by(&c, &other));
    }
}
