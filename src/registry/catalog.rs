//! `GET /v2/_catalog`: repositories, from the store's in-memory index, as far as
//! the caller may see them.

use super::auth::{Identity, Right, challenge};
use super::errors::ApiError;
use super::pagination::{Page, PageQuery};
use super::state::Shared;
use super::{json, set_header};
use warp::http::{StatusCode, header};
use warp::reply::Response;

/// Lists only the repositories the caller may pull from.
pub async fn list(
    state: Shared,
    who: Identity,
    query: PageQuery,
) -> Result<Response, warp::Rejection> {
    let auth = &state.auth;
    if who == Identity::Anonymous && !auth.open_to_anonymous() {
        return Err(challenge("authentication required").into());
    }
    let page = Page::from_query(query)?;
    let mut all = state.store.repositories().await.map_err(ApiError::from)?;
    all.retain(|repo| auth.allows(&who, repo, Right::Pull));
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
