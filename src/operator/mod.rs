//! `berth operator`: the Kubernetes controller that turns a `Registry` object into a
//! running registry and keeps it so, and the offline commands beside it (`berth crd`,
//! `berth render`).
//!
//! - crd.rs: the `Registry` type, its defaults and status; the CRD comes from it.
//! - validate.rs: what makes a spec unusable, with a reason for the status.
//! - bucket.rs: the object store a spec names, as the registry's flags.
//! - resources/: one pure builder per child object.
//! - htpasswd.rs: the htpasswd file made from the users' password Secrets.
//! - reconcile.rs: one pass: read what is needed, apply the children, write the status.
//! - hosting.rs: the kube-public ConfigMap a pass publishes, and its finalizer.
//! - metrics.rs: the Prometheus metrics of the passes.
//! - quantity.rs: Kubernetes quantities as numbers, to compare sizes.
//! - status.rs: conditions from what a pass saw, with stable transition times.
//! - report.rs: the status a pass writes, from what it applied or why it could not.
//! - storage.rs: the volume claim: create, grow, or refuse a shrink.
//! - controller.rs: the watch wiring, the start-up checks, /healthz and /metrics.
//! - render.rs: the children of a Registry file, as YAML, with no cluster.

pub mod bucket;
pub mod controller;
pub mod crd;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod hosting;
pub mod htpasswd;
mod metrics;
pub mod quantity;
pub mod reconcile;
pub mod render;
mod report;
pub mod resources;
pub mod status;
pub mod storage;
mod upstreams;
pub mod validate;

pub use controller::{OperatorArgs, run};
pub use crd::{Registry, RegistrySpec, RegistryStatus};
pub use render::render;

/// The field manager of every server-side apply, so `kubectl` shows who owns what.
pub const FIELD_MANAGER: &str = "berth-operator";

/// Errors of one reconcile pass that the controller retries. A spec the operator
/// cannot act on is not one of them: it goes to the status as Degraded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the Registry has no {0}")]
    MissingField(&'static str),
    #[error("cannot hash the htpasswd passwords: {0}")]
    Hash(String),
    #[error("cannot generate the admin token: {0}")]
    Random(String),
}

impl Error {
    /// A short, stable label for the failures metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::MissingField(_) => "object",
            Error::Hash(_) => "hash",
            Error::Random(_) => "random",
        }
    }
}
