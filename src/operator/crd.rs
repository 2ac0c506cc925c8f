//! The `Registry` custom resource (group `berth.dev`, version `v1alpha1`): its spec
//! with every default, and its status. The CRD that `berth crd` prints and
//! crds/registry.yaml holds is generated from these types, so they are the single
//! source of truth for the schema.
//!
//! Defaults live in serde (`#[serde(default = ...)]`), which puts them in the schema
//! too: the API server fills them in, so `kubectl get reg -o yaml` shows the values
//! the operator acts on, and a Registry read from a file (`berth render`) gets the
//! same ones.

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "berth.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "berth.dev/v1alpha1";
pub const KIND: &str = "Registry";

/// A private OCI registry in this namespace: storage, Services, optional
/// authentication and Ingress, and a scheduled garbage collection.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "Registry",
    plural = "registries",
    shortname = "reg",
    namespaced,
    status = "RegistryStatus",
    derive = "PartialEq",
    doc = "A private OCI registry, deployed and kept by the berth operator",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoints.clusterNetwork"}"#,
    printcolumn = r#"{"name":"UI","type":"string","jsonPath":".status.endpoints.ui"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".status.storageSize"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Image of the registry (and of its GC job). Default: the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of registry pods (0 stops it). On a volume, at most 1, whatever
    /// its access mode: the registry keeps its catalog, caches, garbage
    /// collection pins and commit lock in one process, so a second pod on the
    /// same volume would miss repositories pushed through the first and could
    /// delete blobs it just committed; the operator then runs 1 pod and sets
    /// Degraded (reason ReplicasNotSupported). With an object store
    /// (storage.s3, azure or gcs), any number: everything is in the bucket.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub service: ServiceSpec,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub ingress: IngressSpec,
    #[serde(default)]
    pub gc: GcSpec,
    /// Compute resources of the registry container.
    #[serde(default = "default_resources")]
    pub resources: ResourceRequirements,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Publish the KEP-1755 ConfigMap `local-registry-hosting` in kube-public, so
    /// tools (tilt, skaffold, ctlptl) find this registry.
    #[serde(default = "yes")]
    pub local_registry_hosting: bool,
    #[serde(default)]
    pub node_config: NodeConfigSpec,
    #[serde(default)]
    pub proxy: ProxySpec,
}

/// The pull-through cache: upstream registries that the registry mirrors,
/// each under its name (`docker.io/library/alpine`), read-only. With
/// `nodeConfig.containerd`, every node pulls them through the cache, with no
/// change to any pod's image.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    #[serde(default)]
    pub upstreams: Vec<UpstreamSpec>,
}

/// One upstream of the pull-through cache.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// The registry host as images name it (docker.io, ghcr.io, quay.io,
    /// registry.k8s.io): its repositories go under it, and the nodes' hosts.toml
    /// is written for it.
    pub name: String,
    /// Its URL. Default: https://registry-1.docker.io for docker.io,
    /// https://NAME for any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Secret of this namespace with the keys `username` and `password`
    /// (type kubernetes.io/basic-auth fits) to log in upstream with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// How long a cached tag is trusted before it is checked upstream again
    /// (a duration like 5m, 1h). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_ttl: Option<String>,
    /// A cap on what is cached from this upstream (a quantity like 10Gi):
    /// past it, the least recently pulled images are evicted. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    pub max_size: Option<Quantity>,
    /// With maxSize, an image pulled within this long is never evicted (a
    /// duration like 7d). Default 7d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_pulled: Option<String>,
}

impl UpstreamSpec {
    /// The URL, with its default.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| crate::proxy::default_url(&self.name))
    }

    /// `maxSize` in bytes; `None` when unset or not a quantity.
    pub fn max_size_bytes(&self) -> Option<u64> {
        let size = self.max_size.as_ref()?;
        super::quantity::Amount::parse(&size.0).ok()?.whole()
    }
}

/// What the DaemonSet `NAME-node-config` sets up on every node.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigSpec {
    /// Write containerd's `CERTS_DIR/localhost:NODEPORT/hosts.toml` on every node
    /// (server http://localhost:NODEPORT, pull and resolve), so kubelets pull from
    /// the NodePort over plain HTTP. containerd reads it on each pull when its CRI
    /// registry `config_path` is that folder.
    #[serde(default)]
    pub containerd: bool,
    /// containerd's certs.d folder on the nodes (MicroK8s:
    /// /var/snap/microk8s/current/args/certs.d).
    #[serde(default = "default_certs_dir")]
    pub certs_dir: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the PersistentVolumeClaim; it may grow, never shrink.
    #[serde(default = "default_size")]
    #[schemars(schema_with = "quantity_schema")]
    pub size: Quantity,
    /// StorageClass of the claim (the cluster's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(default = "default_access_modes")]
    pub access_modes: Vec<AccessMode>,
    /// Retain keeps the claim (and the images) when the Registry is deleted.
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    /// Give the volume to the registry's user before it starts, with an init
    /// container that runs as root with only CAP_CHOWN: hostPath and several
    /// local provisioners hand out root-owned folders that fsGroup does not
    /// change. Set false in a namespace that enforces the `restricted` pod
    /// security profile (it refuses root containers), with a volume that
    /// honours fsGroup.
    #[serde(default = "yes")]
    pub prepare_volume: bool,
    /// Keep the images in an S3 bucket (AWS, MinIO, Ceph RGW, Garage...)
    /// instead of a volume. Then no claim is made (the fields above are not
    /// used), and spec.replicas may be more than 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    /// Keep the images in an Azure Blob Storage container instead of a volume
    /// (as for s3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStorage>,
    /// Keep the images in a Google Cloud Storage bucket instead of a volume
    /// (as for s3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsStorage>,
}

impl StorageSpec {
    /// Whether the images live in an object store rather than on the claim.
    pub fn object_store(&self) -> bool {
        self.s3.is_some() || self.azure.is_some() || self.gcs.is_some()
    }
}

/// An S3 bucket, or one of another store that speaks S3.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// The bucket, which must exist.
    pub bucket: String,
    /// A folder of the bucket to keep everything under (default: its top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The store's URL, for one other than AWS (like
    /// http://minio.minio.svc:9000). Default: AWS's endpoint of the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region (most other stores take any). Default us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Name the bucket in the path (ENDPOINT/BUCKET/KEY), as MinIO, Ceph and
    /// Garage expect; false names it in the host (BUCKET.ENDPOINT/KEY).
    #[serde(default = "yes")]
    pub path_style: bool,
    /// A Secret of this namespace with the keys AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if any), which become the
    /// registry's variables of those names. A change of it rolls the
    /// registry pods. Without it, the registry uses the node's credentials
    /// (EC2 instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Answer a blob GET with a redirect to a signed URL of the object
    /// (valid 20 minutes), so that its bytes go from the store to the client
    /// without passing through the registry. The clients (the nodes, for
    /// their pulls) must then reach the store's endpoint themselves.
    #[serde(default)]
    pub redirect: bool,
}

/// An Azure Blob Storage container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureStorage {
    /// The storage account.
    pub account: String,
    /// The container, which must exist.
    pub container: String,
    /// A folder of the container to keep everything under (default: its top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The blob service's URL, for an emulator (Azurite) or another cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A Secret of this namespace with one or more of the keys
    /// AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_TOKEN,
    /// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID, which become
    /// the registry's variables of those names. A change of it rolls the
    /// registry pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// As s3.redirect: blob GETs sent to signed URLs of the objects.
    #[serde(default)]
    pub redirect: bool,
}

/// A Google Cloud Storage bucket.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    /// The bucket, which must exist.
    pub bucket: String,
    /// A folder of the bucket to keep everything under (default: its top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A Secret of this namespace with the key GOOGLE_SERVICE_ACCOUNT_KEY (a
    /// service account's JSON key), which becomes the registry's variable of
    /// that name. A change of it rolls the registry pods. Without it, the
    /// registry uses the node's credentials (the metadata server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// As s3.redirect: blob GETs sent to signed URLs of the objects.
    #[serde(default)]
    pub redirect: bool,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadWriteOncePod,
    ReadWriteMany,
    ReadOnlyMany,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
            AccessMode::ReadWriteMany => "ReadWriteMany",
            AccessMode::ReadOnlyMany => "ReadOnlyMany",
        }
    }

    /// Only one node (or one pod) may mount the volume.
    pub fn is_single_node(self) -> bool {
        matches!(
            self,
            AccessMode::ReadWriteOnce | AccessMode::ReadWriteOncePod
        )
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletePolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Port of both Services.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Node port of the `NAME-nodeport` Service; null removes that Service.
    #[serde(default = "default_node_port")]
    pub node_port: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Users whose passwords are read from Secrets in this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// A Secret in this namespace whose key `htpasswd` is a ready htpasswd file
    /// (bcrypt); used instead of `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_secret: Option<String>,
    /// Let anyone pull; pushing still needs a login.
    #[serde(default)]
    pub anonymous_pull: bool,
}

impl AuthSpec {
    /// Whether the registry checks logins at all.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || self.existing_secret.is_some()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub password_secret_ref: SecretKeyRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
    /// Merged over the defaults (proxy body size unlimited, 600 s timeouts, no
    /// request buffering); a key given here wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Secret holding the certificate (default: NAME-tls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// cert-manager ClusterIssuer that issues the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_issuer: Option<String>,
    /// cert-manager Issuer (in this namespace) that issues the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cron schedule of the `NAME-gc` CronJob.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Also delete manifests that no tag points to.
    #[serde(default)]
    pub delete_untagged: bool,
    /// Keep blobs, manifests and tags younger than this (a duration like `1h`,
    /// `30m`; default: the registry's, 1h), so a push in progress is never
    /// collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    #[serde(default)]
    pub suspend: bool,
}

/// What the operator last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded and StorageReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub endpoints: Endpoints,
    /// Capacity of the volume (its request until it is bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_size: Option<String>,
    /// The image the registry runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Each upstream of the pull-through cache, as the registry reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub upstreams: Vec<UpstreamState>,
}

/// One upstream of the pull-through cache in the status. Times are to the
/// minute and sizes to two figures, so that traffic through the cache does
/// not change the status at every pass (each change brings another pass).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamState {
    pub name: String,
    pub url: String,
    /// `Ok`, `Failing` (its last request failed), or `Unknown` (none sent
    /// yet, or the registry could not be asked).
    pub state: String,
    /// When it last answered (RFC 3339, to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<String>,
    /// Its last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When that was (RFC 3339, to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    /// With maxSize: what its cached images take (like 3.4GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<String>,
    /// maxSize as the registry runs with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
}

/// Where clients reach the registry.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// From pods: `NAME.NS.svc:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_network: Option<String>,
    /// From a node (its container runtime, or a port-forward): `localhost:NODEPORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Through the Ingress: its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// The web UI: through the Ingress, else on a node (the NodePort), else
    /// from pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<String>,
}

impl Endpoints {
    /// The names an image is pulled by, the node's first (what kubelets use).
    pub fn pull_names(&self) -> impl Iterator<Item = &str> {
        [&self.node, &self.external, &self.cluster_network]
            .into_iter()
            .flatten()
            .map(String::as_str)
            // A wildcard Ingress host is no name to pull by.
            .filter(|name| !name.contains('*'))
    }
}

/// A quantity, as the API server takes it: a string or an integer. Not nullable:
/// a null size would pass the schema and then fail to read as a Registry,
/// hiding the object from the operator instead of showing a Degraded status.
fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        // Said outright: kube marks an optional int-or-string nullable otherwise.
        "nullable": false,
    })
}

fn yes() -> bool {
    true
}

fn default_replicas() -> i32 {
    1
}

fn default_size() -> Quantity {
    Quantity("20Gi".into())
}

fn default_access_modes() -> Vec<AccessMode> {
    vec![AccessMode::ReadWriteOnce]
}

pub const DEFAULT_PORT: i32 = 5000;
pub const DEFAULT_NODE_PORT: i32 = 32000;

fn default_port() -> i32 {
    DEFAULT_PORT
}

fn default_node_port() -> Option<i32> {
    Some(DEFAULT_NODE_PORT)
}

pub const DEFAULT_CERTS_DIR: &str = "/etc/containerd/certs.d";

fn default_certs_dir() -> String {
    DEFAULT_CERTS_DIR.into()
}

fn default_schedule() -> String {
    "0 3 * * 0".into()
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The `Default` of a spec struct is what serde makes of an empty object, so
/// each default is written once, in the field's `#[serde(default ...)]` (which
/// the schema shows too), and `Default` cannot disagree with the API server.
fn serde_defaults<T: serde::de::DeserializeOwned>() -> T {
    serde_json::from_value(serde_json::json!({})).expect("every field has a serde default")
}

impl Default for RegistrySpec {
    fn default() -> Self {
        serde_defaults()
    }
}

impl Default for NodeConfigSpec {
    fn default() -> Self {
        serde_defaults()
    }
}

impl Default for StorageSpec {
    fn default() -> Self {
        serde_defaults()
    }
}

impl Default for ServiceSpec {
    fn default() -> Self {
        serde_defaults()
    }
}

impl Default for GcSpec {
    fn default() -> Self {
        serde_defaults()
    }
}

/// The CRD as YAML, exactly what `berth crd` prints and crds/registry.yaml holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&Registry::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_spec_gets_every_default() {
        let spec: RegistrySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, RegistrySpec::default());
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.storage.size, Quantity("20Gi".into()));
        assert_eq!(spec.storage.access_modes, vec![AccessMode::ReadWriteOnce]);
        assert_eq!(spec.storage.delete_policy, DeletePolicy::Retain);
        assert_eq!(spec.service.port, 5000);
        assert_eq!(spec.service.node_port, Some(32000));
        assert!(!spec.auth.enabled());
        assert!(!spec.auth.anonymous_pull);
        assert!(!spec.ingress.enabled);
        assert!(spec.gc.enabled);
        assert_eq!(spec.gc.schedule, "0 3 * * 0");
        assert!(!spec.gc.delete_untagged && !spec.gc.suspend);
        assert!(spec.local_registry_hosting);
        assert!(!spec.node_config.containerd);
        assert_eq!(spec.node_config.certs_dir, "/etc/containerd/certs.d");
        let requests = spec.resources.requests.unwrap();
        assert_eq!(requests["cpu"], Quantity("100m".into()));
        assert_eq!(requests["memory"], Quantity("128Mi".into()));
        assert_eq!(
            spec.resources.limits.unwrap()["memory"],
            Quantity("512Mi".into())
        );
    }

    #[test]
    fn a_null_node_port_disables_it_and_survives_a_round_trip() {
        let spec: RegistrySpec =
            serde_json::from_str(r#"{"service": {"nodePort": null}}"#).unwrap();
        assert_eq!(spec.service.node_port, None);
        let again: RegistrySpec =
            serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(again.service.node_port, None);
    }

    #[test]
    fn a_size_may_be_a_number() {
        let spec: RegistrySpec =
            serde_json::from_str(r#"{"storage": {"size": 1073741824}}"#).unwrap();
        assert_eq!(spec.storage.size, Quantity("1073741824".into()));
    }

    #[test]
    fn the_schema_refuses_a_null_size() {
        let crd = serde_json::to_value(Registry::crd()).unwrap();
        let size = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["storage"]["properties"]["size"];
        assert_eq!(size["x-kubernetes-int-or-string"], true, "{size}");
        assert_eq!(size["nullable"], false, "{size}");
        assert_eq!(size["default"], "20Gi", "{size}");
    }

    #[test]
    fn the_crd_names_and_columns() {
        let crd = Registry::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("registries.berth.dev"));
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, KIND);
        assert_eq!(crd.spec.names.short_names, Some(vec!["reg".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, VERSION);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Ready", "Endpoint", "UI", "Size", "Age"]);
    }

    #[test]
    fn the_schema_keeps_a_null_node_port() {
        // Without `nullable`, the API server would prune the null and default it back
        // to 32000, and the NodePort Service could never be turned off.
        let crd = serde_json::to_value(Registry::crd()).unwrap();
        let node_port = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["service"]["properties"]["nodePort"];
        assert_eq!(node_port["nullable"], true, "{node_port}");
    }

    #[test]
    fn the_committed_crd_is_what_the_code_generates() {
        let committed = include_str!("../../crds/registry.yaml");
        let generated = crd_yaml().unwrap();
        assert!(
            committed == generated,
            "crds/registry.yaml differs from the CRD the code generates; \
             regenerate it with `cargo run -- crd > crds/registry.yaml`"
        );
    }
}
