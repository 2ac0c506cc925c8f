//! `GET /r/<name>`: a repository's tags, a page at a time, each with its
//! digest, platforms, size and when it was pushed.

use super::images::stored;
use super::page::{self, Refused, Section};
use super::repositories::count;
use super::{Viewer, format};
use crate::oci::{Reference, RepoName};
use crate::registry::state::Shared;
use maud::html;
use serde::Deserialize;
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;

/// Tags on one page.
pub const PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct TagsQuery {
    /// From 1.
    page: Option<usize>,
    /// What the delete just removed, to say so.
    deleted: Option<String>,
}

pub async fn page(
    state: Shared,
    viewer: Viewer,
    name: RepoName,
    query: TagsQuery,
) -> Result<Response, Rejection> {
    viewer.require_pull(&state, &name)?;
    let store = &state.store;
    let tags = store.tags(&name).await.map_err(Refused::from)?;
    let pages = tags.len().div_ceil(PAGE).max(1);
    let number = query.page.unwrap_or(1).clamp(1, pages);
    let total = tags.len();
    let shown = tags
        .into_iter()
        .skip((number - 1) * PAGE)
        .take(PAGE)
        .collect();
    let entries = store
        .tag_entries(&name, shown)
        .await
        .map_err(Refused::from)?;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(manifest) = stored(store, &name, &entry.digest)
            .await
            .map_err(Refused::from)?
        else {
            continue;
        };
        let summary = state
            .ui
            .summaries
            .of(store, &name, &manifest)
            .await
            .map_err(Refused::from)?;
        rows.push((entry, summary));
    }
    let deleted = query
        .deleted
        .filter(|text| text.parse::<Reference>().is_ok());
    let mirrors = state.proxy.route(&name).map(|r| r.upstream().to_owned());
    let link = |page: usize| format!("/r/{name}?page={page}");

    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/" { "Repositories" } " / " }
        h1 { (name) }
        @if let Some(upstream) = &mirrors {
            p { span.badge { "mirror" } " A pull-through cache of " code { (upstream) } ": read-only here." }
        }
        @if let Some(deleted) = &deleted {
            p.notice role="status" { "Deleted " code { (deleted) } "." }
        }
        p.count { (count(total, "tag", "tags")) }
        @if total == 0 {
            p { "No tags here: what this repository holds is reachable by digest only." }
        } @else {
            table.list {
                thead { tr {
                    th scope="col" { "Tag" } th scope="col" { "Digest" } th scope="col" { "Platforms" }
                    th scope="col" { "Size" } th scope="col" { "Pushed" }
                } }
                tbody {
                    @for (entry, summary) in &rows {
                        tr {
                            th scope="row" data-label="Tag" {
                                a href=(format!("/r/{name}/-/{}", entry.tag)) { (entry.tag) }
                            }
                            td data-label="Digest" {
                                a href=(format!("/r/{name}/-/{}", entry.digest)) { (format::digest(&entry.digest)) }
                            }
                            td data-label="Platforms" {
                                @if let Some(kind) = &summary.artifact_type {
                                    span.badge { "artifact" } " " code { (kind) }
                                } @else if summary.platforms.is_empty() {
                                    "—"
                                } @else {
                                    ul.platforms { @for p in &summary.platforms { li { (p) } } }
                                }
                            }
                            td data-label="Size" { (format::size(summary.size())) }
                            td data-label="Pushed" { (format::ago(entry.pushed)) }
                        }
                    }
                }
            }
        }
        (page::pager(number, pages, link))
    };
    Ok(page::respond(
        StatusCode::OK,
        page::render(
            name.as_str(),
            Some(Section::Repositories),
            Some(&viewer),
            body,
        ),
    ))
}
