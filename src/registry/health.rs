//! Probes for Kubernetes: `/healthz` (the process answers) and `/readyz` (the
//! store takes writes).

use super::state::Shared;
use super::{empty, json};
use warp::http::StatusCode;
use warp::reply::Response;

pub fn healthz() -> Response {
    empty(StatusCode::OK)
}

pub async fn readyz(state: Shared) -> Response {
    match state.store.check_writable().await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                &serde_json::json!({ "ready": false, "reason": e.to_string() }),
            )
        }
    }
}
