//! The PodDisruptionBudget `NAME`, with several registry pods on an object
//! store: a node drain (or any other eviction) takes them one at a time, so
//! the others keep serving. One pod gets none: a budget would then either
//! block every drain or allow what happens anyway.

use super::{metadata, names, selector_labels};
use crate::operator::crd::Registry;
use crate::operator::validate;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn disruption_budget(registry: &Registry) -> Option<PodDisruptionBudget> {
    if !registry.spec.storage.object_store() || validate::replicas(registry) < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(registry, names::disruption_budget(registry), true),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
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
    use super::super::test_support::{assert_child_meta, registry};
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
        let budget = disruption_budget(&on_s3(3)).expect("a budget");
        assert_child_meta(&budget.metadata, "cache", true);
        let spec = budget.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(selector_labels(&on_s3(3)))
        );
    }

    #[test]
    fn one_pod_or_a_volume_gets_none() {
        assert_eq!(disruption_budget(&on_s3(1)), None);
        assert_eq!(disruption_budget(&on_s3(0)), None);
        // On a volume only one pod runs, whatever is asked.
        assert_eq!(disruption_budget(&registry(|s| s.replicas = 3)), None);
    }
}
