//! The status a pass writes: the conditions, endpoints, volume size and image
//! from what it applied, or Degraded with the reason when it could not act on
//! the spec. Pure, so the pass only publishes the Warning and patches it.

use super::bucket;
use super::crd::{Registry, RegistryStatus};
use super::resources::{endpoints, pvc};
use super::status::{DEGRADED, PROGRESSING, READY, Rollout, STORAGE_READY, Wanted, merge, wanted};
use super::storage::{self, Plan};
use super::validate::{self, Invalid};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What a pass that applied the children learned, for the status.
pub struct Applied {
    pub image: String,
    pub claim: Option<PersistentVolumeClaim>,
    pub storage: Plan,
    pub rollout: Rollout,
    pub upstreams: Vec<super::crd::UpstreamState>,
}

/// The status a pass writes, and the Degraded condition to announce in a
/// Warning event when it is news.
pub struct Report {
    pub status: RegistryStatus,
    pub warning: Option<Wanted>,
}

/// The status after a pass that applied the children.
pub fn applied(registry: &Registry, outcome: &Applied, now: &Time) -> Report {
    let rollout = &outcome.rollout;
    let (storage_condition, storage_trouble) = match (&outcome.storage, &outcome.claim) {
        _ if let Some(bucket) = bucket::of(&registry.spec.storage) => {
            (bucket_condition(&bucket.config.url, rollout), None)
        }
        (Plan::Refuse { reason, message }, _) => (
            wanted(STORAGE_READY, false, *reason, message.clone()),
            Some((reason.to_string(), message.clone())),
        ),
        (Plan::Apply { .. }, Some(claim)) => {
            let (ready, reason, message) = storage::readiness(claim);
            (wanted(STORAGE_READY, ready, reason, message), None)
        }
        (Plan::Apply { .. }, None) => (
            wanted(
                STORAGE_READY,
                false,
                "Pending",
                "the claim is being created",
            ),
            None,
        ),
    };
    // What the pass applied but not as the spec asks, first the refusals of
    // the spec (they need the user), then a rollout that failed. One
    // Degraded condition holds one reason: the first.
    let replicas_trouble =
        validate::refused_replicas(registry).map(|i| (i.reason.to_string(), i.message));
    let degraded = match storage_trouble
        .or(replicas_trouble)
        .or_else(|| rollout.failure.clone())
    {
        Some((reason, message)) => wanted(DEGRADED, true, reason, message),
        None => wanted(
            DEGRADED,
            false,
            "AsExpected",
            "every child is as the spec asks",
        ),
    };
    let wanted_conditions = vec![
        rollout.ready.clone(),
        rollout.progressing.clone(),
        degraded,
        storage_condition,
    ];
    let old = registry.status.clone().unwrap_or_default();
    let generation = registry.metadata.generation;
    Report {
        warning: warning(&old, &wanted_conditions),
        status: RegistryStatus {
            observed_generation: generation,
            conditions: merge(&old.conditions, wanted_conditions, generation, now),
            ready_replicas: rollout.ready_replicas,
            endpoints: endpoints(registry),
            storage_size: outcome.claim.as_ref().and_then(|c| {
                storage::capacity(c).or_else(|| pvc::requested_size(c).map(String::from))
            }),
            image: Some(outcome.image.clone()),
            upstreams: outcome.upstreams.clone(),
        },
    }
}

/// StorageReady on an object store. A registry pod is ready only once its
/// /readyz wrote to the bucket and removed what it wrote, so a ready pod of
/// the current template is the store's proof. Not an older pod: during a
/// move from a volume, or to other credentials, it proves nothing of the
/// bucket the spec now names. One unready pod among current ones (evicted,
/// restarting) changes nothing.
fn bucket_condition(url: &str, rollout: &Rollout) -> Wanted {
    if rollout.current && rollout.ready_replicas > 0 {
        wanted(
            STORAGE_READY,
            true,
            "ObjectStore",
            format!("the images are in {url}, which the registry pods write to"),
        )
    } else {
        wanted(
            STORAGE_READY,
            false,
            "ObjectStoreUnconfirmed",
            format!(
                "the images are in {url}; no registry pod of the current spec is ready yet to show it can write there"
            ),
        )
    }
}

/// Degraded with the reason; the rest of the status stays as it was, since
/// the children were left as they were.
pub fn invalid(registry: &Registry, invalid: &Invalid, now: &Time) -> Report {
    let old = registry.status.clone().unwrap_or_default();
    let generation = registry.metadata.generation;
    let mut wanted_conditions = vec![
        wanted(DEGRADED, true, invalid.reason, invalid.message.clone()),
        wanted(
            PROGRESSING,
            false,
            invalid.reason,
            "the operator waits for a spec it can act on",
        ),
    ];
    if !old.conditions.iter().any(|c| c.type_ == READY) {
        wanted_conditions.push(wanted(
            READY,
            false,
            invalid.reason,
            invalid.message.clone(),
        ));
    }
    Report {
        warning: warning(&old, &wanted_conditions),
        status: RegistryStatus {
            observed_generation: generation,
            conditions: merge(&old.conditions, wanted_conditions, generation, now),
            ..old
        },
    }
}

/// Degraded when it turns true or its reason changes; repeating the Warning
/// every pass would only bury the other events.
fn warning(old: &RegistryStatus, wanted_conditions: &[Wanted]) -> Option<Wanted> {
    let degraded = wanted_conditions
        .iter()
        .find(|w| w.type_ == DEGRADED && w.status)?;
    let unchanged = old
        .conditions
        .iter()
        .any(|c| c.type_ == DEGRADED && c.status == "True" && c.reason == degraded.reason);
    (!unchanged).then(|| degraded.clone())
}

#[cfg(test)]
mod tests {
    //! The status whole passes write, on the mock API server of fixtures.rs.

    use super::*;
    use crate::operator::crd::{AccessMode, RegistrySpec};
    use crate::operator::fixtures::{
        self, Scenario, condition, context, current, default_children, edit, get, pass, path,
        status_of,
    };
    use crate::operator::reconcile::{INVALID_RETRY, RESYNC};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::runtime::controller::Action;

    #[tokio::test]
    async fn a_shrink_is_refused_in_the_status() {
        let spec = RegistrySpec::default(); // 20Gi, while the claim has 50Gi
        let (ctx, cluster) = context(Scenario::Existing {
            spec,
            claim_size: "50Gi".into(),
        });
        pass(&ctx, current(&cluster)).await;

        let claim_path = path("v1", "persistentvolumeclaims", "cache-data");
        {
            let c = cluster.lock().unwrap();
            assert!(
                !c.requested("PATCH", &claim_path),
                "the claim was left alone"
            );
            assert_eq!(
                c.objects[&claim_path]["spec"]["resources"]["requests"]["storage"],
                "50Gi"
            );
            assert!(c.events.contains(&"ShrinkNotSupported".to_string()));
            assert!(
                c.objects
                    .contains_key(&path("apps/v1", "deployments", "cache")),
                "the rest is applied"
            );
        }

        let registry = status_of(&cluster);
        let storage = condition(&registry, STORAGE_READY).unwrap();
        assert_eq!(
            (storage.status.as_str(), storage.reason.as_str()),
            ("False", "ShrinkNotSupported")
        );
        assert!(storage.message.contains("20Gi") && storage.message.contains("50Gi"));
        assert_eq!(condition(&registry, DEGRADED).unwrap().status, "True");
        assert_eq!(
            registry.status.unwrap().storage_size.as_deref(),
            Some("50Gi")
        );
    }

    #[test]
    fn on_a_bucket_only_pods_of_the_current_spec_confirm_it() {
        let rollout = |current, ready_replicas| Rollout {
            ready_replicas,
            current,
            ready: wanted(READY, ready_replicas > 0, "Test", ""),
            progressing: wanted(PROGRESSING, !current, "Test", ""),
            failure: None,
        };
        assert!(bucket_condition("s3://images", &rollout(true, 2)).status);
        // The old pod on the volume (or with the old credentials) still
        // serves while the new ones start: it proves nothing of the bucket.
        let rolling = bucket_condition("s3://images", &rollout(false, 1));
        assert!(!rolling.status);
        assert_eq!(rolling.reason, "ObjectStoreUnconfirmed");
        assert!(!bucket_condition("s3://images", &rollout(true, 0)).status);
    }

    #[tokio::test]
    async fn on_an_object_store_many_pods_run_with_no_claim() {
        let mut spec = RegistrySpec {
            replicas: 3,
            ..RegistrySpec::default()
        };
        spec.storage.s3 = Some(crate::operator::crd::S3Storage {
            bucket: "images".into(),
            endpoint: Some("http://minio.minio.svc:9000".into()),
            path_style: true,
            credentials_secret: Some("s3-login".into()),
            ..Default::default()
        });
        let (ctx, cluster) = context(Scenario::Fresh(spec));
        let deployment_path = path("apps/v1", "deployments", "cache");
        let budget_path = path("policy/v1", "poddisruptionbudgets", "cache");
        let secret_path = path("v1", "secrets", "s3-login");
        let login = |keys: serde_json::Value| {
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s3-login", "namespace": fixtures::NAMESPACE},
                "data": keys})
        };

        // No Secret yet, then one without the variables: nothing is deployed.
        assert_eq!(
            pass(&ctx, current(&cluster)).await,
            Action::requeue(INVALID_RETRY)
        );
        let registry = status_of(&cluster);
        let degraded = condition(&registry, DEGRADED).unwrap();
        assert_eq!(degraded.reason, "StorageSecretMissing");
        assert!(
            degraded
                .message
                .contains("Secret s3-login is not in namespace"),
            "{}",
            degraded.message
        );
        cluster.lock().unwrap().insert(
            secret_path.clone(),
            login(serde_json::json!({"accesskey": "YQ==", "secretkey": "Yg=="})),
        );
        pass(&ctx, current(&cluster)).await;
        let registry = status_of(&cluster);
        let degraded = condition(&registry, DEGRADED).unwrap();
        assert!(
            degraded
                .message
                .contains("needs the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{}",
            degraded.message
        );
        assert!(get(&cluster, &deployment_path).is_none());

        let keys =
            serde_json::json!({"AWS_ACCESS_KEY_ID": "YQ==", "AWS_SECRET_ACCESS_KEY": "Yg=="});
        cluster
            .lock()
            .unwrap()
            .insert(secret_path.clone(), login(keys));
        assert_eq!(pass(&ctx, current(&cluster)).await, Action::requeue(RESYNC));
        let deployment = get(&cluster, &deployment_path).unwrap();
        assert_eq!(deployment["spec"]["replicas"], 3);
        let hash_of = |d: &serde_json::Value| {
            d["spec"]["template"]["metadata"]["annotations"]["berth.dev/storage-credentials-version"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let first_hash = hash_of(&deployment);
        let budget = get(&cluster, &budget_path).expect("a PodDisruptionBudget");
        assert_eq!(budget["spec"]["maxUnavailable"], 1);
        {
            let c = cluster.lock().unwrap();
            let claim = path("v1", "persistentvolumeclaims", "cache-data");
            assert!(!c.requested("PATCH", &claim) && !c.objects.contains_key(&claim));
        }
        let registry = status_of(&cluster);
        let storage = condition(&registry, STORAGE_READY).unwrap();
        assert_eq!(
            (storage.status.as_str(), storage.reason.as_str()),
            ("True", "ObjectStore")
        );
        assert!(
            storage.message.contains("s3://images"),
            "{}",
            storage.message
        );
        assert_eq!(condition(&registry, DEGRADED).unwrap().status, "False");
        let status = registry.status.unwrap();
        assert_eq!(status.ready_replicas, 3);
        assert_eq!(status.storage_size, None);

        // New credentials roll the pods; one replica needs no budget.
        let keys =
            serde_json::json!({"AWS_ACCESS_KEY_ID": "YQ==", "AWS_SECRET_ACCESS_KEY": "Yw=="});
        cluster.lock().unwrap().insert(secret_path, login(keys));
        edit(&cluster, |s| s.replicas = 1);
        pass(&ctx, current(&cluster)).await;
        let deployment = get(&cluster, &deployment_path).unwrap();
        assert_ne!(hash_of(&deployment), first_hash);
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert!(
            get(&cluster, &budget_path).is_none(),
            "the budget is deleted"
        );
    }

    #[tokio::test]
    async fn more_than_one_replica_is_refused_and_one_pod_runs() {
        for (modes, strategy) in [
            (vec![AccessMode::ReadWriteMany], "RollingUpdate"),
            (vec![AccessMode::ReadWriteOnce], "Recreate"),
        ] {
            let mut spec = RegistrySpec {
                replicas: 2,
                ..RegistrySpec::default()
            };
            spec.storage.access_modes = modes.clone();
            let (ctx, cluster) = context(Scenario::Fresh(spec));
            // Not a spec to wait on: the registry serves, so the usual resync.
            assert_eq!(
                pass(&ctx, current(&cluster)).await,
                Action::requeue(RESYNC),
                "{modes:?}"
            );

            let deployment = get(&cluster, &path("apps/v1", "deployments", "cache"))
                .expect("the Deployment is applied");
            assert_eq!(deployment["spec"]["replicas"], 1, "{modes:?}");
            assert_eq!(
                deployment["spec"]["strategy"]["type"], strategy,
                "{modes:?}"
            );
            for child in default_children() {
                assert!(get(&cluster, &child).is_some(), "{child} for {modes:?}");
            }

            let registry = status_of(&cluster);
            let degraded = condition(&registry, DEGRADED).unwrap();
            assert_eq!(
                (degraded.status.as_str(), degraded.reason.as_str()),
                ("True", "ReplicasNotSupported"),
                "{modes:?}"
            );
            assert!(
                degraded.message.contains("spec.replicas is 2")
                    && degraded.message.contains("set spec.replicas to 1"),
                "{}",
                degraded.message
            );
            // The one pod is all the rollout waits for: it is done and serving.
            assert_eq!(condition(&registry, READY).unwrap().status, "True");
            assert_eq!(
                condition(&registry, PROGRESSING).unwrap().reason,
                "RolloutComplete"
            );
            assert_eq!(registry.status.unwrap().ready_replicas, 1);

            // One Warning event, not one per pass.
            pass(&ctx, current(&cluster)).await;
            let warnings = |c: &std::sync::Mutex<fixtures::Cluster>| {
                c.lock()
                    .unwrap()
                    .events
                    .iter()
                    .filter(|e| *e == "ReplicasNotSupported")
                    .count()
            };
            assert_eq!(warnings(&cluster), 1, "{modes:?}");

            // Asking for one replica clears it.
            edit(&cluster, |s| s.replicas = 1);
            pass(&ctx, current(&cluster)).await;
            let degraded = condition(&status_of(&cluster), DEGRADED).unwrap().clone();
            assert_eq!(
                (degraded.status.as_str(), degraded.reason.as_str()),
                ("False", "AsExpected")
            );
        }
    }

    #[tokio::test]
    async fn a_bad_spec_gives_degraded() {
        let mut spec = RegistrySpec::default();
        spec.storage.size = Quantity("lots".into());
        let (ctx, cluster) = context(Scenario::Fresh(spec));
        assert_eq!(
            pass(&ctx, current(&cluster)).await,
            Action::requeue(INVALID_RETRY)
        );

        {
            let c = cluster.lock().unwrap();
            for child in default_children() {
                assert!(
                    !c.objects.contains_key(&child),
                    "{child} applied for a bad spec"
                );
            }
            assert!(c.events.contains(&"InvalidStorageSize".to_string()));
        }
        let registry = status_of(&cluster);
        let degraded = condition(&registry, DEGRADED).unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "InvalidStorageSize")
        );
        assert!(degraded.message.contains("lots"));
        assert_eq!(condition(&registry, READY).unwrap().status, "False");
        assert_eq!(registry.status.unwrap().observed_generation, Some(1));

        // Again: no second event for the same reason.
        pass(&ctx, current(&cluster)).await;
        let warnings = cluster
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| *e == "InvalidStorageSize")
            .count();
        assert_eq!(warnings, 1);

        // Fixed: the children come, and Degraded clears.
        edit(&cluster, |s| s.storage.size = Quantity("10Gi".into()));
        pass(&ctx, current(&cluster)).await;
        let registry = status_of(&cluster);
        assert_eq!(condition(&registry, DEGRADED).unwrap().status, "False");
        assert_eq!(registry.status.unwrap().observed_generation, Some(2));
    }

    #[tokio::test]
    async fn no_image_anywhere_gives_degraded() {
        let (ctx, cluster) =
            fixtures::context_with_image(Scenario::Fresh(RegistrySpec::default()), None);
        assert_eq!(
            pass(&ctx, current(&cluster)).await,
            Action::requeue(INVALID_RETRY)
        );
        let registry = status_of(&cluster);
        assert_eq!(condition(&registry, DEGRADED).unwrap().reason, "NoImage");
    }
}
