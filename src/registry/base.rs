//! `GET /v2/`: tells clients this is a Distribution API v2 registry, and tells
//! `docker login` whether its credentials work.

use super::auth::{Identity, challenge};
use super::json;
use super::state::Shared;
use warp::http::StatusCode;
use warp::reply::Response;

pub async fn version(state: Shared, who: Identity) -> Result<Response, warp::Rejection> {
    if who == Identity::Anonymous && !state.auth.open_to_anonymous() {
        return Err(challenge("authentication required").into());
    }
    Ok(json(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({}),
    ))
}
