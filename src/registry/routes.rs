//! Every endpoint, in one function that reads like the spec's endpoint table.
//!
//! Repository names contain slashes, so an OCI path is matched from its end:
//! `/v2/<name>/manifests/<reference>` is the tail split at its last
//! `/manifests/`. The name is validated before any handler runs; a bad one is a
//! NAME_INVALID rejection and never reaches the store.

use super::access_log::RequestUser;
use super::admin::{self, AdminToken};
use super::auth::{Auth, Identity, Right};
use super::errors::{ApiError, Code, recover};
use super::metrics::Metrics;
use super::server::ClientAddr;
use super::{base, blobs, catalog, health, manifests, referrers, tags, uploads};
use crate::oci::RepoName;
use crate::storage::{Body, GcOptions, Store};
use bytes::Buf;
use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub type Query = HashMap<String, String>;

/// The endpoints under `/v2/<name>/`, by the path that follows the name.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    /// `/manifests/<reference>`
    Manifest,
    /// `/blobs/<digest>`
    Blob,
    /// `/blobs/uploads/`
    UploadStart,
    /// `/blobs/uploads/<id>`
    Upload,
    /// `/tags/list`
    Tags,
    /// `/referrers/<digest>`
    Referrers,
}

/// Splits a path below `/v2/` into the repository name and what follows the
/// endpoint's keyword (empty for endpoints without a parameter).
fn match_endpoint(tail: &str, endpoint: Endpoint) -> Option<(&str, &str)> {
    let with_param = |keyword: &str| {
        let (name, param) = tail.rsplit_once(keyword)?;
        (!param.is_empty() && !param.contains('/')).then_some((name, param))
    };
    match endpoint {
        Endpoint::Manifest => with_param("/manifests/"),
        Endpoint::Blob => with_param("/blobs/").filter(|(_, p)| *p != "uploads"),
        Endpoint::Upload => with_param("/blobs/uploads/"),
        Endpoint::Referrers => with_param("/referrers/"),
        Endpoint::UploadStart => tail
            .strip_suffix("/blobs/uploads/")
            .or_else(|| tail.strip_suffix("/blobs/uploads"))
            .map(|name| (name, "")),
        Endpoint::Tags => tail.strip_suffix("/tags/list").map(|name| (name, "")),
    }
}

/// Route templates: the `route` label of the request metrics.
pub const MANIFEST_ROUTE: &str = "/v2/<name>/manifests/<reference>";
pub const BLOB_ROUTE: &str = "/v2/<name>/blobs/<digest>";
pub const UPLOAD_START_ROUTE: &str = "/v2/<name>/blobs/uploads/";
pub const UPLOAD_ROUTE: &str = "/v2/<name>/blobs/uploads/<uuid>";

/// The template of the route a path is for, e.g. [`MANIFEST_ROUTE`]; `other`
/// for paths no endpoint serves.
pub fn route_template(path: &str) -> &'static str {
    route_of(path).0
}

/// The route template of a path and, for the endpoints under `/v2/<name>/`,
/// the repository it names when that is a valid name.
pub fn route_of(path: &str) -> (&'static str, Option<RepoName>) {
    match path {
        "/v2" | "/v2/" => return ("/v2/", None),
        "/v2/_catalog" => return ("/v2/_catalog", None),
        "/healthz" => return ("/healthz", None),
        "/readyz" => return ("/readyz", None),
        "/metrics" => return ("/metrics", None),
        "/berth/v1/gc" => return ("/berth/v1/gc", None),
        "/berth/v1/scrub" => return ("/berth/v1/scrub", None),
        _ => {}
    }
    let Some(tail) = path.strip_prefix("/v2/") else {
        return ("other", None);
    };
    [
        (Endpoint::Upload, UPLOAD_ROUTE),
        (Endpoint::UploadStart, UPLOAD_START_ROUTE),
        (Endpoint::Blob, BLOB_ROUTE),
        (Endpoint::Manifest, MANIFEST_ROUTE),
        (Endpoint::Tags, "/v2/<name>/tags/list"),
        (Endpoint::Referrers, "/v2/<name>/referrers/<digest>"),
    ]
    .into_iter()
    .find_map(|(endpoint, route)| {
        let (name, _) = match_endpoint(tail, endpoint)?;
        Some((route, name.parse().ok()))
    })
    .unwrap_or(("other", None))
}

/// Matches `/v2/<name>/<endpoint path>` and extracts the validated name and the
/// endpoint's parameter.
fn repo_path(endpoint: Endpoint) -> BoxedFilter<(RepoName, String)> {
    warp::path("v2")
        .and(warp::path::tail())
        .and_then(move |tail: warp::path::Tail| async move {
            let (name, param) =
                match_endpoint(tail.as_str(), endpoint).ok_or_else(warp::reject::not_found)?;
            let name: RepoName = name.parse().map_err(|e: crate::oci::NameError| {
                warp::reject::custom(ApiError::new(Code::NameInvalid, e.to_string()))
            })?;
            Ok::<_, Rejection>((name, param.to_owned()))
        })
        .untuple_one()
        .boxed()
}

/// The request body as a stream of bytes for the store.
fn body() -> BoxedFilter<(Body,)> {
    warp::body::stream()
        .map(|stream: _| {
            let stream = futures_util::StreamExt::map(stream, |chunk: Result<_, warp::Error>| {
                chunk.map(|mut buf: _| {
                    let len = Buf::remaining(&buf);
                    Buf::copy_to_bytes(&mut buf, len)
                })
            });
            Box::pin(stream.map_err(std::io::Error::other)) as Body
        })
        .boxed()
}

fn with_store(store: Store) -> BoxedFilter<(Store,)> {
    warp::any().map(move || store.clone()).boxed()
}

fn with_auth(auth: Auth) -> BoxedFilter<(Auth,)> {
    warp::any().map(move || auth.clone()).boxed()
}

fn query() -> BoxedFilter<(Query,)> {
    warp::query::<Query>().boxed()
}

fn headers() -> BoxedFilter<(HeaderMap,)> {
    warp::header::headers_cloned().boxed()
}

/// A constant for handlers that serve two methods (GET and HEAD).
fn flag(value: bool) -> BoxedFilter<(bool,)> {
    warp::any().map(move || value).boxed()
}

/// The caller, from the Authorization header; wrong credentials are a 401 here.
fn identity(auth: &Auth) -> BoxedFilter<(Identity,)> {
    let auth = auth.clone();
    warp::header::optional::<String>("authorization")
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::ext::optional::<RequestUser>())
        .and_then(
            move |authorization: Option<String>,
                  client: Option<ClientAddr>,
                  user: Option<RequestUser>| {
                let auth = auth.clone();
                async move {
                    let who = auth
                        .identify(authorization.as_deref(), client.map(|c| c.0.ip()))
                        .await?;
                    if let (Some(user), Identity::User(name)) = (user, &who) {
                        user.set(name);
                    }
                    Ok::<_, Rejection>(who)
                }
            },
        )
        .boxed()
}

/// `/v2/<name>/<endpoint>` with `method`, for a caller holding `right` on
/// `<name>`. Path and method come first, so only the one route a request is
/// for checks its credentials.
fn allowed_as(
    method: BoxedFilter<()>,
    endpoint: Endpoint,
    right: Right,
    auth: &Auth,
) -> BoxedFilter<(RepoName, String, Identity)> {
    let check = auth.clone();
    repo_path(endpoint)
        .and(method)
        .and(identity(auth))
        .and_then(move |name: RepoName, param: String, who: Identity| {
            let check = check.clone();
            async move {
                check.require(&who, &name, right)?;
                Ok::<_, Rejection>((name, param, who))
            }
        })
        .untuple_one()
        .boxed()
}

/// [`allowed_as`] for handlers that need not know who called.
fn allowed(
    method: BoxedFilter<()>,
    endpoint: Endpoint,
    right: Right,
    auth: &Auth,
) -> BoxedFilter<(RepoName, String)> {
    allowed_as(method, endpoint, right, auth)
        .map(|name, param, _| (name, param))
        .untuple_one()
        .boxed()
}

/// Admin requests are a few options, never data.
const ADMIN_BODY_LIMIT: u64 = 64 * 1024;

/// The body of an admin request, refused when its announced length is too big
/// (a request without a body has no Content-Length at all).
fn admin_body() -> BoxedFilter<(bytes::Bytes,)> {
    warp::header::optional::<u64>("content-length")
        .and_then(|length: Option<u64>| async move {
            match length {
                Some(length) if length > ADMIN_BODY_LIMIT => Err(Rejection::from(
                    ApiError::new(Code::SizeInvalid, "admin request body too large")
                        .with_status(warp::http::StatusCode::PAYLOAD_TOO_LARGE),
                )),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::bytes())
        .boxed()
}

/// Passes only requests that carry the admin bearer token.
fn admin(token: AdminToken) -> BoxedFilter<()> {
    warp::header::optional::<String>("authorization")
        .and_then(move |authorization: Option<String>| {
            let check = token.check(authorization.as_deref());
            async move { check.map_err(Rejection::from) }
        })
        .untuple_one()
        .boxed()
}

/// The whole HTTP API: health probes, then the OCI endpoints.
pub fn routes(
    store: Store,
    auth: Auth,
    admin_token: AdminToken,
    gc_defaults: GcOptions,
    metrics: Arc<Metrics>,
) -> BoxedFilter<(Response,)> {
    let s = || with_store(store.clone());
    let get = || warp::get().boxed();
    let head = || warp::head().boxed();

    let healthz = warp::path!("healthz").and(warp::get()).map(health::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(s())
        .then(health::readyz);
    let m = metrics.clone();
    let metrics_text = warp::path!("metrics")
        .and(warp::get())
        .and(s())
        .map(move |store: Store| {
            let mut response = Response::new(m.encode(store.usage()).into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        });

    // GET|HEAD /v2/  — API version check (and login check)
    let a = auth.clone();
    let base = warp::path("v2")
        .and(warp::path::end())
        .and(warp::get().or(warp::head()).unify())
        .and(identity(&auth))
        .and_then(move |who| base::version(a.clone(), who));
    // GET /v2/_catalog
    let catalog = warp::path!("v2" / "_catalog")
        .and(warp::get())
        .and(identity(&auth))
        .and(with_auth(auth.clone()))
        .and(s())
        .and(query())
        .and_then(catalog::list);

    // GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>
    let manifest_get = allowed(get(), Endpoint::Manifest, Right::Pull, &auth)
        .and(flag(false))
        .and(s())
        .and(headers())
        .and_then(manifests::get);
    let manifest_head = allowed(head(), Endpoint::Manifest, Right::Pull, &auth)
        .and(flag(true))
        .and(s())
        .and(headers())
        .and_then(manifests::get);
    let manifest_put = allowed(warp::put().boxed(), Endpoint::Manifest, Right::Push, &auth)
        .and(s())
        .and(headers())
        .and(body())
        .and_then(manifests::put);
    let manifest_delete = allowed(
        warp::delete().boxed(),
        Endpoint::Manifest,
        Right::Delete,
        &auth,
    )
    .and(s())
    .and_then(manifests::delete);

    // GET|HEAD|DELETE /v2/<name>/blobs/<digest>
    let blob_get = allowed(get(), Endpoint::Blob, Right::Pull, &auth)
        .and(flag(false))
        .and(s())
        .and(headers())
        .and_then(blobs::get);
    let blob_head = allowed(head(), Endpoint::Blob, Right::Pull, &auth)
        .and(flag(true))
        .and(s())
        .and(headers())
        .and_then(blobs::get);
    let blob_delete = allowed(warp::delete().boxed(), Endpoint::Blob, Right::Delete, &auth)
        .and(s())
        .and_then(blobs::delete);

    // POST /v2/<name>/blobs/uploads/[?digest=|?mount=&from=]
    let upload_start = allowed_as(
        warp::post().boxed(),
        Endpoint::UploadStart,
        Right::Push,
        &auth,
    )
    .and(with_auth(auth.clone()))
    .and(s())
    .and(query())
    .and(body())
    .and_then(uploads::start);
    // GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>
    let upload_status = allowed(get(), Endpoint::Upload, Right::Push, &auth)
        .and(s())
        .and_then(uploads::status);
    let upload_patch = allowed(warp::patch().boxed(), Endpoint::Upload, Right::Push, &auth)
        .and(s())
        .and(headers())
        .and(body())
        .and_then(uploads::patch);
    let upload_put = allowed(warp::put().boxed(), Endpoint::Upload, Right::Push, &auth)
        .and(s())
        .and(query())
        .and(body())
        .and_then(uploads::finish);
    let upload_delete = allowed(warp::delete().boxed(), Endpoint::Upload, Right::Push, &auth)
        .and(s())
        .and_then(uploads::cancel);

    // GET /v2/<name>/tags/list[?n=&last=]
    let tags = allowed(get(), Endpoint::Tags, Right::Pull, &auth)
        .and(s())
        .and(query())
        .and_then(tags::list);
    // GET /v2/<name>/referrers/<digest>[?artifactType=]
    let referrers = allowed(get(), Endpoint::Referrers, Right::Pull, &auth)
        .and(s())
        .and(query())
        .and_then(referrers::list);

    // POST /berth/v1/gc  — admin API, bearer token only
    let m = metrics.clone();
    let gc = warp::path!("berth" / "v1" / "gc")
        .and(warp::post())
        .and(admin(admin_token.clone()))
        .map(move || (gc_defaults.clone(), m.clone()))
        .untuple_one()
        .and(s())
        .and(query())
        .and(admin_body())
        .and_then(admin::gc);
    // POST /berth/v1/scrub  — admin API, bearer token only
    let scrub = warp::path!("berth" / "v1" / "scrub")
        .and(warp::post())
        .and(admin(admin_token))
        .map(move || metrics.clone())
        .and(s())
        .and(query())
        .and(admin_body())
        .and_then(admin::scrub);

    let api = base
        .or(catalog)
        .unify()
        .or(manifest_get)
        .unify()
        .or(manifest_head)
        .unify()
        .or(manifest_put)
        .unify()
        .or(manifest_delete)
        .unify()
        .or(blob_get)
        .unify()
        .or(blob_head)
        .unify()
        .or(blob_delete)
        .unify()
        .or(upload_start)
        .unify()
        .or(upload_status)
        .unify()
        .or(upload_patch)
        .unify()
        .or(upload_put)
        .unify()
        .or(upload_delete)
        .unify()
        .or(tags)
        .unify()
        .or(referrers)
        .unify()
        .boxed();

    healthz
        .or(readyz)
        .unify()
        .or(metrics_text)
        .unify()
        .or(gc)
        .unify()
        .or(scrub)
        .unify()
        .or(api)
        .unify()
        .recover(recover)
        .unify()
        .map(|reply: Response| {
            warp::reply::with_header(reply, "Docker-Distribution-API-Version", "registry/2.0")
                .into_response()
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_from_the_end() {
        let m = |t, e| match_endpoint(t, e);
        assert_eq!(
            m("a/b/manifests/latest", Endpoint::Manifest),
            Some(("a/b", "latest"))
        );
        assert_eq!(
            m("a/blobs/sha256:x", Endpoint::Blob),
            Some(("a", "sha256:x"))
        );
        assert_eq!(m("a/blobs/uploads/", Endpoint::Blob), None);
        assert_eq!(
            m("a/blobs/uploads/", Endpoint::UploadStart),
            Some(("a", ""))
        );
        assert_eq!(m("a/blobs/uploads/u1", Endpoint::Upload), Some(("a", "u1")));
        assert_eq!(m("a/blobs/uploads/u1", Endpoint::Blob), None);
        assert_eq!(m("a/blobs/uploads/u1", Endpoint::UploadStart), None);
        // A repository may itself be called "blobs" or "manifests".
        assert_eq!(
            m("x/manifests/blobs/sha256:y", Endpoint::Blob),
            Some(("x/manifests", "sha256:y"))
        );
        assert_eq!(m("x/manifests/blobs/sha256:y", Endpoint::Manifest), None);
        assert_eq!(m("a/tags/list", Endpoint::Tags), Some(("a", "")));
        assert_eq!(
            m("a/referrers/sha256:z", Endpoint::Referrers),
            Some(("a", "sha256:z"))
        );
        assert_eq!(m("a/manifests/", Endpoint::Manifest), None);
    }

    #[test]
    fn route_templates_never_carry_names_or_digests() {
        let t = route_template;
        assert_eq!(t("/v2/"), "/v2/");
        assert_eq!(t("/v2/team/app/manifests/latest"), MANIFEST_ROUTE);
        assert_eq!(t("/v2/app/blobs/sha256:abc"), BLOB_ROUTE);
        assert_eq!(t("/v2/app/blobs/uploads/"), UPLOAD_START_ROUTE);
        assert_eq!(t("/v2/app/blobs/uploads/0b1c"), UPLOAD_ROUTE);
        assert_eq!(t("/v2/app/tags/list"), "/v2/<name>/tags/list");
        assert_eq!(
            t("/v2/app/referrers/sha256:abc"),
            "/v2/<name>/referrers/<digest>"
        );
        assert_eq!(t("/v2/_catalog"), "/v2/_catalog");
        assert_eq!(t("/metrics"), "/metrics");
        assert_eq!(t("/berth/v1/gc"), "/berth/v1/gc");
        assert_eq!(t("/berth/v1/scrub"), "/berth/v1/scrub");
        assert_eq!(t("/v2/app/what"), "other");
        assert_eq!(t("/etc/passwd"), "other");
    }

    #[test]
    fn the_repository_of_a_path_is_a_valid_name_or_none() {
        let repo = |path| route_of(path).1.map(|name| name.as_str().to_owned());
        assert_eq!(
            repo("/v2/team/app/manifests/latest").as_deref(),
            Some("team/app")
        );
        assert_eq!(repo("/v2/app/blobs/uploads/").as_deref(), Some("app"));
        assert_eq!(repo("/v2/Bad..Name/tags/list"), None);
        assert_eq!(repo("/v2/_catalog"), None);
    }
}
