//! `GET /v2/`: tells clients this is a Distribution API v2 registry.

use super::json;
use warp::http::StatusCode;
use warp::reply::Response;

pub fn version(_head: bool) -> Response {
    json(StatusCode::OK, "application/json", &serde_json::json!({}))
}
