//! The style sheet and the script, built into the binary. Pages link them with
//! a version taken from their content, so a browser may keep them for good
//! and still gets the new ones after an upgrade.

use super::page::Refused;
use sha2::{Digest as _, Sha256};
use std::sync::LazyLock;
use warp::Rejection;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// The first hex digits of the body's sha256: the version and the ETag.
    version: LazyLock<String>,
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
            version: LazyLock::new(|| {
                hex::encode(&Sha256::digest(include_str!(concat!("assets/", $name)))[..6])
            }),
        }
    };
}

static ASSETS: [Asset; 2] = [
    asset!("berth.css", "text/css; charset=utf-8"),
    asset!("berth.js", "text/javascript; charset=utf-8"),
];

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The address pages link `name` by (one of [`ASSETS`]).
pub fn url(name: &str) -> String {
    let asset = find(name).expect("pages link only the built-in assets");
    format!("/-/{name}?v={}", *asset.version)
}

/// `GET /-/<name>`
pub async fn serve(name: String, if_none_match: Option<String>) -> Result<Response, Rejection> {
    let asset = find(&name).ok_or_else(Refused::not_found)?;
    let etag = format!("\"{}\"", *asset.version);
    let fresh = if_none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        let mut response = Response::new(Default::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(asset.body.into())
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::try_from(etag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
