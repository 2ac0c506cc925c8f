//! The Deployment `NAME`: `berth serve` on port 5000 with the volume (or, on
//! an object store, a scratch folder and the bucket's flags), the admin token
//! and (with auth) the htpasswd file mounted, locked down, and restarted only
//! when the htpasswd content (or the store's credentials) changes.

use super::{
    ADMIN_DIR, AUTH_DIR, CONTAINER_PORT, DATA_DIR, HTPASSWD_KEY, PORT_NAME, PROXY_DIR, Settings,
    TOKEN_KEY, USER_ID, container_security_context, labels, metadata, names, pod_security_context,
    selector_labels,
};
use crate::operator::bucket;
use crate::operator::crd::Registry;
use crate::operator::validate;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Pod-template annotation with the sha256 of the htpasswd file: a new value
/// rolls the pods, the same value leaves them alone.
pub const HTPASSWD_HASH_ANNOTATION: &str = "berth.dev/htpasswd-sha256";

/// Pod-template annotation with the resourceVersion of the object store's
/// credentials Secret: they reach the registry as environment variables,
/// which a running pod never sees change, so a new version rolls the pods.
/// (Not a hash of the content: anyone who may read Deployments could test
/// guesses of a password against it.)
pub const STORAGE_CREDENTIALS_ANNOTATION: &str = "berth.dev/storage-credentials-version";

/// The container's last log lines become its termination message when it
/// fails without writing /dev/termination-log (berth logs its fatal error).
pub const TERMINATION_MESSAGE_POLICY: &str = "FallbackToLogsOnError";

/// Secret files readable by the owner and the pod's fsGroup only.
const SECRET_FILE_MODE: i32 = 0o440;

pub fn deployment(registry: &Registry, settings: &Settings) -> Deployment {
    let spec = &registry.spec;
    let auth = spec.auth.enabled();
    let bucket = bucket::of(&spec.storage);

    let mut args: Vec<String> = [
        "serve",
        "--listen",
        "0.0.0.0:5000",
        "--root",
        DATA_DIR,
        "--admin-token-file",
        &format!("{ADMIN_DIR}/{TOKEN_KEY}"),
    ]
    .map(String::from)
    .to_vec();
    if auth {
        args.extend(["--htpasswd".into(), format!("{AUTH_DIR}/{HTPASSWD_KEY}")]);
    }
    if spec.auth.anonymous_pull {
        args.push("--anonymous-pull".into());
    }
    if let Some(bucket) = &bucket {
        args.extend(bucket.args());
    }
    for name in super::endpoints(registry).pull_names() {
        args.extend(["--pull-name".into(), name.to_owned()]);
    }

    let mut mounts = vec![
        mount("data", DATA_DIR),
        mount_read_only("admin", ADMIN_DIR),
        // With a read-only root, anything that wants a scratch file gets one here.
        mount("tmp", "/tmp"),
    ];
    let data = match &bucket {
        // On an object store the data folder only stages uploads and
        // fetched blobs on their way to the bucket: nothing in it outlives
        // the pod.
        Some(_) => Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        None => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::data(registry),
                read_only: None,
            }),
            ..Volume::default()
        },
    };
    let mut volumes = vec![
        data,
        secret_volume("admin", names::admin(registry), TOKEN_KEY),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if auth {
        mounts.push(mount_read_only("auth", AUTH_DIR));
        volumes.push(secret_volume(
            "auth",
            names::htpasswd(registry),
            HTPASSWD_KEY,
        ));
    }
    // The pull-through cache: each upstream as flags, its credentials Secret
    // mounted as the folder of files `username` and `password`.
    for (i, upstream) in spec.proxy.upstreams.iter().enumerate() {
        let name = &upstream.name;
        args.extend(["--proxy".into(), format!("{name}={}", upstream.url())]);
        if let Some(ttl) = &upstream.tag_ttl {
            args.extend(["--proxy-tag-ttl".into(), format!("{name}={ttl}")]);
        }
        if let Some(bytes) = upstream.max_size_bytes() {
            args.extend(["--proxy-max-size".into(), format!("{name}={bytes}")]);
        }
        if let Some(keep) = &upstream.keep_pulled {
            args.extend(["--proxy-keep-pulled".into(), format!("{name}={keep}")]);
        }
        if let Some(secret) = &upstream.credentials_secret {
            let volume = format!("proxy-{i}");
            let dir = format!("{PROXY_DIR}/{name}");
            args.extend(["--proxy-credentials".into(), format!("{name}={dir}")]);
            mounts.push(mount_read_only(&volume, &dir));
            volumes.push(secret_keys_volume(
                &volume,
                secret.clone(),
                &["username", "password"],
            ));
        }
    }

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    };

    let container = Container {
        name: "registry".into(),
        image: Some(settings.image.clone()),
        // The image's entrypoint is the berth binary; the role is the first argument.
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: CONTAINER_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(spec.resources.clone()),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        env: bucket.as_ref().and_then(credential_variables),
        // A registry that cannot start says why in its last log lines
        // ("cannot open the data folder ..."); the kubelet keeps them as the
        // termination message, which the operator quotes in the Ready condition.
        termination_message_policy: Some(TERMINATION_MESSAGE_POLICY.into()),
        ..Container::default()
    };
    // An emptyDir already belongs to the pod's fsGroup.
    let init_containers = (spec.storage.prepare_volume && bucket.is_none())
        .then(|| vec![prepare_volume_container(registry, settings)]);

    let single_node = spec.storage.access_modes.iter().any(|m| m.is_single_node());
    let strategy = if bucket.is_some() {
        // Nothing ties a pod to a node's volume: the new pod is ready before
        // an old one goes, so an update never leaves the registry unreachable.
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        }
    } else if single_node {
        // Two pods cannot hold a single-node volume at once: a rolling update
        // would wait forever for the new pod's volume, so the old pod goes first.
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            ..DeploymentStrategy::default()
        }
    } else {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            ..DeploymentStrategy::default()
        }
    };
    // Replicas on several nodes survive a node. ScheduleAnyway, so that a
    // one-node cluster still runs them all.
    let topology_spread_constraints = bucket.is_some().then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(registry)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    });
    let mut annotations = BTreeMap::from([
        (
            HTPASSWD_HASH_ANNOTATION.to_string(),
            hex::encode(Sha256::digest(settings.htpasswd.as_bytes())),
        ),
        // For a Prometheus that discovers pods by annotation.
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), "5000".to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    if let Some(version) = &settings.storage_credentials {
        annotations.insert(STORAGE_CREDENTIALS_ANNOTATION.to_string(), version.clone());
    }

    Deployment {
        metadata: metadata(registry, names::deployment(registry), true),
        spec: DeploymentSpec {
            // On a volume, at most one pod, whatever spec.replicas asks (the
            // status says why when it asks for more): see validate::MAX_REPLICAS.
            replicas: Some(validate::replicas(registry)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(registry)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(registry)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers,
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(pod_security_context()),
                    // The registry never talks to the API server.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    affinity: spec.affinity.clone(),
                    topology_spread_constraints,
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// The registry's variables from the object store's credentials Secret, each
/// from its key of the same name; the ones the store cannot do without are
/// not optional, so a Secret that lost one stops the pod at its start.
fn credential_variables(bucket: &bucket::Bucket) -> Option<Vec<EnvVar>> {
    let secret = bucket.credentials_secret.as_ref()?;
    let variables = bucket.variables.iter().map(|name| EnvVar {
        name: (*name).into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.clone(),
                key: (*name).into(),
                optional: Some(!bucket.required(name)),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    Some(variables.collect())
}

/// The init container that gives the data folder to the registry's user
/// (`berth prepare-volume`, see src/volume.rs). fsGroup would do it on most
/// volumes, but the kubelet does not apply it to hostPath, and local
/// provisioners hand out root-owned folders (mode 0755) too. The image has no
/// shell and no chown, so it is berth itself, as root with every capability
/// dropped but CHOWN (which is all a chown needs: no mode is changed), and as
/// locked down as the registry otherwise.
fn prepare_volume_container(registry: &Registry, settings: &Settings) -> Container {
    let owner = format!("{USER_ID}:{USER_ID}");
    Container {
        name: "prepare-volume".into(),
        image: Some(settings.image.clone()),
        args: Some(
            ["prepare-volume", "--path", DATA_DIR, "--owner", &owner]
                .map(String::from)
                .to_vec(),
        ),
        // A few milliseconds of work; the registry's requests cover the pod.
        resources: Some(registry.spec.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(false),
            run_as_user: Some(0),
            run_as_group: Some(0),
            capabilities: Some(Capabilities {
                add: Some(vec!["CHOWN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..container_security_context()
        }),
        volume_mounts: Some(vec![mount("data", DATA_DIR)]),
        termination_message_policy: Some(TERMINATION_MESSAGE_POLICY.into()),
        ..Container::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    }
}

fn mount_read_only(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..mount(name, path)
    }
}

/// A volume of one key of a Secret, as a file of the same name.
pub(super) fn secret_volume(name: &str, secret: String, key: &str) -> Volume {
    secret_keys_volume(name, secret, &[key])
}

/// A volume of `keys` of a Secret, each a file of its name.
fn secret_keys_volume(name: &str, secret: String, keys: &[&str]) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items: Some(
                keys.iter()
                    .map(|key| KeyToPath {
                        key: (*key).into(),
                        path: (*key).into(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            default_mode: Some(SECRET_FILE_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry, settings};
    use super::*;
    use crate::operator::crd::AccessMode;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, Toleration};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().unwrap()
    }

    fn container(d: &Deployment) -> &Container {
        &pod(d).containers[0]
    }

    fn annotations(d: &Deployment) -> &BTreeMap<String, String> {
        let template = d.spec.template.metadata.as_ref().unwrap();
        template.annotations.as_ref().unwrap()
    }

    fn args(d: &Deployment) -> Vec<&str> {
        container(d)
            .args
            .iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    fn mounts(d: &Deployment) -> Vec<(&str, &str, bool)> {
        container(d)
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.mount_path.as_str(),
                    m.read_only.unwrap_or(false),
                )
            })
            .collect()
    }

    #[test]
    fn defaults() {
        let d = deployment(&registry(|_| {}), &settings());
        assert_child_meta(&d.metadata, "cache", true);
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("Recreate")
        );
        let selector = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(selector.len(), 2);
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in selector {
            assert_eq!(&template_labels[k], v);
        }
        assert_eq!(
            args(&d),
            [
                "serve",
                "--listen",
                "0.0.0.0:5000",
                "--root",
                "/var/lib/registry",
                "--admin-token-file",
                "/etc/berth/admin/token",
                // The web UI's pull commands: the node's name, then the pods'.
                "--pull-name",
                "localhost:32000",
                "--pull-name",
                "cache.dev.svc:5000"
            ]
        );
        let c = container(&d);
        assert_eq!(c.image.as_deref(), Some("ghcr.io/berth/berth:1.0"));
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.container_port, port.name.as_deref()),
            (5000, Some("http"))
        );
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        assert_eq!(live.port, IntOrString::String("http".into()));
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(
            mounts(&d),
            [
                ("data", "/var/lib/registry", false),
                ("admin", "/etc/berth/admin", true),
                ("tmp", "/tmp", false)
            ]
        );
        let volumes = pod(&d).volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "cache-data"
        );
        assert_eq!(
            volumes[1].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("cache-admin")
        );
        let resources = c.resources.as_ref().unwrap();
        assert_eq!(
            resources.requests.as_ref().unwrap()["cpu"],
            Quantity("100m".into())
        );
        assert_eq!(
            resources.limits.as_ref().unwrap()["memory"],
            Quantity("512Mi".into())
        );
        assert_eq!(pod(&d).automount_service_account_token, Some(false));
    }

    #[test]
    fn locked_down() {
        let d = deployment(&registry(|_| {}), &settings());
        let pod_sc = pod(&d).security_context.as_ref().unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.run_as_user, Some(65532));
        assert_eq!(pod_sc.fs_group, Some(65532));
        assert_eq!(
            pod_sc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let sc = container(&d).security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
    }

    #[test]
    fn an_init_container_gives_the_volume_to_the_registry_user() {
        let d = deployment(&registry(|_| {}), &settings());
        let init = pod(&d).init_containers.as_deref().expect("init containers");
        let [init] = init else {
            panic!("one init container: {init:?}")
        };
        assert_eq!(init.name, "prepare-volume");
        // The same image as the registry: it has no shell and no chown, only berth.
        assert_eq!(init.image, container(&d).image);
        assert_eq!(
            init.args.as_deref().unwrap(),
            [
                "prepare-volume",
                "--path",
                "/var/lib/registry",
                "--owner",
                "65532:65532"
            ]
        );
        let m = &init.volume_mounts.as_deref().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].name.as_str(), m[0].mount_path.as_str(), m[0].read_only),
            ("data", "/var/lib/registry", None)
        );
        // Root, because only root may chown, but with CAP_CHOWN alone.
        let sc = init.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user, Some(0));
        assert_eq!(sc.run_as_non_root, Some(false));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
        assert_eq!(caps.add, Some(vec!["CHOWN".to_string()]));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, None);
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(
            init.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        // The registry itself still runs as its non-root user.
        let registry_sc = container(&d).security_context.as_ref().unwrap();
        assert_eq!(registry_sc.run_as_user, Some(65532));
        assert_eq!(registry_sc.capabilities.as_ref().unwrap().add, None);
    }

    #[test]
    fn a_restricted_namespace_can_do_without_the_init_container() {
        let r = registry(|s| s.storage.prepare_volume = false);
        let d = deployment(&r, &settings());
        assert_eq!(pod(&d).init_containers, None);
        // Then no container of the pod runs as root or adds a capability.
        for c in &pod(&d).containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_eq!(sc.capabilities.as_ref().unwrap().add, None);
        }
    }

    #[test]
    fn a_failed_start_leaves_its_error_as_the_termination_message() {
        let d = deployment(&registry(|_| {}), &settings());
        assert_eq!(
            container(&d).termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    #[test]
    fn auth_mounts_the_htpasswd_file() {
        let r = registry(|s| {
            s.auth.existing_secret = Some("users".into());
            s.auth.anonymous_pull = true;
        });
        let d = deployment(&r, &settings());
        let a = args(&d);
        assert!(
            a.windows(2)
                .any(|w| w == ["--htpasswd", "/etc/berth/auth/htpasswd"])
        );
        assert!(a.contains(&"--anonymous-pull"));
        assert!(mounts(&d).contains(&("auth", "/etc/berth/auth", true)));
        let auth = pod(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "auth")
            .unwrap();
        assert_eq!(
            auth.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("cache-htpasswd")
        );
    }

    #[test]
    fn the_htpasswd_hash_changes_only_with_the_content() {
        let r = registry(|s| s.auth.existing_secret = Some("users".into()));
        let hash = |content: &str| {
            let s = Settings {
                htpasswd: content.into(),
                ..settings()
            };
            annotations(&deployment(&r, &s))[HTPASSWD_HASH_ANNOTATION].clone()
        };
        let d = deployment(&r, &settings());
        let annotations = annotations(&d);
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "5000");
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        assert_eq!(hash("a:x\n"), hash("a:x\n"));
        assert_ne!(hash("a:x\n"), hash("a:y\n"));
        assert_eq!(
            hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn spec_fields() {
        let r = registry(|s| {
            s.image = Some("ignored-here:0".into());
            s.replicas = 3;
            s.storage.access_modes = vec![AccessMode::ReadWriteMany];
            s.node_selector = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
            s.tolerations = Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Toleration::default()
            }]);
            s.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity::default()),
                ..Affinity::default()
            });
            s.resources.limits = None;
        });
        let d = deployment(&r, &settings());
        let spec = &d.spec;
        // Three asked, one runs: one process owns the volume's state.
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("RollingUpdate")
        );
        let p = pod(&d);
        assert_eq!(p.node_selector.as_ref().unwrap()["disk"], "ssd");
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert!(p.affinity.as_ref().unwrap().node_affinity.is_some());
        assert_eq!(container(&d).resources.as_ref().unwrap().limits, None);
        // The image comes from the settings, which resolved spec.image already.
        assert_eq!(
            container(&d).image.as_deref(),
            Some("ghcr.io/berth/berth:1.0")
        );
    }

    #[test]
    fn read_write_once_pod_also_recreates() {
        let r = registry(|s| s.storage.access_modes = vec![AccessMode::ReadWriteOncePod]);
        let d = deployment(&r, &settings());
        assert_eq!(d.spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    }

    fn on_s3(replicas: i32) -> Registry {
        registry(|s| {
            s.replicas = replicas;
            s.storage.s3 = Some(crate::operator::crd::S3Storage {
                bucket: "images".into(),
                endpoint: Some("http://10.245.0.1:9000".into()),
                path_style: true,
                credentials_secret: Some("s3-login".into()),
                ..Default::default()
            });
        })
    }

    #[test]
    fn on_an_object_store_pods_are_many_stateless_and_spread() {
        let s = Settings {
            storage_credentials: Some("c0ffee".into()),
            ..settings()
        };
        let d = deployment(&on_s3(3), &s);
        assert_eq!(d.spec.replicas, Some(3));
        let a = args(&d).join(" ");
        assert!(
            a.contains("--storage s3://images --storage-option endpoint=http://10.245.0.1:9000 "),
            "{a}"
        );
        // The data folder only stages: an emptyDir, no claim, no chown.
        let volumes = pod(&d).volumes.as_ref().unwrap();
        let data = volumes.iter().find(|v| v.name == "data").unwrap();
        assert!(data.empty_dir.is_some() && data.persistent_volume_claim.is_none());
        assert!(mounts(&d).contains(&("data", "/var/lib/registry", false)));
        assert_eq!(pod(&d).init_containers, None);
        // The credentials are variables from their Secret, and only those;
        // its version rolls the pods.
        let env: Vec<(&str, &str, &str, Option<bool>)> = container(&d)
            .env
            .iter()
            .flatten()
            .map(|v| {
                let from = v
                    .value_from
                    .as_ref()
                    .unwrap()
                    .secret_key_ref
                    .as_ref()
                    .unwrap();
                (
                    v.name.as_str(),
                    from.name.as_str(),
                    from.key.as_str(),
                    from.optional,
                )
            })
            .collect();
        assert_eq!(
            env,
            [
                (
                    "AWS_ACCESS_KEY_ID",
                    "s3-login",
                    "AWS_ACCESS_KEY_ID",
                    Some(false)
                ),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "s3-login",
                    "AWS_SECRET_ACCESS_KEY",
                    Some(false)
                ),
                (
                    "AWS_SESSION_TOKEN",
                    "s3-login",
                    "AWS_SESSION_TOKEN",
                    Some(true)
                ),
            ]
        );
        assert_eq!(container(&d).env_from, None);
        let annotations = annotations(&d);
        assert_eq!(annotations[STORAGE_CREDENTIALS_ANNOTATION], "c0ffee");
        // A new pod is ready before an old one goes.
        let strategy = d.spec.strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        let spread = pod(&d).topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
        assert_eq!(
            spread[0].label_selector.as_ref().unwrap().match_labels,
            d.spec.selector.match_labels
        );
    }

    #[test]
    fn on_a_volume_no_store_flags_environment_or_spread() {
        let d = deployment(&registry(|_| {}), &settings());
        assert!(!args(&d).contains(&"--storage"));
        assert_eq!(container(&d).env, None);
        assert_eq!(pod(&d).topology_spread_constraints, None);
        let annotations = annotations(&d);
        assert!(!annotations.contains_key(STORAGE_CREDENTIALS_ANNOTATION));
    }

    #[test]
    fn each_upstream_is_flags_and_its_credentials_a_mounted_secret() {
        use crate::operator::crd::UpstreamSpec;
        let r = registry(|s| {
            s.proxy.upstreams = vec![
                UpstreamSpec {
                    name: "docker.io".into(),
                    url: None,
                    credentials_secret: Some("hub-login".into()),
                    tag_ttl: Some("10m".into()),
                    max_size: Some(Quantity("10Gi".into())),
                    keep_pulled: Some("3d".into()),
                },
                UpstreamSpec {
                    name: "mirror.local".into(),
                    url: Some("http://mirror.ns.svc:5000".into()),
                    ..UpstreamSpec::default()
                },
            ]
        });
        let d = deployment(&r, &settings());
        let a = args(&d).join(" ");
        assert!(
            a.ends_with(
                "--proxy docker.io=https://registry-1.docker.io --proxy-tag-ttl docker.io=10m \
                 --proxy-max-size docker.io=10737418240 --proxy-keep-pulled docker.io=3d \
                 --proxy-credentials docker.io=/etc/berth/proxy/docker.io \
                 --proxy mirror.local=http://mirror.ns.svc:5000"
            ),
            "{a}"
        );
        assert!(mounts(&d).contains(&("proxy-0", "/etc/berth/proxy/docker.io", true)));
        let volume = pod(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "proxy-0")
            .unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("hub-login"));
        let keys: Vec<&str> = secret
            .items
            .iter()
            .flatten()
            .map(|i| i.key.as_str())
            .collect();
        assert_eq!(keys, ["username", "password"]);
        assert_eq!(secret.default_mode, Some(SECRET_FILE_MODE));
        // Without upstreams, no flag of the cache at all.
        let plain = deployment(&registry(|_| {}), &settings());
        assert!(!args(&plain).contains(&"--proxy"));
    }
}
