//! What makes a Registry spec unusable, checked before anything is applied. The
//! schema lets these through on purpose: some depend on the cluster (the image the
//! operator runs with), some on rules the API server only checks on the children
//! (a quantity, a node port, a name length), and a clear condition on the Registry
//! beats a child the API server refuses on every pass.

use super::bucket;
use super::crd::{AccessMode, Registry};
use super::quantity::Amount;
use std::collections::BTreeSet;

/// Why a spec cannot be acted on: `reason` is the Degraded condition's reason
/// (CamelCase), `message` says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

fn invalid(reason: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        message: message.into(),
    }
}

/// The Kubernetes default node port range; a cluster may configure another, and
/// then the API server still has the last word.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

/// The longest Registry name whose children all have valid names: a CronJob name
/// has at most 52 characters (its Jobs add 11), and `NAME-gc` adds 3.
pub const MAX_NAME_LEN: usize = 49;

/// The image the registry runs: `spec.image`, else the operator's own image. With
/// neither, the operator refuses rather than guess a tag.
pub fn image(registry: &Registry, operator_image: Option<&str>) -> Result<String, Invalid> {
    registry
        .spec
        .image
        .as_deref()
        .or(operator_image)
        .filter(|image| !image.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            invalid(
                "NoImage",
                "spec.image is not set and the operator has no BERTH_IMAGE to use instead",
            )
        })
}

/// The most registry pods berth runs on one volume. The catalog, the tag and
/// manifest cache, GC's pins and the commit lock all live in the one `berth
/// serve` process that owns the volume: a second pod on the same volume would
/// answer NAME_UNKNOWN for repositories pushed through the first, and its
/// garbage collection could sweep a blob the first just committed. On an
/// object store every replica keeps all of that in the bucket
/// (src/storage/shared_gc.rs), so there is no limit there.
pub const MAX_REPLICAS: i32 = 1;

/// The number of pods the Deployment gets: `spec.replicas`, but on a volume
/// never more than [`MAX_REPLICAS`] (0 stays 0: scaling to zero is allowed).
pub fn replicas(registry: &Registry) -> i32 {
    if registry.spec.storage.object_store() {
        registry.spec.replicas.max(0)
    } else {
        registry.spec.replicas.clamp(0, MAX_REPLICAS)
    }
}

/// Why `spec.replicas` is not what runs, when it asks for more than
/// [`MAX_REPLICAS`] on a volume. Unlike the rules of [`check`], this does not
/// stop the pass: the registry keeps serving with one pod (as a refused shrink
/// keeps the claim), and the status says Degraded with this reason until the
/// spec asks for what can run. Whatever the access mode: ReadWriteMany shares
/// the volume, not the state each process keeps in memory.
pub fn refused_replicas(registry: &Registry) -> Option<Invalid> {
    let asked = registry.spec.replicas;
    (asked > MAX_REPLICAS && !registry.spec.storage.object_store()).then(|| {
        invalid(
            "ReplicasNotSupported",
            format!(
                "spec.replicas is {asked}, but berth runs {MAX_REPLICAS} registry pod per volume for now: \
                 the catalog, the tag and manifest cache, GC's pins and the commit lock live in one process, \
                 so a second pod would answer NAME_UNKNOWN for repositories pushed through the other \
                 and its garbage collection could delete blobs the other just committed. \
                 The Deployment runs {MAX_REPLICAS} replica; set spec.replicas to {MAX_REPLICAS}, \
                 or keep the images in an object store (spec.storage.s3, azure or gcs), where any number may run."
            ),
        )
    })
}

/// Every rule on the spec alone.
pub fn check(registry: &Registry) -> Result<(), Invalid> {
    let spec = &registry.spec;
    let name = registry.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "NameTooLong",
            format!(
                "the name {name:?} has {} characters; at most {MAX_NAME_LEN} leave room for the children's names (NAME-gc is a CronJob)",
                name.len()
            ),
        ));
    }

    let size = Amount::parse(&spec.storage.size.0)
        .map_err(|e| invalid("InvalidStorageSize", format!("spec.storage.size: {e}")))?;
    if size.is_zero() {
        return Err(invalid(
            "InvalidStorageSize",
            "spec.storage.size must be more than zero",
        ));
    }
    if spec.storage.access_modes.is_empty() {
        return Err(invalid(
            "InvalidAccessModes",
            "spec.storage.accessModes needs at least one mode",
        ));
    }
    if spec.storage.access_modes == [AccessMode::ReadOnlyMany] {
        return Err(invalid(
            "InvalidAccessModes",
            "the registry writes to its volume; ReadOnlyMany alone cannot work",
        ));
    }
    if spec.replicas < 0 {
        return Err(invalid(
            "InvalidReplicas",
            "spec.replicas cannot be negative",
        ));
    }

    if !(1..=65535).contains(&spec.service.port) {
        return Err(invalid(
            "InvalidPort",
            format!("spec.service.port {} is not a port", spec.service.port),
        ));
    }
    if let Some(node_port) = spec.service.node_port
        && !NODE_PORT_RANGE.contains(&node_port)
    {
        return Err(invalid(
            "InvalidNodePort",
            format!(
                "spec.service.nodePort {node_port} is outside {}-{}; set null to have no NodePort Service",
                NODE_PORT_RANGE.start(),
                NODE_PORT_RANGE.end()
            ),
        ));
    }

    check_object_store(registry)?;
    check_auth(registry)?;
    check_ingress(registry)?;
    check_node_config(registry)?;
    check_proxy(registry)?;

    if spec.gc.enabled && !is_cron_schedule(&spec.gc.schedule) {
        return Err(invalid(
            "InvalidSchedule",
            format!(
                "spec.gc.schedule {:?} is not a cron schedule (five fields, or @daily, @weekly …)",
                spec.gc.schedule
            ),
        ));
    }
    if let Some(grace) = &spec.gc.grace
        && humantime::parse_duration(grace).is_err()
    {
        return Err(invalid(
            "InvalidGrace",
            format!("spec.gc.grace {grace:?} is not a duration (like 1h, 30m, 90s)"),
        ));
    }
    Ok(())
}

fn check_object_store(registry: &Registry) -> Result<(), Invalid> {
    let storage = &registry.spec.storage;
    let named = [
        storage.s3.is_some(),
        storage.azure.is_some(),
        storage.gcs.is_some(),
    ];
    if named.iter().filter(|n| **n).count() > 1 {
        return Err(invalid(
            "InvalidStorage",
            "spec.storage names more than one of s3, azure and gcs; choose one",
        ));
    }
    match bucket::of(storage) {
        Some(bucket) => bucket
            .check()
            .map_err(|message| invalid("InvalidStorage", message)),
        None => Ok(()),
    }
}

fn check_proxy(registry: &Registry) -> Result<(), Invalid> {
    let mut seen = BTreeSet::new();
    for upstream in &registry.spec.proxy.upstreams {
        let name = &upstream.name;
        if !crate::proxy::valid_name(name) {
            return Err(invalid(
                "InvalidProxy",
                format!(
                    "spec.proxy.upstreams name {name:?} is not a registry host berth can mirror: lowercase letters, digits, '.', '_' and '-', with no port or '/' (like docker.io, ghcr.io)"
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(invalid(
                "InvalidProxy",
                format!("spec.proxy.upstreams names {name} twice"),
            ));
        }
        let url = upstream.url();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .filter(|rest| !rest.is_empty() && !rest.contains(['"', '\\', ' ', '\n']));
        if host.is_none() {
            return Err(invalid(
                "InvalidProxy",
                format!(
                    "spec.proxy.upstreams {name}: url {url:?} is not an http:// or https:// URL"
                ),
            ));
        }
        let durations = [
            ("tagTtl", &upstream.tag_ttl),
            ("keepPulled", &upstream.keep_pulled),
        ];
        for (field, value) in durations {
            if let Some(text) = value
                && humantime::parse_duration(text).is_err()
            {
                return Err(invalid(
                    "InvalidProxy",
                    format!(
                        "spec.proxy.upstreams {name}: {field} {text:?} is not a duration (like 5m, 7d)"
                    ),
                ));
            }
        }
        if let Some(size) = &upstream.max_size
            && upstream.max_size_bytes().is_none_or(|bytes| bytes == 0)
        {
            return Err(invalid(
                "InvalidProxy",
                format!(
                    "spec.proxy.upstreams {name}: maxSize {:?} is not a size in bytes above zero (like 10Gi)",
                    size.0
                ),
            ));
        }
    }
    Ok(())
}

fn check_auth(registry: &Registry) -> Result<(), Invalid> {
    let auth = &registry.spec.auth;
    if !auth.users.is_empty() && auth.existing_secret.is_some() {
        return Err(invalid(
            "InvalidAuth",
            "spec.auth has both users and existingSecret; choose one",
        ));
    }
    if auth.existing_secret.as_deref() == Some("") {
        return Err(invalid("InvalidAuth", "spec.auth.existingSecret is empty"));
    }
    let mut seen = BTreeSet::new();
    for user in &auth.users {
        // A colon or a line break would split the htpasswd line somewhere else.
        if user.name.is_empty()
            || user
                .name
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "InvalidAuth",
                format!(
                    "user name {:?} must be non-empty, without ':' or spaces",
                    user.name
                ),
            ));
        }
        if !seen.insert(user.name.as_str()) {
            return Err(invalid(
                "InvalidAuth",
                format!("user {:?} is listed twice", user.name),
            ));
        }
        if user.password_secret_ref.name.is_empty() || user.password_secret_ref.key.is_empty() {
            return Err(invalid(
                "InvalidAuth",
                format!("user {:?} needs passwordSecretRef.name and .key", user.name),
            ));
        }
    }
    Ok(())
}

fn check_ingress(registry: &Registry) -> Result<(), Invalid> {
    let ingress = &registry.spec.ingress;
    if !ingress.enabled {
        return Ok(());
    }
    if ingress.host.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            "IngressHostMissing",
            "spec.ingress.enabled needs spec.ingress.host",
        ));
    }
    if let Some(tls) = &ingress.tls
        && tls.cluster_issuer.is_some()
        && tls.issuer.is_some()
    {
        return Err(invalid(
            "InvalidIngress",
            "spec.ingress.tls has both clusterIssuer and issuer; choose one",
        ));
    }
    Ok(())
}

fn check_node_config(registry: &Registry) -> Result<(), Invalid> {
    let node_config = &registry.spec.node_config;
    if !node_config.containerd {
        return Ok(());
    }
    if registry.spec.service.node_port.is_none() {
        return Err(invalid(
            "InvalidNodeConfig",
            "spec.nodeConfig.containerd points containerd at localhost:NODEPORT, and spec.service.nodePort is null",
        ));
    }
    let dir = std::path::Path::new(&node_config.certs_dir);
    if !dir.is_absolute() || dir.components().any(|c| c.as_os_str() == "..") {
        return Err(invalid(
            "InvalidNodeConfig",
            format!(
                "spec.nodeConfig.certsDir {:?} must be an absolute path on the nodes",
                node_config.certs_dir
            ),
        ));
    }
    Ok(())
}

/// A light check of the CronJob schedule, enough to catch a typo before the API
/// server refuses the CronJob: five fields of cron characters, or a macro.
fn is_cron_schedule(schedule: &str) -> bool {
    const MACROS: [&str; 7] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    let schedule = schedule.trim();
    if MACROS.contains(&schedule) {
        return true;
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|field| {
            field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "*/,-?".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{RegistrySpec, SecretKeyRef, UpstreamSpec, User};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn registry(edit: impl FnOnce(&mut RegistrySpec)) -> Registry {
        let mut spec = RegistrySpec::default();
        edit(&mut spec);
        let mut registry = Registry::new("cache", spec);
        registry.metadata.namespace = Some("dev".into());
        registry
    }

    fn reason(edit: impl FnOnce(&mut RegistrySpec)) -> &'static str {
        check(&registry(edit)).unwrap_err().reason
    }

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            password_secret_ref: SecretKeyRef {
                name: "pw".into(),
                key: "password".into(),
            },
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(check(&registry(|_| {})), Ok(()));
    }

    #[test]
    fn the_image_comes_from_the_spec_then_the_operator() {
        let plain = registry(|_| {});
        assert_eq!(image(&plain, Some("berth:1")).unwrap(), "berth:1");
        assert_eq!(image(&plain, None).unwrap_err().reason, "NoImage");
        let own = registry(|s| s.image = Some("mine:2".into()));
        assert_eq!(image(&own, Some("berth:1")).unwrap(), "mine:2");
        assert_eq!(image(&own, None).unwrap(), "mine:2");
    }

    #[test]
    fn node_config_rules() {
        let on = |s: &mut RegistrySpec| s.node_config.containerd = true;
        assert_eq!(check(&registry(on)), Ok(()));
        assert_eq!(
            reason(|s| {
                on(s);
                s.service.node_port = None;
            }),
            "InvalidNodeConfig"
        );
        for bad in ["etc/containerd/certs.d", "/etc/../tmp"] {
            assert_eq!(
                reason(|s| {
                    on(s);
                    s.node_config.certs_dir = bad.into();
                }),
                "InvalidNodeConfig",
                "{bad}"
            );
        }
        // Off, the folder is not looked at.
        assert_eq!(
            check(&registry(|s| s.node_config.certs_dir = "relative".into())),
            Ok(())
        );
    }

    #[test]
    fn storage_rules() {
        assert_eq!(
            reason(|s| s.storage.size = Quantity("lots".into())),
            "InvalidStorageSize"
        );
        assert_eq!(
            reason(|s| s.storage.size = Quantity("0Gi".into())),
            "InvalidStorageSize"
        );
        assert_eq!(
            reason(|s| s.storage.access_modes.clear()),
            "InvalidAccessModes"
        );
        assert_eq!(
            reason(|s| s.storage.access_modes = vec![AccessMode::ReadOnlyMany]),
            "InvalidAccessModes"
        );
        assert_eq!(reason(|s| s.replicas = -1), "InvalidReplicas");
    }

    #[test]
    fn more_than_one_replica_is_refused_whatever_the_access_mode() {
        for modes in [
            vec![AccessMode::ReadWriteOnce],
            vec![AccessMode::ReadWriteOncePod],
            vec![AccessMode::ReadWriteMany],
            vec![AccessMode::ReadWriteMany, AccessMode::ReadOnlyMany],
        ] {
            let r = registry(|s| {
                s.replicas = 3;
                s.storage.access_modes = modes.clone();
            });
            // Not a stop: the pass goes on, with one pod.
            assert_eq!(check(&r), Ok(()), "{modes:?}");
            assert_eq!(replicas(&r), 1, "{modes:?}");
            let refused = refused_replicas(&r).expect("refused");
            assert_eq!(refused.reason, "ReplicasNotSupported", "{modes:?}");
            // The message says what was asked, why not, and what to do instead.
            for words in [
                "spec.replicas is 3",
                "NAME_UNKNOWN",
                "set spec.replicas to 1",
                "spec.storage.s3",
            ] {
                assert!(
                    refused.message.contains(words),
                    "{words:?} in {}",
                    refused.message
                );
            }
        }
        for (asked, runs) in [(0, 0), (1, 1)] {
            let r = registry(|s| s.replicas = asked);
            assert_eq!(refused_replicas(&r), None, "{asked}");
            assert_eq!(replicas(&r), runs);
        }
    }

    #[test]
    fn on_an_object_store_any_number_of_replicas_runs() {
        let r = registry(|s| {
            s.replicas = 5;
            s.storage.gcs = Some(crate::operator::crd::GcsStorage {
                bucket: "images".into(),
                ..Default::default()
            });
        });
        assert_eq!(check(&r), Ok(()));
        assert_eq!(replicas(&r), 5);
        assert_eq!(refused_replicas(&r), None);
    }

    #[test]
    fn object_store_rules() {
        use crate::operator::crd::{AzureStorage, S3Storage};
        let s3 = || S3Storage {
            bucket: "images".into(),
            path_style: true,
            ..S3Storage::default()
        };
        let two = registry(|s| {
            s.storage.s3 = Some(s3());
            s.storage.azure = Some(AzureStorage {
                account: "a".into(),
                container: "c".into(),
                ..AzureStorage::default()
            });
        });
        let refused = check(&two).unwrap_err();
        assert_eq!(refused.reason, "InvalidStorage");
        assert!(
            refused.message.contains("more than one"),
            "{}",
            refused.message
        );
        let bad = registry(|s| {
            s.storage.s3 = Some(S3Storage {
                endpoint: Some("minio:9000".into()),
                ..s3()
            })
        });
        let refused = check(&bad).unwrap_err();
        assert_eq!(refused.reason, "InvalidStorage");
        assert!(
            refused.message.contains("spec.storage.s3: endpoint"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn port_rules() {
        assert_eq!(
            reason(|s| s.service.node_port = Some(8080)),
            "InvalidNodePort"
        );
        assert_eq!(
            reason(|s| s.service.node_port = Some(32768)),
            "InvalidNodePort"
        );
        assert_eq!(reason(|s| s.service.port = 0), "InvalidPort");
        assert_eq!(check(&registry(|s| s.service.node_port = None)), Ok(()));
        assert_eq!(
            check(&registry(|s| s.service.node_port = Some(30000))),
            Ok(())
        );
    }

    #[test]
    fn auth_rules() {
        assert_eq!(
            reason(|s| {
                s.auth.users = vec![user("alice")];
                s.auth.existing_secret = Some("file".into());
            }),
            "InvalidAuth"
        );
        assert_eq!(
            reason(|s| s.auth.users = vec![user("alice"), user("alice")]),
            "InvalidAuth"
        );
        assert_eq!(reason(|s| s.auth.users = vec![user("a:b")]), "InvalidAuth");
        assert_eq!(reason(|s| s.auth.users = vec![user("a\nb")]), "InvalidAuth");
        let ok = registry(|s| {
            s.auth.users = vec![user("alice"), user("bob")];
            s.auth.anonymous_pull = true;
        });
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn ingress_rules() {
        assert_eq!(reason(|s| s.ingress.enabled = true), "IngressHostMissing");
        assert_eq!(
            reason(|s| {
                s.ingress.enabled = true;
                s.ingress.host = Some("registry.example.com".into());
                s.ingress.tls = Some(crate::operator::crd::IngressTls {
                    secret_name: None,
                    cluster_issuer: Some("le".into()),
                    issuer: Some("local".into()),
                });
            }),
            "InvalidIngress"
        );
        // A host without `enabled` is only kept for later.
        let off = registry(|s| s.ingress.host = None);
        assert_eq!(check(&off), Ok(()));
    }

    #[test]
    fn schedule_and_name_rules() {
        assert_eq!(
            reason(|s| s.gc.schedule = "weekly".into()),
            "InvalidSchedule"
        );
        assert_eq!(
            reason(|s| s.gc.schedule = "0 3 * *".into()),
            "InvalidSchedule"
        );
        assert_eq!(
            check(&registry(|s| s.gc.schedule = "@daily".into())),
            Ok(())
        );
        assert_eq!(
            check(&registry(|s| s.gc.schedule = "*/15 1-5 * * MON".into())),
            Ok(())
        );
        // A bad schedule does not matter while GC is off.
        let off = registry(|s| {
            s.gc.enabled = false;
            s.gc.schedule = "never".into();
        });
        assert_eq!(check(&off), Ok(()));
        assert_eq!(
            reason(|s| s.gc.grace = Some("an hour".into())),
            "InvalidGrace"
        );
        assert_eq!(
            check(&registry(|s| s.gc.grace = Some("90s".into()))),
            Ok(())
        );
        let upstream = |name: &str, url: Option<&str>, ttl: Option<&str>| UpstreamSpec {
            name: name.into(),
            url: url.map(Into::into),
            tag_ttl: ttl.map(Into::into),
            ..UpstreamSpec::default()
        };
        let capped = |size: &str, keep: Option<&str>| UpstreamSpec {
            max_size: Some(Quantity(size.into())),
            keep_pulled: keep.map(Into::into),
            ..upstream("docker.io", None, None)
        };
        for bad in [
            vec![upstream("localhost:5000", None, None)],
            vec![upstream("Docker.io", None, None)],
            vec![
                upstream("docker.io", None, None),
                upstream("docker.io", None, None),
            ],
            vec![upstream("ghcr.io", Some("ftp://ghcr.io"), None)],
            vec![upstream("ghcr.io", None, Some("soon"))],
            vec![capped("lots", None)],
            vec![capped("0", None)],
            vec![capped("10Gi", Some("a week"))],
        ] {
            assert_eq!(
                reason(|s| s.proxy.upstreams = bad.clone()),
                "InvalidProxy",
                "{bad:?}"
            );
        }
        let good = vec![
            upstream("docker.io", None, Some("10m")),
            upstream("mirror.local", Some("http://mirror.ns.svc:5000"), None),
            UpstreamSpec {
                name: "ghcr.io".into(),
                ..capped("1.5Gi", Some("3d"))
            },
        ];
        assert_eq!(
            check(&registry(|s| s.proxy.upstreams = good.clone())),
            Ok(())
        );
        let mut long = registry(|_| {});
        long.metadata.name = Some("r".repeat(MAX_NAME_LEN + 1));
        assert_eq!(check(&long).unwrap_err().reason, "NameTooLong");
    }
}
