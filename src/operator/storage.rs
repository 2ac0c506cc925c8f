//! What to do with the volume claim on a pass, decided from the claim the spec
//! asks for and the one that exists: create it, leave it, grow it (when its
//! StorageClass allows), or refuse a shrink or a change the API server would
//! reject, with the reason the StorageReady condition shows. Pure, so every case
//! has a unit test.

use super::quantity::Amount;
use super::resources::pvc::requested_size;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;

/// The claim's fate on this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Apply the claim as built (new, unchanged, or growing).
    Apply { grow_from: Option<String> },
    /// Leave the existing claim alone: the spec asks for something that cannot be
    /// done. `reason` and `message` go to StorageReady and Degraded.
    Refuse {
        reason: &'static str,
        message: String,
    },
}

/// The first step: whether the spec grows the claim (then the StorageClass must
/// be read to decide), or the plan is already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Settled(Plan),
    /// Growing from the existing request; needs [`decide_growth`].
    Grow {
        from: String,
        class: Option<String>,
    },
}

pub fn change(desired: &PersistentVolumeClaim, existing: Option<&PersistentVolumeClaim>) -> Change {
    let Some(existing) = existing else {
        return Change::Settled(Plan::Apply { grow_from: None });
    };
    let (desired_spec, existing_spec) = (
        desired.spec.clone().unwrap_or_default(),
        existing.spec.clone().unwrap_or_default(),
    );
    // Everything but the size is fixed once the claim exists; an apply that
    // changes it fails on every pass, so say so instead.
    if desired_spec.storage_class_name.is_some()
        && desired_spec.storage_class_name != existing_spec.storage_class_name
    {
        return refuse(
            "StorageClassImmutable",
            format!(
                "the claim was made with storageClassName {:?}; a claim's class cannot change (move the data to a new Registry to change it)",
                existing_spec.storage_class_name.unwrap_or_default()
            ),
        );
    }
    if existing_spec.access_modes.is_some()
        && desired_spec.access_modes != existing_spec.access_modes
    {
        return refuse(
            "AccessModesImmutable",
            format!(
                "the claim was made with accessModes {:?}; they cannot change",
                existing_spec.access_modes.unwrap_or_default()
            ),
        );
    }

    let (Some(want), Some(have)) = (requested_size(desired), requested_size(existing)) else {
        return Change::Settled(Plan::Apply { grow_from: None });
    };
    let (Ok(want_amount), Ok(have_amount)) = (Amount::parse(want), Amount::parse(have)) else {
        // The existing request came from the API server, which only stores valid
        // quantities, and the spec's was validated; apply and let the server judge.
        return Change::Settled(Plan::Apply { grow_from: None });
    };
    match want_amount.cmp(&have_amount) {
        std::cmp::Ordering::Less => refuse(
            "ShrinkNotSupported",
            format!(
                "spec.storage.size {want} is smaller than the claim's {have}; a volume cannot shrink, so the claim stays at {have}"
            ),
        ),
        std::cmp::Ordering::Equal => Change::Settled(Plan::Apply { grow_from: None }),
        std::cmp::Ordering::Greater => Change::Grow {
            from: have.to_string(),
            class: existing_spec.storage_class_name,
        },
    }
}

/// The second step of a growth: only a StorageClass with `allowVolumeExpansion`
/// lets the API server accept a larger request.
pub fn decide_growth(
    from: String,
    class_name: Option<&str>,
    class: Option<&StorageClass>,
    to: &str,
) -> Plan {
    match (class_name, class) {
        (_, Some(class)) if class.allow_volume_expansion == Some(true) => Plan::Apply {
            grow_from: Some(from),
        },
        (Some(name), Some(_)) => Plan::Refuse {
            reason: "ExpansionNotSupported",
            message: format!(
                "StorageClass {name} does not set allowVolumeExpansion, so the claim cannot grow from {from} to {to}; it stays at {from}"
            ),
        },
        (Some(name), None) => Plan::Refuse {
            reason: "ExpansionNotSupported",
            message: format!(
                "StorageClass {name} of the claim does not exist, so the claim cannot grow from {from} to {to}; it stays at {from}"
            ),
        },
        (None, _) => Plan::Refuse {
            reason: "ExpansionNotSupported",
            message: format!(
                "the claim has no StorageClass (a static volume), so it cannot grow from {from} to {to}; it stays at {from}"
            ),
        },
    }
}

fn refuse(reason: &'static str, message: String) -> Change {
    Change::Settled(Plan::Refuse { reason, message })
}

/// StorageReady when the claim is not refused: `(ready, reason, message)` from the
/// claim the API server returned.
pub fn readiness(claim: &PersistentVolumeClaim) -> (bool, &'static str, String) {
    let status = claim.status.clone().unwrap_or_default();
    let requested = requested_size(claim).unwrap_or_default().to_string();
    let capacity = capacity(claim);
    match status.phase.as_deref() {
        Some("Bound") => {
            let grown = match (
                capacity.as_deref().map(Amount::parse),
                Amount::parse(&requested),
            ) {
                (Some(Ok(have)), Ok(want)) => have >= want,
                _ => true,
            };
            if grown {
                (true, "Bound", format!("the volume holds {}", capacity.unwrap_or(requested)))
            } else {
                (
                    false,
                    "Resizing",
                    format!(
                        "the volume is growing from {} to {requested}",
                        capacity.unwrap_or_default()
                    ),
                )
            }
        }
        Some("Lost") => (
            false,
            "Lost",
            "the claim lost its volume; the registry's data is gone".into(),
        ),
        _ => (
            false,
            "Pending",
            "waiting for a volume (a WaitForFirstConsumer class binds it once the registry pod is scheduled)".into(),
        ),
    }
}

/// The claim's capacity once bound.
pub fn capacity(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .status
        .as_ref()?
        .capacity
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::AccessMode;
    use crate::operator::resources::pvc::pvc;
    use crate::operator::resources::test_support::registry;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn claim(size: &str) -> PersistentVolumeClaim {
        let mut claim = pvc(&registry(|s| s.storage.size = Quantity(size.into())));
        claim.spec.as_mut().unwrap().storage_class_name = Some("standard".into());
        claim
    }

    fn desired(size: &str) -> PersistentVolumeClaim {
        pvc(&registry(|s| s.storage.size = Quantity(size.into())))
    }

    fn class(expand: Option<bool>) -> StorageClass {
        StorageClass {
            allow_volume_expansion: expand,
            ..StorageClass::default()
        }
    }

    #[test]
    fn a_new_claim_is_applied() {
        assert_eq!(
            change(&desired("20Gi"), None),
            Change::Settled(Plan::Apply { grow_from: None })
        );
    }

    #[test]
    fn the_same_size_in_other_words_is_no_change() {
        assert_eq!(
            change(&desired("1Gi"), Some(&claim("1024Mi"))),
            Change::Settled(Plan::Apply { grow_from: None })
        );
    }

    #[test]
    fn a_shrink_is_refused() {
        match change(&desired("10Gi"), Some(&claim("1Ti"))) {
            Change::Settled(Plan::Refuse { reason, message }) => {
                assert_eq!(reason, "ShrinkNotSupported");
                assert!(
                    message.contains("10Gi") && message.contains("1Ti"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn growth_depends_on_the_storage_class() {
        let Change::Grow { from, class: name } = change(&desired("50Gi"), Some(&claim("20Gi")))
        else {
            panic!("not a growth");
        };
        assert_eq!((from.as_str(), name.as_deref()), ("20Gi", Some("standard")));
        assert_eq!(
            decide_growth(
                from.clone(),
                name.as_deref(),
                Some(&class(Some(true))),
                "50Gi"
            ),
            Plan::Apply {
                grow_from: Some("20Gi".into())
            }
        );
        for refused in [
            decide_growth(from.clone(), name.as_deref(), Some(&class(None)), "50Gi"),
            decide_growth(
                from.clone(),
                name.as_deref(),
                Some(&class(Some(false))),
                "50Gi",
            ),
        ] {
            let Plan::Refuse { reason, message } = refused else {
                panic!("growth allowed");
            };
            assert_eq!(reason, "ExpansionNotSupported");
            assert!(message.contains("StorageClass standard"), "{message}");
        }
        let Plan::Refuse { message, .. } =
            decide_growth(from.clone(), name.as_deref(), None, "50Gi")
        else {
            panic!("growth allowed");
        };
        assert!(message.contains("does not exist"), "{message}");
        assert!(matches!(
            decide_growth(from, None, None, "50Gi"),
            Plan::Refuse { .. }
        ));
    }

    #[test]
    fn immutable_fields_are_refused() {
        let mut other_class = desired("20Gi");
        other_class.spec.as_mut().unwrap().storage_class_name = Some("fast".into());
        assert!(matches!(
            change(&other_class, Some(&claim("20Gi"))),
            Change::Settled(Plan::Refuse {
                reason: "StorageClassImmutable",
                ..
            })
        ));
        // Leaving the class to the cluster's default is no change.
        assert_eq!(
            change(&desired("20Gi"), Some(&claim("20Gi"))),
            Change::Settled(Plan::Apply { grow_from: None })
        );
        let rwx = pvc(&registry(|s| {
            s.storage.access_modes = vec![AccessMode::ReadWriteMany]
        }));
        assert!(matches!(
            change(&rwx, Some(&claim("20Gi"))),
            Change::Settled(Plan::Refuse {
                reason: "AccessModesImmutable",
                ..
            })
        ));
    }

    #[test]
    fn readiness_follows_the_claim() {
        let mut c = claim("20Gi");
        assert_eq!(readiness(&c).1, "Pending");
        c.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity("20Gi".into()),
            )])),
            ..PersistentVolumeClaimStatus::default()
        });
        assert!(readiness(&c).0);
        assert_eq!(capacity(&c).as_deref(), Some("20Gi"));
        let bigger = PersistentVolumeClaim {
            spec: claim("40Gi").spec,
            ..c.clone()
        };
        let (ready, reason, message) = readiness(&bigger);
        assert_eq!((ready, reason), (false, "Resizing"));
        assert!(message.contains("20Gi") && message.contains("40Gi"));
    }
}
