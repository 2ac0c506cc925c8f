//! The objects `berth enable` installs: exactly the documents of
//! manifests/install.yaml (the chart rendered with its defaults, the CRD
//! included), compiled in, with the operator's image swapped for `--image`. One
//! source for the three ways to install (helm, `kubectl apply -f`, `berth
//! enable`); tests/deploy_files.rs keeps install.yaml equal to the chart.
//!
//! Every kind the file holds is mapped here to its API resource (and scope), so
//! no discovery round-trip is needed, and a test fails if the chart grows a kind
//! this table does not know.

use super::InstallError;
use crate::image::DEFAULT_IMAGE;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::Value;

pub const INSTALL_YAML: &str = include_str!("../../manifests/install.yaml");

/// The namespace install.yaml puts the operator in.
pub const OPERATOR_NAMESPACE: &str = "berth-system";
/// The operator's Deployment in that namespace.
pub const OPERATOR_DEPLOYMENT: &str = "berth-operator";

/// One document of install.yaml, ready to apply.
#[derive(Debug, Clone)]
pub struct Object {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        &self.resource.kind
    }

    /// The API of this object's kind, in its namespace if it has one.
    pub fn api(&self, client: &Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        }
    }

    pub fn is_crd(&self) -> bool {
        self.kind() == "CustomResourceDefinition"
    }
}

/// The API resource of a kind install.yaml holds, and whether it is namespaced.
fn resource(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => (ApiResource::erase::<Namespace>(&()), false),
        ("v1", "ServiceAccount") => (ApiResource::erase::<ServiceAccount>(&()), true),
        ("v1", "Service") => (ApiResource::erase::<Service>(&()), true),
        ("apps/v1", "Deployment") => (ApiResource::erase::<Deployment>(&()), true),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            (ApiResource::erase::<ClusterRole>(&()), false)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            (ApiResource::erase::<ClusterRoleBinding>(&()), false)
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            (ApiResource::erase::<CustomResourceDefinition>(&()), false)
        }
        _ => return None,
    })
}

/// The documents of install.yaml in their order (namespace, CRD, RBAC, the
/// operator), with the operator (and the registries it deploys) on `image`.
pub fn objects(image: &str) -> Result<Vec<Object>, InstallError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(INSTALL_YAML)
        .map_err(|e| InstallError::Manifest(e.to_string()))?;
    documents
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|mut body| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let (api_version, kind) = (text(&body["apiVersion"]), text(&body["kind"]));
            let name = text(&body["metadata"]["name"]);
            let (resource, namespaced) = resource(&api_version, &kind).ok_or_else(|| {
                InstallError::Manifest(format!("unknown kind {api_version} {kind}"))
            })?;
            let namespace = namespaced.then(|| {
                body["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(OPERATOR_NAMESPACE)
                    .to_string()
            });
            if kind == "Deployment" {
                set_image(&mut body, image);
            }
            Ok(Object {
                resource,
                namespace,
                name,
                body,
            })
        })
        .collect()
}

/// Puts `image` where install.yaml has the default one: the containers' image
/// and their BERTH_IMAGE, which the operator passes on to every registry.
fn set_image(deployment: &mut Value, image: &str) {
    let Some(containers) = deployment["spec"]["template"]["spec"]["containers"].as_array_mut()
    else {
        return;
    };
    for container in containers {
        if container["image"] == DEFAULT_IMAGE {
            container["image"] = image.into();
        }
        for env in container["env"].as_array_mut().into_iter().flatten() {
            if env["name"] == "BERTH_IMAGE" {
                env["value"] = image.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_of_install_yaml_is_known() {
        let objects = objects(DEFAULT_IMAGE).unwrap();
        let kinds: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o.kind(), o.name))
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace/berth-system",
                "CustomResourceDefinition/registries.berth.dev",
                "ServiceAccount/berth-operator",
                "ClusterRole/berth-operator",
                "ClusterRoleBinding/berth-operator",
                "Service/berth-operator-metrics",
                "Deployment/berth-operator",
            ]
        );
        for object in &objects {
            let namespaced = object.namespace.is_some();
            assert_eq!(
                namespaced,
                matches!(object.kind(), "ServiceAccount" | "Service" | "Deployment"),
                "{}",
                object.name
            );
        }
    }

    #[test]
    fn install_yaml_deploys_the_default_image_and_enable_swaps_it() {
        let image_of = |objects: &[Object]| {
            let deployment = objects.iter().find(|o| o.kind() == "Deployment").unwrap();
            let container = &deployment.body["spec"]["template"]["spec"]["containers"][0];
            (
                container["image"].as_str().unwrap().to_string(),
                container["env"][0]["value"].as_str().unwrap().to_string(),
                container["imagePullPolicy"].as_str().unwrap().to_string(),
            )
        };
        let default = image_of(&objects(DEFAULT_IMAGE).unwrap());
        assert_eq!(
            default.0, DEFAULT_IMAGE,
            "the chart's image is berth's default"
        );
        assert_eq!(default.1, DEFAULT_IMAGE);
        assert_eq!(
            default.2, "IfNotPresent",
            "an imported image is used as it is"
        );
        let other = image_of(&objects("localhost:32000/berth:dev").unwrap());
        assert_eq!(other.0, "localhost:32000/berth:dev");
        assert_eq!(other.1, "localhost:32000/berth:dev");
    }

    #[test]
    fn the_crd_in_install_yaml_is_the_operator_crd() {
        let crd = objects(DEFAULT_IMAGE)
            .unwrap()
            .into_iter()
            .find(Object::is_crd)
            .unwrap();
        let generated =
            serde_json::to_value(<crate::operator::Registry as kube::CustomResourceExt>::crd())
                .unwrap();
        assert_eq!(crd.body["spec"], generated["spec"]);
    }
}
