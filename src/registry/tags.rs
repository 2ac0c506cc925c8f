//! `GET /v2/<name>/tags/list`: a repository's tags, sorted, paginated.

use super::pagination::{Page, PageQuery};
use super::state::Shared;
use super::{json, set_header};
use crate::oci::RepoName;
use warp::http::{StatusCode, header};
use warp::reply::Response;

pub async fn list(
    name: RepoName,
    state: Shared,
    query: PageQuery,
) -> Result<Response, warp::Rejection> {
    let page = Page::from_query(query)?;
    let tags = state.store.tags(&name).await?;
    let (tags, more) = page.apply(tags.iter().map(|t| t.as_str()));
    let mut response = json(
        StatusCode::OK,
        "application/json",
        &serde_json::json!({ "name": name.as_str(), "tags": tags }),
    );
    if more
        && let Some(link) = tags
            .last()
            .and_then(|l| page.next_link(&format!("/v2/{name}/tags/list"), l))
    {
        set_header(&mut response, header::LINK, link);
    }
    Ok(response)
}
