//! The Registry status's `upstreams`: how each upstream of the pull-through
//! cache has been answering, and how full its cache is. Only the registry
//! knows, so the operator asks it (`GET /berth/v1/proxy`, with the admin
//! token it issued) at each pass; a pass comes at least every
//! [`super::reconcile::PROXY_RESYNC`] while there are upstreams.

use super::crd::{Registry, UpstreamState};
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
pub async fn report(registry: &Registry, token: &str, ready: bool) -> Vec<UpstreamState> {
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
        Ok(answer) => answer.upstreams.into_iter().map(state).collect(),
        Err(e) => {
            tracing::info!(registry = ?registry.metadata.name, error = %format!("{e:#}"), "cannot ask the registry how its upstreams are");
            configured
                .iter()
                .map(|u| UpstreamState {
                    name: u.name.clone(),
                    url: u.url(),
                    state: "Unknown".into(),
                    ..UpstreamState::default()
                })
                .collect()
        }
    }
}

/// What the status shows of the registry's report: times to the minute,
/// sizes to two figures.
fn state(status: UpstreamStatus) -> UpstreamState {
    UpstreamState {
        name: status.name,
        url: status.url,
        state: status.state,
        last_contact: status.last_contact.map(to_the_minute),
        last_error: status.last_error,
        last_error_time: status.last_error_time.map(to_the_minute),
        cache_size: status.cache_bytes.map(two_figures),
        max_size: status.max_size.map(two_figures),
    }
}

/// `2026-12-01T21:40:02Z` as `2026-12-01T21:40:00Z`.
fn to_the_minute(time: String) -> String {
    match (time.get(..17), time.get(19..)) {
        (Some(minute), Some(rest)) => format!("{minute}00{rest}"),
        _ => time,
    }
}

/// A size in binary units with two significant figures: `3.4GiB`, `56MiB`.
fn two_figures(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 9.95 || unit == 0 {
        format!("{:.0}{}", value, units[unit])
    } else {
        format!("{:.1}{}", value, units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_changes_only_with_the_minute_and_the_second_figure() {
        assert_eq!(
            to_the_minute("2026-12-01T21:40:02Z".into()),
            "2026-12-01T21:40:00Z"
        );
        assert_eq!(two_figures(3_650_722_201), "3.4GiB");
        assert_eq!(two_figures(3_700_000_000), "3.4GiB");
        assert_eq!(two_figures(57 << 20), "57MiB");
        assert_eq!(two_figures(512), "512B");
        let report = UpstreamStatus {
            name: "docker.io".into(),
            url: "https://registry-1.docker.io".into(),
            state: "Ok".into(),
            last_contact: Some("2026-12-01T21:40:59Z".into()),
            cache_bytes: Some(10 << 30),
            max_size: Some(20 << 30),
            ..UpstreamStatus::default()
        };
        let shown = state(report);
        assert_eq!(shown.last_contact.as_deref(), Some("2026-12-01T21:40:00Z"));
        assert_eq!(shown.cache_size.as_deref(), Some("10GiB"));
        assert_eq!(shown.max_size.as_deref(), Some("20GiB"));
    }
}
