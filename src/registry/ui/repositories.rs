//! `GET /`: the repositories the viewer may pull, searched by name, a page at
//! a time, each with its tag count, size and last push.

use super::images::stored;
use super::page::{self, Refused, Section};
use super::{Viewer, format, pull_names};
use crate::oci::{Digest, RepoName};
use crate::registry::auth::Right;
use crate::registry::state::Shared;
use crate::storage::StoreError;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;

/// Repositories on one page.
pub const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    /// From 1.
    page: Option<usize>,
}

/// How long a row of a repository on a bucket that replicas share is kept:
/// another replica's push is seen this late at most.
const SHARED_ROW_LIFE: Duration = Duration::from_secs(30);
/// Rows kept before the cache is emptied (a bound, not a working size).
const ROWS_MAX: usize = 10_000;

/// What the list says of one repository.
struct Row {
    name: RepoName,
    tags: usize,
    size: u64,
    updated: Option<SystemTime>,
    /// The upstream it mirrors, for a repository of the pull-through cache.
    mirrors: Option<String>,
}

/// Rows already made, each with the repository's stamp when it was read: a
/// row costs a read of every tag, and a page shows fifty.
#[derive(Default)]
pub struct Rows(Mutex<HashMap<RepoName, Kept>>);

struct Kept {
    stamp: Option<u64>,
    made: Instant,
    row: Arc<Row>,
}

impl Rows {
    /// The row of `name`, kept or made.
    async fn of(&self, state: &Shared, name: RepoName) -> Result<Arc<Row>, StoreError> {
        // Before the reads: a change while they run gives a new stamp, so
        // the row made from them is not used after it.
        let stamp = state.store.repository_stamp(&name);
        if let Some(kept) = self.lock().get(&name)
            && kept.stamp == stamp
            && (stamp.is_some() || kept.made.elapsed() < SHARED_ROW_LIFE)
        {
            return Ok(kept.row.clone());
        }
        let row = Arc::new(row(state, name.clone()).await?);
        let mut rows = self.lock();
        if rows.len() >= ROWS_MAX {
            rows.clear();
        }
        let made = Instant::now();
        rows.insert(
            name,
            Kept {
                stamp,
                made,
                row: row.clone(),
            },
        );
        Ok(row)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RepoName, Kept>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The tags of `name`, and the size of what they name (each blob once).
async fn row(state: &Shared, name: RepoName) -> Result<Row, StoreError> {
    let store = &state.store;
    let tags = store.tags(&name).await?;
    let count = tags.len();
    let entries = store.tag_entries(&name, tags).await?;
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in &entries {
        if !seen.insert(entry.digest.clone()) {
            continue;
        }
        let Some(manifest) = stored(store, &name, &entry.digest).await? else {
            continue;
        };
        let summary = state.ui.summaries.of(store, &name, &manifest).await?;
        blobs.extend(summary.blobs.iter().map(|(d, size)| (d.clone(), *size)));
    }
    Ok(Row {
        mirrors: state.proxy.route(&name).map(|r| r.upstream().to_owned()),
        name,
        tags: count,
        size: blobs.values().sum(),
        updated: entries.iter().map(|e| e.pushed).max(),
    })
}

pub async fn page(
    state: Shared,
    viewer: Viewer,
    host: Option<String>,
    query: ListQuery,
) -> Result<Response, Rejection> {
    let needle = query.q.trim().to_lowercase();
    let mut names = state.store.repositories().await.map_err(Refused::from)?;
    names.retain(|name| viewer.may(&state, name, Right::Pull));
    let visible = names.len();
    names.retain(|name| name.as_str().contains(&needle));
    let pages = names.len().div_ceil(PAGE).max(1);
    let number = query.page.unwrap_or(1).clamp(1, pages);
    let shown: Vec<RepoName> = names
        .iter()
        .skip((number - 1) * PAGE)
        .take(PAGE)
        .cloned()
        .collect();
    let rows = futures_util::future::join_all(
        shown.into_iter().map(|name| state.ui.rows.of(&state, name)),
    )
    .await
    .into_iter()
    // A repository deleted while the page was built is left out.
    .filter(|row| !matches!(row, Err(StoreError::NameUnknown)))
    .collect::<Result<Vec<Arc<Row>>, StoreError>>()
    .map_err(Refused::from)?;

    let link = |page: usize| {
        let query =
            serde_urlencoded::to_string([("q", needle.clone()), ("page", page.to_string())])
                .unwrap_or_default();
        format!("/?{query}")
    };
    let body = html! {
        h1 { "Repositories" }
        form.search role="search" method="get" action="/" {
            label for="q" { "Search repositories" }
            input #q type="search" name="q" value=(query.q) autocomplete="off"
                aria-controls="results" placeholder="name contains…";
            button type="submit" { "Search" }
        }
        p.count #count aria-live="polite" {
            @if needle.is_empty() {
                (count(names.len(), "repository", "repositories"))
            } @else {
                (count(names.len(), "repository", "repositories")) " of " (visible) " match "
                q { (needle) }
            }
        }
        section #results aria-label="Results" {
            @if rows.is_empty() && visible == 0 {
                (empty(&pull_names(&state, host.as_deref())))
            } @else if !rows.is_empty() {
                table.list {
                    thead { tr { th scope="col" { "Repository" } th scope="col" { "Tags" } th scope="col" { "Size" } th scope="col" { "Last push" } } }
                    tbody {
                        @for row in &rows {
                            tr {
                                th scope="row" data-label="Repository" {
                                    a href=(format!("/r/{}", row.name)) { (row.name) }
                                    @if let Some(upstream) = &row.mirrors {
                                        " " span.badge title=(format!("pull-through cache of {upstream}")) { "mirror" }
                                    }
                                }
                                td data-label="Tags" { (row.tags) }
                                td data-label="Size" { (format::size(row.size)) }
                                td data-label="Last push" {
                                    @match row.updated { Some(at) => (format::ago(at)), None => "never" }
                                }
                            }
                        }
                    }
                }
            }
            (page::pager(number, pages, link))
        }
    };
    Ok(page::respond(
        StatusCode::OK,
        page::render(
            "Repositories",
            Some(Section::Repositories),
            Some(&viewer),
            body,
        ),
    ))
}

/// `3 repositories`, `1 repository`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What an empty registry shows: how to fill it.
fn empty(hosts: &[String]) -> Markup {
    let host = hosts.first().map_or("HOST", String::as_str);
    html! {
        div.empty {
            p { "Nothing you may pull is stored here yet. Push an image:" }
            pre { code { "docker tag alpine:3 " (host) "/alpine:3\ndocker push " (host) "/alpine:3" } }
        }
    }
}
