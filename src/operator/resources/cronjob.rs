//! The CronJob `NAME-gc`: asks the running registry to collect garbage over HTTP
//! (`berth gc`) with the admin token. It never mounts the volume, so it runs on
//! any node even when the volume is ReadWriteOnce and held by the registry pod.

use super::deployment::secret_volume;
use super::{
    ADMIN_DIR, Settings, TOKEN_KEY, cluster_address, container_security_context, helper_pod_labels,
    metadata, names, pod_security_context,
};
use crate::operator::crd::Registry;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, PodSpec, PodTemplateSpec, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// A run missed by more than this (controller down, node trouble) is skipped
/// rather than started late; the next one comes on schedule.
pub const STARTING_DEADLINE_SECONDS: i64 = 3600;

/// The `app.kubernetes.io/name` of the GC Jobs and their pods.
pub const POD_APP_NAME: &str = "berth-gc";

/// The CronJob, or None when `spec.gc.enabled` is false.
pub fn cronjob(registry: &Registry, settings: &Settings) -> Option<CronJob> {
    let gc = &registry.spec.gc;
    if !gc.enabled {
        return None;
    }
    let mut args: Vec<String> = vec![
        "gc".into(),
        "--url".into(),
        format!("http://{}", cluster_address(registry)),
        "--token-file".into(),
        format!("{ADMIN_DIR}/{TOKEN_KEY}"),
    ];
    if gc.delete_untagged {
        args.push("--delete-untagged".into());
    }
    if let Some(grace) = &gc.grace {
        args.extend(["--grace".into(), grace.clone()]);
    }

    let container = Container {
        name: "gc".into(),
        image: Some(settings.image.clone()),
        args: Some(args),
        // The job only sends a request and waits; the registry does the work.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("128Mi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![VolumeMount {
            name: "admin".into(),
            mount_path: ADMIN_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };

    let spec = &registry.spec;
    Some(CronJob {
        metadata: metadata(registry, names::gc(registry), true),
        spec: CronJobSpec {
            schedule: gc.schedule.clone(),
            suspend: Some(gc.suspend),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(helper_pod_labels(registry, POD_APP_NAME)),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(helper_pod_labels(registry, POD_APP_NAME)),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(PodSpec {
                            containers: vec![container],
                            // Never, so a failed run's pod (and its log) stays.
                            restart_policy: Some("Never".into()),
                            volumes: Some(vec![secret_volume(
                                "admin",
                                names::admin(registry),
                                TOKEN_KEY,
                            )]),
                            security_context: Some(pod_security_context()),
                            automount_service_account_token: Some(false),
                            enable_service_links: Some(false),
                            // Placement rules a cluster imposes on every pod; the
                            // registry's affinity is about the registry, not this job.
                            node_selector: spec.node_selector.clone(),
                            tolerations: spec.tolerations.clone(),
                            ..PodSpec::default()
                        }),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry, settings};
    use super::super::{selector_labels, service};
    use super::*;

    fn pod(c: &CronJob) -> &PodSpec {
        c.spec
            .job_template
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    #[test]
    fn defaults() {
        let c = cronjob(&registry(|_| {}), &settings()).unwrap();
        assert_child_meta(&c.metadata, "cache-gc", true);
        let spec = &c.spec;
        assert_eq!(spec.schedule, "0 3 * * 0");
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(spec.starting_deadline_seconds, Some(3600));
        assert_eq!(spec.successful_jobs_history_limit, Some(1));
        assert_eq!(spec.failed_jobs_history_limit, Some(3));
        let container = &pod(&c).containers[0];
        assert_eq!(container.image.as_deref(), Some("ghcr.io/berth/berth:1.0"));
        assert_eq!(
            container.args.as_deref().unwrap(),
            [
                "gc",
                "--url",
                "http://cache.dev.svc:5000",
                "--token-file",
                "/etc/berth/admin/token"
            ]
        );
    }

    #[test]
    fn mounts_only_the_admin_secret() {
        let c = cronjob(&registry(|_| {}), &settings()).unwrap();
        let volumes = pod(&c).volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 1);
        assert!(volumes[0].persistent_volume_claim.is_none());
        assert_eq!(
            volumes[0].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("cache-admin")
        );
        let mounts = pod(&c).containers[0].volume_mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_path, "/etc/berth/admin");
        assert_eq!(mounts[0].read_only, Some(true));
    }

    #[test]
    fn spec_fields() {
        let r = registry(|s| {
            s.gc.schedule = "@daily".into();
            s.gc.suspend = true;
            s.gc.delete_untagged = true;
            s.service.port = 5443;
        });
        let c = cronjob(&r, &settings()).unwrap();
        let spec = &c.spec;
        assert_eq!(spec.schedule, "@daily");
        assert_eq!(spec.suspend, Some(true));
        let args = pod(&c).containers[0].args.clone().unwrap();
        assert_eq!(args.last().map(String::as_str), Some("--delete-untagged"));
        assert!(!args.contains(&"--grace".to_string()), "{args:?}");
        assert_eq!(args[2], "http://cache.dev.svc:5443");
        let short = registry(|s| s.gc.grace = Some("5m".into()));
        let args = pod(&cronjob(&short, &settings()).unwrap()).containers[0]
            .args
            .clone()
            .unwrap();
        assert_eq!(args[args.len() - 2..], ["--grace", "5m"]);
        assert!(cronjob(&registry(|s| s.gc.enabled = false), &settings()).is_none());
    }

    #[test]
    fn its_pods_are_not_registry_pods() {
        let r = registry(|_| {});
        let c = cronjob(&r, &settings()).unwrap();
        let template = &c.spec.job_template.spec.as_ref().unwrap().template;
        let pod_labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(pod_labels["app.kubernetes.io/name"], "berth-gc");
        assert_eq!(pod_labels["app.kubernetes.io/instance"], "cache");
        let service_selector = service::cluster_service(&r).spec.unwrap().selector.unwrap();
        let selects = |selector: &BTreeMap<String, String>| {
            selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
        };
        assert!(
            !selects(&service_selector),
            "the Service would send requests to the GC pod {pod_labels:?}"
        );
        assert!(!selects(&selector_labels(&r)));
    }
}
