//! `GET /overview`: what the registry holds (storage, blobs, uploads in
//! progress) and how the upstreams of its pull-through cache are answering.

use super::page::{self, Refused, Section};
use super::{Viewer, format};
use crate::registry::state::Shared;
use maud::html;
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;

pub async fn page(state: Shared, viewer: Viewer) -> Result<Response, Rejection> {
    let usage = state.store.usage();
    let repositories = state.store.repositories().await.map_err(Refused::from)?;
    let upstreams = state.proxy.status();
    let body = html! {
        h1 { "Overview" }
        dl.stats {
            div { dt { "Storage used" } dd #storage { (format::size(usage.blob_bytes)) } }
            div { dt { "Blobs" } dd #blobs { (usage.blobs) } }
            div { dt { "Repositories" } dd #repositories { (repositories.len()) } }
            div { dt { "Uploads in progress" } dd #uploads { (usage.uploads) } }
        }
        @if !upstreams.is_empty() {
            section aria-labelledby="upstreams" {
                h2 #upstreams { "Pull-through cache" }
                table.list {
                    thead { tr {
                        th scope="col" { "Upstream" } th scope="col" { "State" } th scope="col" { "Last answer" }
                        th scope="col" { "Last failure" } th scope="col" { "Cached" }
                    } }
                    tbody {
                        @for upstream in &upstreams {
                            tr {
                                th scope="row" data-label="Upstream" { (upstream.name) br; span.hint { (upstream.url) } }
                                td data-label="State" { span class=(format!("state {}", upstream.state.to_lowercase())) { (upstream.state) } }
                                td data-label="Last answer" { (upstream.last_contact.as_deref().unwrap_or("never")) }
                                td data-label="Last failure" {
                                    @match (&upstream.last_error_time, &upstream.last_error) {
                                        (Some(at), Some(why)) => { (at) br; span.hint { (why) } }
                                        _ => "none",
                                    }
                                }
                                td data-label="Cached" {
                                    @match (upstream.cache_bytes, upstream.max_size) {
                                        (Some(bytes), Some(max)) => { (format::size(bytes)) " of " (format::size(max)) }
                                        (None, Some(max)) => { "cap " (format::size(max)) }
                                        _ => "no cap",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::respond(
        StatusCode::OK,
        page::render("Overview", Some(Section::Overview), Some(&viewer), body),
    ))
}
