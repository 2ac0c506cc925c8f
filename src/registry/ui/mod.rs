//! The web UI: server-rendered HTML pages at `/` of `berth serve`, with a
//! little JavaScript that only adds to them (live search, copy buttons), so
//! every page reads and works without it.
//!
//! ```text
//! GET  /                              repositories, searchable (?q=), by pages (?page=)
//! GET  /overview                      what the registry holds and runs
//! GET  /r/<name>                      a repository's tags
//! GET  /r/<name>/-/<reference>        an image or index: layers, config, referrers, pull commands
//! GET  /r/<name>/-/<reference>/delete asks before deleting the tag or manifest
//! POST /r/<name>/-/<reference>/delete deletes it
//! GET  /login                         asks the browser for credentials
//! GET  /-/<asset>                     the style sheet and the script
//! ```
//!
//! The pages sit behind the API's own authentication and rights (`auth/`):
//! Basic credentials, which the browser asks for and then sends with every
//! request. A caller sees only the repositories they may pull, and delete
//! buttons only where they may delete. `-` cannot be a path component of a
//! repository name, so `/-/` ends the name unambiguously.

mod assets;
mod delete;
mod format;
mod image;
mod images;
mod overview;
mod page;
mod repositories;
mod tags;

use super::auth::{Identity, Right};
use super::caller;
use super::state::Shared;
use crate::oci::{Reference, RepoName};
pub use overview::keep_history;
use page::Refused;
use warp::filters::BoxedFilter;
use warp::http::uri::Authority;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// What the pages keep of what they read, for the next pages.
#[derive(Default)]
pub struct Caches {
    summaries: images::Summaries,
    rows: repositories::Rows,
}

/// Who is looking, and what the pages may offer them.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub who: Identity,
    /// Whether logging in would show more (the registry has users).
    pub can_log_in: bool,
}

impl Viewer {
    fn may(&self, state: &Shared, name: &RepoName, right: Right) -> bool {
        state.auth.allows(&self.who, name, right)
    }

    /// Whether this viewer may delete in `name`: the right, and a repository
    /// that is not a read-only mirror of the pull-through cache.
    fn may_delete(&self, state: &Shared, name: &RepoName) -> bool {
        self.may(state, name, Right::Delete) && state.proxy.route(name).is_none()
    }

    /// `Ok` if this viewer may pull from `name`; else the page that says so
    /// (a login prompt for a caller who has not logged in).
    fn require_pull(&self, state: &Shared, name: &RepoName) -> Result<(), Rejection> {
        if self.may(state, name, Right::Pull) {
            return Ok(());
        }
        Err(match self.who {
            Identity::Anonymous => Refused::login(),
            Identity::User(_) => Refused::forbidden(format!("You may not pull from {name}.")),
        }
        .into())
    }
}

/// The caller, as the API identifies them (wrong credentials are asked
/// again); a caller who must log in to see anything is asked to.
fn viewer(state: &Shared) -> BoxedFilter<(Viewer,)> {
    let auth = state.auth.clone();
    caller::identity(&state.auth)
        .and_then(move |who: Identity| {
            let auth = auth.clone();
            async move {
                if who == Identity::Anonymous && !auth.open_to_anonymous() {
                    return Err(Rejection::from(Refused::login()));
                }
                let can_log_in = who == Identity::Anonymous && auth.has_users();
                Ok::<_, Rejection>(Viewer { who, can_log_in })
            }
        })
        .boxed()
}

/// What a page under `/r/` is about: a repository, or an image of one.
#[derive(Clone, Debug)]
enum Target {
    Repository(RepoName),
    Image(RepoName, Reference),
    Delete(RepoName, Reference),
}

/// Reads `/r/<name>[/-/<reference>[/delete]]`; anything else is not a page.
fn target() -> BoxedFilter<(Target,)> {
    warp::path("r")
        .and(warp::path::tail())
        .and_then(|tail: warp::path::Tail| async move {
            parse_target(tail.as_str()).ok_or_else(|| Rejection::from(Refused::not_found()))
        })
        .boxed()
}

fn parse_target(path: &str) -> Option<Target> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some((name, rest)) = path.split_once("/-/") else {
        return Some(Target::Repository(path.parse().ok()?));
    };
    let name: RepoName = name.parse().ok()?;
    let (reference, delete) = match rest.strip_suffix("/delete") {
        Some(reference) => (reference, true),
        None => (rest, false),
    };
    let reference: Reference = reference.parse().ok()?;
    Some(if delete {
        Target::Delete(name, reference)
    } else {
        Target::Image(name, reference)
    })
}

/// The names to pull by: those the registry was given (`--pull-name`: a
/// NodePort, an Ingress, the in-cluster Service), then the one the browser
/// reached it by.
fn pull_names(state: &Shared, host: Option<&str>) -> Vec<String> {
    let mut names = state.pull_names.clone();
    if let Some(host) = host
        && !names.iter().any(|n| n == host)
    {
        names.push(host.to_owned());
    }
    names
}

/// The host the browser reached us by, which is also a name to pull by:
/// the Host header, or over HTTP/2 the request's authority.
fn host() -> BoxedFilter<(Option<String>,)> {
    warp::host::optional()
        .map(|authority: Option<Authority>| authority.map(|a| a.to_string()))
        .boxed()
}

/// Every page of the UI; what is not one falls through to the API's routes.
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let s = {
        let state = state.clone();
        move || {
            let state = state.clone();
            warp::any().map(move || state.clone()).boxed()
        }
    };
    let assets = warp::path!("-" / String)
        .and(warp::get())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(assets::serve);
    let login = warp::path!("login")
        .and(warp::get())
        .and(viewer(&state))
        .and_then(page::login);
    let home = warp::path::end()
        .and(warp::get())
        .and(s())
        .and(viewer(&state))
        .and(host())
        .and(warp::query())
        .and_then(repositories::page);
    let overview = warp::path!("overview")
        .and(warp::get())
        .and(s())
        .and(viewer(&state))
        .and_then(overview::page);
    let view = target()
        .and(warp::get())
        .and(s())
        .and(viewer(&state))
        .and(host())
        .and(warp::query())
        .and_then(
            |target: Target, state: Shared, viewer: Viewer, host, query| async move {
                match target {
                    Target::Repository(name) => tags::page(state, viewer, name, query).await,
                    Target::Image(name, reference) => {
                        image::page(state, viewer, name, reference, host).await
                    }
                    Target::Delete(name, reference) => {
                        delete::confirm(state, viewer, name, reference).await
                    }
                }
            },
        );
    let delete = target()
        .and(warp::post())
        .and_then(|target: Target| async move {
            match target {
                Target::Delete(name, reference) => Ok((name, reference)),
                _ => Err(Rejection::from(Refused::not_found())),
            }
        })
        .untuple_one()
        .and(delete::same_origin())
        .and(s())
        .and(viewer(&state))
        .and_then(delete::delete);
    assets
        .or(login)
        .unify()
        .or(home)
        .unify()
        .or(overview)
        .unify()
        .or(view)
        .unify()
        .or(delete)
        .unify()
        .recover(page::recover)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_repositories_images_and_deletions() {
        let name = |t: Option<Target>| match t {
            Some(Target::Repository(n)) => format!("repo {n}"),
            Some(Target::Image(n, r)) => format!("image {n} {r}"),
            Some(Target::Delete(n, r)) => format!("delete {n} {r}"),
            None => "none".into(),
        };
        assert_eq!(name(parse_target("team/app")), "repo team/app");
        assert_eq!(name(parse_target("team/app/")), "repo team/app");
        assert_eq!(name(parse_target("team/app/-/v1")), "image team/app v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            name(parse_target(&format!("a/-/{digest}/delete"))),
            format!("delete a {digest}")
        );
        // A repository may be named "delete" or hold a component "manifests".
        assert_eq!(name(parse_target("x/delete")), "repo x/delete");
        assert_eq!(name(parse_target("x/-/delete")), "image x delete");
        for bad in [
            "",
            "Team/app",
            "a/-/",
            "a/-/v1/extra",
            "a/-/sha256:abc",
            "-/x",
        ] {
            assert_eq!(name(parse_target(bad)), "none", "{bad}");
        }
    }
}
