//! The poll loop of every wait in `berth enable` and `disable`: look, say what
//! is awaited, sleep, until the check is satisfied or the deadline passes. One
//! loop, so that every wait shows its progress and times out the same way.

use super::progress::Progress;
use super::{InstallError, get_opt, kube_error};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};
use std::time::Duration;
use tokio::time::Instant;

/// What one look found.
pub enum Look<T> {
    /// Done, with what was awaited.
    Ready(T),
    /// Not yet: `progress` is shown while waiting, `timeout` completes
    /// "timed out waiting for …" if the deadline passes now.
    Waiting { progress: String, timeout: String },
}

/// Calls `look` every `poll` until it is [`Look::Ready`]; fails with its last
/// `timeout` text when the next look would come after `deadline`, and at once
/// with any error it returns.
pub async fn wait_until<T>(
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
    mut look: impl AsyncFnMut() -> Result<Look<T>, InstallError>,
) -> Result<T, InstallError> {
    loop {
        match look().await? {
            Look::Ready(value) => return Ok(value),
            Look::Waiting {
                progress: line,
                timeout,
            } => {
                progress.waiting(&line);
                if Instant::now() + poll > deadline {
                    return Err(InstallError::Timeout(timeout));
                }
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// Whether a namespace is being deleted (it has a deletionTimestamp, and says
/// Terminating while the namespace controller empties it).
pub fn is_terminating(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// Waits until namespace `name` is not being deleted any more: gone, or (made
/// again by someone) alive. `why` says, in the progress line, why it matters.
/// Returns whether it had to wait.
pub async fn namespace_deleted(
    client: &Client,
    name: &str,
    why: &str,
    progress: &mut dyn Progress,
    poll: Duration,
    deadline: Instant,
) -> Result<bool, InstallError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut waited = false;
    wait_until(progress, poll, deadline, async || {
        let namespace = get_opt(&namespaces, name)
            .await
            .map_err(kube_error(format!("read namespace {name}")))?;
        if !namespace.as_ref().is_some_and(is_terminating) {
            return Ok(Look::Ready(()));
        }
        waited = true;
        Ok(Look::Waiting {
            progress: format!("namespace {name} is being deleted; {why}"),
            timeout: format!(
                "namespace {name} to be deleted (it is still Terminating: something in it \
                 does not go; see kubectl get namespace {name} -o yaml, its status conditions)"
            ),
        })
    })
    .await?;
    Ok(waited)
}
