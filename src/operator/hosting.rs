//! The KEP-1755 ConfigMap in kube-public, from the Registry's side: whether
//! someone else already publishes it, and the finalizer that takes it away with
//! the Registry. It lives in another namespace than the Registry, so no owner
//! reference can clean it up.
//!
//! The order of the writes is what makes it safe: the finalizer is on the
//! Registry before the pass publishes the ConfigMap, and the ConfigMap is gone
//! before the finalizer is dropped, so a Registry deleted at any moment never
//! leaves it behind.

use super::crd::Registry;
use super::resources::configmap::{self, published_by};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The finalizer a Registry carries while it publishes the kube-public ConfigMap.
pub const FINALIZER: &str = "berth.dev/local-registry-hosting";

/// One Registry's hold on the ConfigMap.
pub struct Hosting<'a> {
    client: Client,
    registry: &'a Registry,
    namespace: &'a str,
    name: &'a str,
}

impl<'a> Hosting<'a> {
    pub fn new(client: Client, registry: &'a Registry, namespace: &'a str, name: &'a str) -> Self {
        Hosting {
            client,
            registry,
            namespace,
            name,
        }
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), configmap::NAMESPACE)
    }

    /// Who publishes the ConfigMap when it is not this Registry ("Registry NS/NAME"
    /// or "another tool"): there is one per cluster, and taking it over would
    /// make two owners fight.
    pub async fn taken_by(&self) -> Result<Option<String>, kube::Error> {
        let Some(existing) = self.configmaps().get_opt(configmap::NAME).await? else {
            return Ok(None);
        };
        if published_by(&existing, self.registry) {
            return Ok(None);
        }
        let holder = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(configmap::PUBLISHER_ANNOTATION))
            .map_or("another tool".to_string(), |p| format!("Registry {p}"));
        Ok(Some(holder))
    }

    /// Adds the finalizer while the Registry publishes the ConfigMap; when it
    /// stops, removes the ConfigMap and then the finalizer.
    pub async fn sync_finalizer(&self) -> Result<(), kube::Error> {
        let has = self.has_finalizer();
        let wants = self.registry.spec.local_registry_hosting;
        if wants && !has {
            let mut finalizers = self.registry.finalizers().to_vec();
            finalizers.push(FINALIZER.into());
            self.set_finalizers(finalizers).await?;
        } else if !wants && has {
            self.unpublish().await?;
            self.drop_finalizer().await?;
        }
        Ok(())
    }

    /// For a Registry being deleted: the ConfigMap goes, then the finalizer
    /// that held the Registry back for it.
    pub async fn release(&self) -> Result<(), kube::Error> {
        if self.has_finalizer() {
            self.unpublish().await?;
            self.drop_finalizer().await?;
        }
        Ok(())
    }

    fn has_finalizer(&self) -> bool {
        self.registry.finalizers().iter().any(|f| f == FINALIZER)
    }

    async fn drop_finalizer(&self) -> Result<(), kube::Error> {
        let finalizers = self
            .registry
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(finalizers).await
    }

    /// A merge patch with the resourceVersion: if someone else changed the list
    /// meanwhile, the API server answers Conflict and the pass is retried on the
    /// fresh object, instead of dropping their finalizer.
    async fn set_finalizers(&self, finalizers: Vec<String>) -> Result<(), kube::Error> {
        let registries: Api<Registry> = Api::namespaced(self.client.clone(), self.namespace);
        let patch = json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": self.registry.resource_version(),
            }
        });
        registries
            .patch(self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Deletes the ConfigMap if this Registry published it; another's stays.
    async fn unpublish(&self) -> Result<(), kube::Error> {
        let configmaps = self.configmaps();
        if let Some(existing) = configmaps.get_opt(configmap::NAME).await?
            && published_by(&existing, self.registry)
        {
            configmaps
                .delete(configmap::NAME, &DeleteParams::default())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Through whole passes on the mock API server, since what matters is the
    //! order of the pass's writes.

    use super::*;
    use crate::operator::fixtures::{Cluster, current, edit, fresh, get, pass, registry_path};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::controller::Action;
    use std::sync::{Arc, Mutex};

    const HOSTING: &str = "/api/v1/namespaces/kube-public/configmaps/local-registry-hosting";

    fn requests(cluster: &Mutex<Cluster>) -> usize {
        cluster.lock().unwrap().requests.len()
    }

    fn position(cluster: &Mutex<Cluster>, from: usize, request: &str) -> usize {
        cluster.lock().unwrap().position(from, request)
    }

    #[tokio::test]
    async fn the_finalizer_goes_with_local_registry_hosting() {
        let finalizers = format!("PATCH {}", registry_path());
        let (ctx, cluster, registry) = fresh();
        pass(&ctx, registry).await;
        assert!(get(&cluster, HOSTING).is_some());

        edit(&cluster, |s| s.local_registry_hosting = false);
        let from = requests(&cluster);
        pass(&ctx, current(&cluster)).await;
        assert!(get(&cluster, HOSTING).is_none(), "unpublished");
        assert!(
            current(&cluster).finalizers().is_empty(),
            "finalizer removed"
        );
        // The ConfigMap goes before the finalizer that stands for it.
        assert!(
            position(&cluster, from, &format!("DELETE {HOSTING}"))
                < position(&cluster, from, &finalizers)
        );

        // Turned on again: the finalizer comes back before the ConfigMap.
        edit(&cluster, |s| s.local_registry_hosting = true);
        let from = requests(&cluster);
        pass(&ctx, current(&cluster)).await;
        assert_eq!(current(&cluster).finalizers(), [FINALIZER]);
        assert!(get(&cluster, HOSTING).is_some());
        assert!(
            position(&cluster, from, &finalizers)
                < position(&cluster, from, &format!("PATCH {HOSTING}"))
        );
    }

    #[tokio::test]
    async fn deleting_the_registry_unpublishes_it() {
        let (ctx, cluster, registry) = fresh();
        pass(&ctx, registry).await;
        let mut deleting = cluster.lock().unwrap().registry();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let from = requests(&cluster);
        assert_eq!(pass(&ctx, Arc::new(deleting)).await, Action::await_change());
        assert!(get(&cluster, HOSTING).is_none());
        assert!(current(&cluster).finalizers().is_empty());
        // The ConfigMap goes before the finalizer that stands for it.
        assert!(
            position(&cluster, from, &format!("DELETE {HOSTING}"))
                < position(&cluster, from, &format!("PATCH {}", registry_path()))
        );
    }

    #[tokio::test]
    async fn another_publisher_is_left_alone() {
        let (ctx, cluster, registry) = fresh();
        let theirs = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
            "data": {"localRegistryHosting.v1": "host: localhost:5001\n"}});
        cluster
            .lock()
            .unwrap()
            .insert(HOSTING.into(), theirs.clone());
        pass(&ctx, registry).await;
        let c = cluster.lock().unwrap();
        assert_eq!(c.objects[HOSTING]["data"], theirs["data"]);
        assert!(c.events.contains(&"LocalRegistryHostingTaken".to_string()));
    }
}
