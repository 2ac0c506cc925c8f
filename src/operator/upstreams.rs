//! The Registry status's `upstreams`: how each upstream of the pull-through
//! cache has been answering, and how full its cache is. Only the registry
//! knows, so the operator asks it (`GET /berth/v1/proxy`, with the admin
//! token it issued) at each pass; a pass comes at least every
//! [`super::reconcile::PROXY_RESYNC`] while there are upstreams.

use super::crd::Registry;
use super::resources::cluster_address;
use crate::proxy::UpstreamStatus;
use std::time::Duration;

/// How long a pass waits for the registry's answer.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize)]
struct Answer {
    upstreams: Vec<UpstreamStatus>,
}

/// Each configured upstream as the registry reports it; `Unknown` while no
/// pod is `ready` to be asked, or when asking fails (why is in the log).
pub async fn report(registry: &Registry, token: &str, ready: bool) -> Vec<UpstreamStatus> {
    let configured = &registry.spec.proxy.upstreams;
    if configured.is_empty() {
        return Vec::new();
    }
    let url = format!("http://{}", cluster_address(registry));
    let answer = match ready {
        true => crate::admin_client::get::<Answer>(&url, "proxy", token, TIMEOUT).await,
        false => Err(anyhow::anyhow!("no registry pod is ready")),
    };
    match answer {
        Ok(answer) => answer.upstreams,
        Err(e) => {
            tracing::info!(registry = ?registry.metadata.name, error = %format!("{e:#}"), "cannot ask the registry how its upstreams are");
            configured
                .iter()
                .map(|u| UpstreamStatus {
                    name: u.name.clone(),
                    url: u.url(),
                    state: "Unknown".into(),
                    ..UpstreamStatus::default()
                })
                .collect()
        }
    }
}
