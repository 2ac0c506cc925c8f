//! The Services: `NAME` (ClusterIP, for pods and the GC job) and `NAME-nodeport`
//! (NodePort 32000 by default, so a node's container runtime pulls from
//! `localhost:32000` without TLS, as with `microk8s enable registry`).

use super::{PORT_NAME, metadata, names, selector_labels};
use crate::operator::crd::Registry;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn cluster_service(registry: &Registry) -> Service {
    service(registry, names::service(registry), "ClusterIP", None)
}

/// The NodePort Service, or None when `spec.service.nodePort` is null.
pub fn node_port_service(registry: &Registry) -> Option<Service> {
    let node_port = registry.spec.service.node_port?;
    Some(service(
        registry,
        names::node_port_service(registry),
        "NodePort",
        Some(node_port),
    ))
}

fn service(registry: &Registry, name: String, type_: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: metadata(registry, name, true),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector_labels(registry)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: registry.spec.service.port,
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                node_port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry};
    use super::*;

    fn port(s: &Service) -> &ServicePort {
        &s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
    }

    #[test]
    fn defaults() {
        let r = registry(|_| {});
        let cluster = cluster_service(&r);
        assert_child_meta(&cluster.metadata, "cache", true);
        let spec = cluster.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            spec.selector.as_ref().unwrap()["app.kubernetes.io/instance"],
            "cache"
        );
        assert_eq!(port(&cluster).port, 5000);
        assert_eq!(
            port(&cluster).target_port,
            Some(IntOrString::String("http".into()))
        );
        assert_eq!(port(&cluster).node_port, None);

        let node = node_port_service(&r).unwrap();
        assert_child_meta(&node.metadata, "cache-nodeport", true);
        assert_eq!(
            node.spec.as_ref().unwrap().type_.as_deref(),
            Some("NodePort")
        );
        assert_eq!(port(&node).node_port, Some(32000));
        assert_eq!(port(&node).port, 5000);
    }

    #[test]
    fn spec_fields() {
        let r = registry(|s| {
            s.service.port = 443;
            s.service.node_port = Some(30500);
        });
        assert_eq!(port(&cluster_service(&r)).port, 443);
        let node = node_port_service(&r).unwrap();
        assert_eq!(
            (port(&node).port, port(&node).node_port),
            (443, Some(30500))
        );
        assert!(node_port_service(&registry(|s| s.service.node_port = None)).is_none());
    }
}
