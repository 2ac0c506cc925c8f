//! The Ingress `NAME`, only when `spec.ingress.enabled`: one host, every path to
//! the ClusterIP Service, annotations that let large layers through ingress-nginx,
//! and TLS with a cert-manager issuer when asked.

use super::{PORT_NAME, metadata, names};
use crate::operator::crd::Registry;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use std::collections::BTreeMap;

/// ingress-nginx defaults that break pushes: a 1 MiB body limit, 60 s timeouts and
/// request buffering to disk. The spec's annotations are merged over these.
pub const DEFAULT_ANNOTATIONS: [(&str, &str); 4] = [
    ("nginx.ingress.kubernetes.io/proxy-body-size", "0"),
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "600"),
    ("nginx.ingress.kubernetes.io/proxy-send-timeout", "600"),
    ("nginx.ingress.kubernetes.io/proxy-request-buffering", "off"),
];

pub const CLUSTER_ISSUER_ANNOTATION: &str = "cert-manager.io/cluster-issuer";
pub const ISSUER_ANNOTATION: &str = "cert-manager.io/issuer";

/// The Ingress, or None when it is disabled (or has no host, which validation
/// refuses before this is called).
pub fn ingress(registry: &Registry) -> Option<Ingress> {
    let spec = &registry.spec.ingress;
    if !spec.enabled {
        return None;
    }
    let host = spec.host.clone()?;

    let mut annotations: BTreeMap<String, String> = DEFAULT_ANNOTATIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(tls) = &spec.tls {
        if let Some(issuer) = &tls.cluster_issuer {
            annotations.insert(CLUSTER_ISSUER_ANNOTATION.into(), issuer.clone());
        }
        if let Some(issuer) = &tls.issuer {
            annotations.insert(ISSUER_ANNOTATION.into(), issuer.clone());
        }
    }
    annotations.extend(spec.annotations.clone());

    let mut meta = metadata(registry, names::ingress(registry), true);
    meta.annotations = Some(annotations);

    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: spec.ingress_class_name.clone(),
            tls: spec.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(
                        tls.secret_name
                            .clone()
                            .unwrap_or_else(|| names::tls(registry)),
                    ),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: names::service(registry),
                                port: Some(ServiceBackendPort {
                                    name: Some(PORT_NAME.into()),
                                    number: None,
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry};
    use super::*;
    use crate::operator::crd::IngressTls;

    fn enabled(edit: impl FnOnce(&mut crate::operator::crd::IngressSpec)) -> Ingress {
        ingress(&registry(|s| {
            s.ingress.enabled = true;
            s.ingress.host = Some("registry.example.com".into());
            edit(&mut s.ingress);
        }))
        .unwrap()
    }

    #[test]
    fn off_by_default() {
        assert!(ingress(&registry(|_| {})).is_none());
        // A host alone does not enable it.
        assert!(ingress(&registry(|s| s.ingress.host = Some("r.example".into()))).is_none());
    }

    #[test]
    fn defaults_when_enabled() {
        let i = enabled(|_| {});
        assert_child_meta(&i.metadata, "cache", true);
        let annotations = i.metadata.annotations.as_ref().unwrap();
        for (k, v) in DEFAULT_ANNOTATIONS {
            assert_eq!(annotations[k], v);
        }
        assert_eq!(annotations.len(), 4);
        let spec = i.spec.as_ref().unwrap();
        assert_eq!(spec.tls, None);
        assert_eq!(spec.ingress_class_name, None);
        let rule = &spec.rules.as_ref().unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("registry.example.com"));
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(
            (path.path.as_deref(), path.path_type.as_str()),
            (Some("/"), "Prefix")
        );
        let backend = path.backend.service.as_ref().unwrap();
        assert_eq!(backend.name, "cache");
        assert_eq!(backend.port.as_ref().unwrap().name.as_deref(), Some("http"));
    }

    #[test]
    fn tls_with_a_cluster_issuer() {
        let i = enabled(|s| {
            s.tls = Some(IngressTls {
                cluster_issuer: Some("letsencrypt".into()),
                ..IngressTls::default()
            })
        });
        let tls = &i.spec.as_ref().unwrap().tls.as_ref().unwrap()[0];
        assert_eq!(tls.hosts, Some(vec!["registry.example.com".to_string()]));
        assert_eq!(tls.secret_name.as_deref(), Some("cache-tls"));
        let annotations = i.metadata.annotations.unwrap();
        assert_eq!(annotations[CLUSTER_ISSUER_ANNOTATION], "letsencrypt");
        assert!(!annotations.contains_key(ISSUER_ANNOTATION));
    }

    #[test]
    fn tls_with_an_issuer_and_a_secret() {
        let i = enabled(|s| {
            s.tls = Some(IngressTls {
                secret_name: Some("my-cert".into()),
                issuer: Some("local-ca".into()),
                ..IngressTls::default()
            })
        });
        let tls = &i.spec.as_ref().unwrap().tls.as_ref().unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("my-cert"));
        assert_eq!(
            i.metadata.annotations.unwrap()[ISSUER_ANNOTATION],
            "local-ca"
        );
    }

    #[test]
    fn class_and_annotations_merged_over_the_defaults() {
        let i = enabled(|s| {
            s.ingress_class_name = Some("nginx".into());
            s.annotations = BTreeMap::from([
                (
                    "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
                    "3600".into(),
                ),
                ("example.com/extra".into(), "yes".into()),
            ]);
        });
        assert_eq!(
            i.spec.as_ref().unwrap().ingress_class_name.as_deref(),
            Some("nginx")
        );
        let annotations = i.metadata.annotations.unwrap();
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
            "3600"
        );
        assert_eq!(annotations["example.com/extra"], "yes");
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
            "0"
        );
    }
}
