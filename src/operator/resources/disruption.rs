//! The PodDisruptionBudget `NAME`, with several registry pods on an object
//! store: a node drain (or any other eviction) takes them one at a time, so
//! the others keep serving. One pod gets none: a budget would then either
//! block every drain or allow what happens anyway. Pods that are not ready
//! may always go (where the API server takes that policy): when the bucket
//! is down and every pod unready, a budget must not also hold up the drain.

use super::{Settings, metadata, names, selector_labels};
use crate::operator::crd::Registry;
use crate::operator::validate;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn disruption_budget(registry: &Registry, settings: &Settings) -> Option<PodDisruptionBudget> {
    if !registry.spec.storage.object_store() || validate::replicas(registry) < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(registry, names::disruption_budget(registry), true),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            unhealthy_pod_eviction_policy: settings
                .unhealthy_pod_eviction
                .then(|| "AlwaysAllow".into()),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(registry)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry, settings};
    use super::*;
    use crate::operator::crd::S3Storage;

    fn on_s3(replicas: i32) -> Registry {
        registry(|s| {
            s.replicas = replicas;
            s.storage.s3 = Some(S3Storage {
                bucket: "images".into(),
                path_style: true,
                ..S3Storage::default()
            });
        })
    }

    #[test]
    fn several_pods_on_a_bucket_leave_one_at_a_time() {
        let budget = disruption_budget(&on_s3(3), &settings()).expect("a budget");
        assert_child_meta(&budget.metadata, "cache", true);
        let spec = budget.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(selector_labels(&on_s3(3)))
        );
    }

    #[test]
    fn one_pod_or_a_volume_gets_none() {
        assert_eq!(disruption_budget(&on_s3(1), &settings()), None);
        assert_eq!(disruption_budget(&on_s3(0), &settings()), None);
        // On a volume only one pod runs, whatever is asked.
        assert_eq!(
            disruption_budget(&registry(|s| s.replicas = 3), &settings()),
            None
        );
    }

    #[test]
    fn an_api_server_before_1_27_gets_no_eviction_policy() {
        let old = Settings {
            unhealthy_pod_eviction: false,
            ..settings()
        };
        let budget = disruption_budget(&on_s3(2), &old).unwrap();
        assert_eq!(budget.spec.unwrap().unhealthy_pod_eviction_policy, None);
    }
}
