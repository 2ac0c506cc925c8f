//! `berth enable` and `berth disable`: install berth in the cluster of the current
//! kube context and give it a registry, or take them away, in one command each.
//!
//! - objects.rs: what is installed: manifests/install.yaml's documents, compiled in.
//! - enable.rs: checks, applies, waits, says how to push.
//! - disable.rs: deletes the Registry and the operator; keeps the images'
//!   volume and the CRD unless `--purge`.
//! - progress.rs: the spinner (or log lines) while waiting.
//! - wait.rs: the one poll loop every wait of enable and disable goes through.
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
mod plan;
pub mod progress;
#[cfg(test)]
mod tests;
pub(crate) mod wait;

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
    /// A call the API server refused or that did not reach it. `reason` is one
    /// line that says what went wrong and what to do; the error itself is kept
    /// for callers that match on it, but is not a `#[source]`, so that the
    /// binary's edge does not print kube's `Status { ... }` dump after it.
    #[error("cannot {action}: {reason}")]
    Kube {
        action: String,
        reason: String,
        error: kube::Error,
    },
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("cannot generate a password: {0}")]
    Random(String),
    #[error("not confirmed, nothing was deleted (pass --yes to purge without a prompt)")]
    NotConfirmed,
}

/// Wraps a kube error with what was being done, and says it in one line.
pub(crate) fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> InstallError {
    let action = action.into();
    move |error| InstallError::Kube {
        action,
        reason: explain(&error),
        error,
    }
}

/// Whether the API server answered 404, with a NotFound Status (the object is
/// not there) or with the plain text `404 page not found` a real API server
/// gives for a kind it does not serve (a CRD not installed yet). kube 5 turns
/// that text into a Status with code 404 and reason "Failed to parse error
/// data", which its own `get_opt` does not take for "not found": hence this
/// test on the code alone, and [`get_opt`].
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// `api.get_opt(name)`, with "this kind is not installed" read as "not there"
/// too (see [`is_not_found`]).
pub(crate) async fn get_opt<K>(api: &kube::Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether a write was refused because its namespace is being deleted: the
/// NamespaceLifecycle admission plugin answers 403 Forbidden, "unable to create
/// new content in namespace NS because it is being terminated", with a cause of
/// reason NamespaceTerminating on servers since 1.17 (the message alone before).
pub(crate) fn is_namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    let cause = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .any(|c| c.reason == "NamespaceTerminating");
    status.code == 403 && (cause || status.message.contains("because it is being terminated"))
}

/// One line for what the API server answered: what went wrong, and what to do.
fn explain(error: &kube::Error) -> String {
    let kube::Error::Api(status) = error else {
        // Not an answer of the API server (no connection, TLS, a body kube
        // could not read): kube's own words are one line already.
        return error.to_string();
    };
    // A Status message is one line, but nothing forbids a server to say more.
    let message = status.message.replace('\n', " ");
    let message = message.trim();
    match status.code {
        404 if status.reason != "NotFound" => format!(
            "the API server does not know this kind of object ({message}): its CRD is not \
             installed; `berth enable` installs it"
        ),
        403 if is_namespace_terminating(error) => format!(
            "{message}; wait until the namespace is gone (kubectl get namespace), then run the \
             command again"
        ),
        403 => format!(
            "refused by the cluster's RBAC: {message}. Installing or removing berth needs \
             cluster-admin in the current kube context (check with `kubectl auth can-i '*' '*'`, \
             or switch context with `kubectl config use-context`)"
        ),
        401 => format!(
            "the cluster did not accept the credentials of the current kube context ({message}); \
             log in again (kubectl get nodes shows the same)"
        ),
        409 => format!(
            "conflict: {message}. Something else changed it at the same time; run the command \
             again"
        ),
        422 => format!(
            "the API server refused the object as invalid: {message}. If a flag's value is named, \
             change it; else this berth may not fit the cluster's Kubernetes version \
             (kubectl version)"
        ),
        code => format!("{message} ({code} {})", status.reason),
    }
}
