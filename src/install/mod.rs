//! `berth enable` and `berth disable`: install berth in the cluster of the current
//! kube context and give it a registry, or take them away, in one command each.
//!
//! - objects.rs: what is installed: manifests/install.yaml's documents, compiled in.
//! - enable.rs: checks, applies, waits, says how to push.
//! - disable.rs: deletes the Registry and the operator; keeps the images'
//!   volume and the CRD unless `--purge`.
//! - progress.rs: the spinner (or log lines) while waiting.
//!
//! Field manager: `berth-cli`, not the operator's `berth-operator`. The objects
//! the command applies (the install objects and the Registry's spec) are the
//! user's intent, the children are the operator's; with two managers,
//! `kubectl get --show-managed-fields` tells them apart, and the operator's
//! forced applies never take the Registry's spec away from the command (or the
//! other way round).

pub mod disable;
pub mod enable;
pub mod objects;
pub mod progress;
#[cfg(test)]
mod tests;

pub use disable::{DisableArgs, disable};
pub use enable::{EnableArgs, enable};

/// The field manager of every apply, and the `managed-by` label of what the
/// command creates (a namespace, a password Secret), so `disable --purge`
/// deletes only those.
pub const FIELD_MANAGER: &str = "berth-cli";
pub const CREATED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// How often a wait looks again.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot reach the cluster of the current kube context: {0}")]
    Connect(#[source] kube::Error),
    #[error("refused, nothing was changed: size {0}")]
    Size(String),
    #[error("refused, nothing was changed: {0}")]
    StorageClass(String),
    #[error(
        "refused, nothing was changed: user {0:?} must be lowercase letters, digits and '-' (it names a Secret)"
    )]
    User(String),
    #[error("refused, nothing was changed: the operator would not act on this Registry: {0}")]
    Spec(String),
    #[error("the install manifest compiled into berth is broken: {0}")]
    Manifest(String),
    #[error("cannot {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("cannot generate a password: {0}")]
    Random(String),
    #[error("not confirmed, nothing was deleted (pass --yes to purge without a prompt)")]
    NotConfirmed,
}

/// Wraps a kube error with what was being done.
pub(crate) fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> InstallError {
    let action = action.into();
    move |source| InstallError::Kube { action, source }
}

/// Whether the API server answered 404.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
