//! The PersistentVolumeClaim `NAME-data` that holds the images. It is owned by the
//! Registry only with `deletePolicy: Delete`: by default, deleting a Registry
//! keeps its images.

use super::{metadata, names};
use crate::operator::crd::{DeletePolicy, Registry};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use std::collections::BTreeMap;

pub fn pvc(registry: &Registry) -> PersistentVolumeClaim {
    let storage = &registry.spec.storage;
    PersistentVolumeClaim {
        metadata: metadata(
            registry,
            names::data(registry),
            storage.delete_policy == DeletePolicy::Delete,
        ),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(
                storage
                    .access_modes
                    .iter()
                    .map(|m| m.as_str().to_string())
                    .collect(),
            ),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The storage request of a claim, as written.
pub fn requested_size(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.as_str())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry};
    use super::*;
    use crate::operator::crd::AccessMode;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn defaults() {
        let claim = pvc(&registry(|_| {}));
        assert_child_meta(&claim.metadata, "cache-data", false);
        assert_eq!(claim.metadata.namespace.as_deref(), Some("dev"));
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(spec.storage_class_name, None);
        assert_eq!(requested_size(&claim), Some("20Gi"));
    }

    #[test]
    fn spec_fields() {
        let claim = pvc(&registry(|s| {
            s.storage.size = Quantity("100Gi".into());
            s.storage.storage_class_name = Some("fast".into());
            s.storage.access_modes = vec![AccessMode::ReadWriteMany];
        }));
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteMany".to_string()]));
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(requested_size(&claim), Some("100Gi"));
    }

    #[test]
    fn owned_only_when_deleted_with_the_registry() {
        let claim = pvc(&registry(|s| {
            s.storage.delete_policy = DeletePolicy::Delete
        }));
        assert_child_meta(&claim.metadata, "cache-data", true);
    }
}
