//! Deleting a tag or a manifest from the UI: `GET …/delete` asks, naming what
//! goes with it; the form it shows `POST`s to the same address, which
//! deletes and goes back to the repository.
//!
//! Browsers send Basic credentials with any request to the registry, a
//! form on another site included; so a delete is only taken from the
//! registry's own pages, as `origin.rs` tells them.

use super::page::{self, Refused, Section};
use super::{Viewer, format};
use crate::oci::{Reference, RepoName};
use crate::registry::auth::Identity;
use crate::registry::origin::{self, Site};
use crate::registry::state::Shared;
use maud::html;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Passes only requests that a page of this registry sent.
pub fn same_origin() -> BoxedFilter<()> {
    origin::site()
        .and_then(|site: Site| async move {
            if site == Site::Same {
                Ok(())
            } else {
                Err(Rejection::from(Refused::forbidden(
                    "A delete is only taken from this registry's own pages (the request came from elsewhere).",
                )))
            }
        })
        .untuple_one()
        .boxed()
}

/// `Ok` if `viewer` may delete in `name`.
fn require_delete(state: &Shared, viewer: &Viewer, name: &RepoName) -> Result<(), Rejection> {
    if viewer.may_delete(state, name) {
        return Ok(());
    }
    Err(match viewer.who {
        Identity::Anonymous => Refused::login(),
        Identity::User(_) => Refused::forbidden(format!("You may not delete in {name}.")),
    }
    .into())
}

/// `GET /r/<name>/-/<reference>/delete`
pub async fn confirm(
    state: Shared,
    viewer: Viewer,
    name: RepoName,
    reference: Reference,
) -> Result<Response, Rejection> {
    require_delete(&state, &viewer, &name)?;
    // It shows what the reference names, which only a puller may see.
    viewer.require_pull(&state, &name)?;
    let store = &state.store;
    let manifest = store
        .get_manifest(&name, &reference)
        .await
        .map_err(Refused::from)?;
    let (title, consequence) = match &reference {
        Reference::Tag(tag) => (
            format!("Delete tag {tag} of {name}?"),
            html! { p { "The manifest it names, " (format::digest(&manifest.digest)) ", stays, reachable by its digest and by any other tag." } },
        ),
        Reference::Digest(digest) => {
            let tags = store.tags(&name).await.map_err(Refused::from)?;
            let tagged: Vec<String> = store
                .tag_entries(&name, tags)
                .await
                .map_err(Refused::from)?
                .into_iter()
                .filter(|e| &e.digest == digest)
                .map(|e| e.tag.to_string())
                .collect();
            (
                format!("Delete manifest {} of {name}?", format::short(digest)),
                html! {
                    @if tagged.is_empty() {
                        p { "No tag names it." }
                    } @else {
                        p { "These tags name it and go with it: " strong { (tagged.join(", ")) } "." }
                    }
                    p { "Pulls by its digest will fail. Its layers are freed by the next garbage collection if nothing else uses them." }
                },
            )
        }
    };
    let action = format!("/r/{name}/-/{reference}/delete");
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Repositories" } " / " a href=(format!("/r/{name}")) { (name) } " /"
        }
        h1 { (title) }
        (consequence)
        form.confirm method="post" action=(action) {
            button.danger type="submit" { "Delete" }
            " "
            a.button href=(format!("/r/{name}/-/{reference}")) autofocus { "Cancel" }
        }
    };
    Ok(page::respond(
        StatusCode::OK,
        page::render(&title, Some(Section::Repositories), Some(&viewer), body),
    ))
}

/// `POST /r/<name>/-/<reference>/delete`
pub async fn delete(
    name: RepoName,
    reference: Reference,
    state: Shared,
    viewer: Viewer,
) -> Result<Response, Rejection> {
    require_delete(&state, &viewer, &name)?;
    let store = &state.store;
    match &reference {
        Reference::Tag(tag) => store.delete_tag(&name, tag).await,
        Reference::Digest(digest) => store.delete_manifest(&name, digest).await,
    }
    .map_err(Refused::from)?;
    tracing::info!(repository = %name, %reference, user = ?viewer.who, "deleted from the web UI");
    Ok(page::see_other(&format!("/r/{name}?deleted={reference}")))
}
