//! The DaemonSet `NAME-node-config` (only with `spec.nodeConfig.containerd`): on
//! every node, `berth node-config` writes containerd's
//! `CERTS_DIR/localhost:NODEPORT/hosts.toml`, which tells containerd to pull
//! `localhost:NODEPORT/…` over plain HTTP, and one `CERTS_DIR/UPSTREAM/hosts.toml`
//! per upstream of `spec.proxy`, which makes the pull-through cache that
//! upstream's mirror; then it stays to put the files back if they go.
//! containerd reads hosts.toml on each pull, so nothing restarts.
//!
//! The pod runs as root, because certs.d on the node belongs to root, but with
//! no capability, no privilege escalation and a read-only root file system; the
//! only thing it can write is the certs.d folder it mounts (a hostPath, created
//! if missing). Its pods carry their own `app.kubernetes.io/name`, so the
//! registry's Services and Deployment never select them.

use super::{Settings, helper_pod_labels, metadata, names};
use crate::operator::crd::Registry;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, HostPathVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The `app.kubernetes.io/name` of the node-config pods.
pub const POD_APP_NAME: &str = "berth-node-config";
/// Where the node's certs.d folder is mounted in the pod.
pub const CERTS_MOUNT: &str = "/host/certs.d";

/// The labels that pick the node-config pods.
fn pod_selector(registry: &Registry) -> BTreeMap<String, String> {
    BTreeMap::from([
        (super::LABEL_NAME.to_string(), POD_APP_NAME.to_string()),
        (super::LABEL_INSTANCE.to_string(), registry.name_any()),
    ])
}

/// `berth node-config`'s arguments: the registry's own host, and each
/// upstream of the pull-through cache as a mirror.
fn args(registry: &Registry, node_port: i32) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "node-config".into(),
        "--certs-dir".into(),
        CERTS_MOUNT.into(),
        "--host".into(),
        format!("localhost:{node_port}"),
    ];
    for upstream in &registry.spec.proxy.upstreams {
        args.extend([
            "--mirror".into(),
            format!("{}={}", upstream.name, upstream.url()),
        ]);
    }
    args
}

/// The DaemonSet, or None unless `spec.nodeConfig.containerd` (and a node port).
pub fn daemonset(registry: &Registry, settings: &Settings) -> Option<DaemonSet> {
    let node_config = &registry.spec.node_config;
    let node_port = registry.spec.service.node_port?;
    if !node_config.containerd {
        return None;
    }
    let pod_labels = helper_pod_labels(registry, POD_APP_NAME);

    let container = Container {
        name: "node-config".into(),
        image: Some(settings.image.clone()),
        args: Some(args(registry, node_port)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("1m".into())),
                ("memory".to_string(), Quantity("8Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("32Mi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "certs-d".into(),
            mount_path: CERTS_MOUNT.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };

    Some(DaemonSet {
        metadata: metadata(registry, names::node_config(registry), true),
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(pod_selector(registry)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "certs-d".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: node_config.certs_dir.clone(),
                            type_: Some("DirectoryOrCreate".into()),
                        }),
                        ..Volume::default()
                    }]),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    // Every node pulls images, tainted ones (control planes) too.
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    node_selector: Some(BTreeMap::from([(
                        "kubernetes.io/os".to_string(),
                        "linux".to_string(),
                    )])),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(5),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        },
        ..DaemonSet::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry, settings};
    use super::super::{selector_labels, service};
    use super::*;

    fn enabled(certs_dir: Option<&str>) -> DaemonSet {
        let r = registry(|s| {
            s.node_config.containerd = true;
            if let Some(dir) = certs_dir {
                s.node_config.certs_dir = dir.into();
            }
        });
        daemonset(&r, &settings()).expect("a DaemonSet")
    }

    #[test]
    fn each_upstream_gets_its_hosts_toml_through_the_cache() {
        use crate::operator::crd::UpstreamSpec;
        let r = registry(|s| {
            s.node_config.containerd = true;
            s.proxy.upstreams = vec![UpstreamSpec {
                name: "docker.io".into(),
                ..UpstreamSpec::default()
            }];
        });
        let ds = daemonset(&r, &settings()).unwrap();
        let pod = ds.spec.template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        assert_eq!(
            args[args.len() - 2..],
            ["--mirror", "docker.io=https://registry-1.docker.io"]
        );
    }

    #[test]
    fn off_by_default_and_without_a_node_port() {
        assert!(daemonset(&registry(|_| {}), &settings()).is_none());
        let no_port = registry(|s| {
            s.node_config.containerd = true;
            s.service.node_port = None;
        });
        assert!(daemonset(&no_port, &settings()).is_none());
    }

    #[test]
    fn it_writes_hosts_toml_for_the_node_port_into_the_host_folder() {
        let ds = enabled(Some("/var/snap/microk8s/current/args/certs.d"));
        assert_child_meta(&ds.metadata, "cache-node-config", true);
        let pod = ds.spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("ghcr.io/berth/berth:1.0"));
        assert_eq!(
            container.args.as_ref().unwrap(),
            &[
                "node-config",
                "--certs-dir",
                "/host/certs.d",
                "--host",
                "localhost:32000"
            ]
        );
        let host_path = pod.volumes.unwrap()[0].host_path.clone().unwrap();
        assert_eq!(host_path.path, "/var/snap/microk8s/current/args/certs.d");
        assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(
            pod.tolerations.unwrap()[0].operator.as_deref(),
            Some("Exists")
        );
    }

    #[test]
    fn its_pods_are_not_registry_pods() {
        let r = registry(|s| s.node_config.containerd = true);
        let ds = daemonset(&r, &settings()).unwrap();
        let pod_labels = ds.spec.template.metadata.unwrap().labels.unwrap();
        let service_selector = service::cluster_service(&r).spec.unwrap().selector.unwrap();
        let selected = service_selector
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v));
        assert!(
            !selected,
            "the Service would send requests to {pod_labels:?}"
        );
        let deployment = selector_labels(&r);
        assert!(!deployment.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    }
}
