//! `GET /v2/_catalog`: repositories, from the store's in-memory index.

use super::pagination::Page;
use super::routes::Query;
use super::{json, set_header};
use crate::storage::Store;
use warp::http::{StatusCode, header};
use warp::reply::Response;

pub async fn list(store: Store, query: Query) -> Result<Response, warp::Rejection> {
    let page = Page::from_query(&query)?;
    let all = store.repositories();
    let (repositories, more) = page.apply(all.iter().map(|r| r.as_str()));
    let mut response = json(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({ "repositories": repositories }),
    );
    if more
        && let Some(link) = repositories
            .last()
            .and_then(|l| page.next_link("/v2/_catalog", l))
    {
        set_header(&mut response, header::LINK, link);
    }
    Ok(response)
}
