//! Every endpoint, in one function that reads like the spec's endpoint table.
//!
//! Which path is which endpoint is `endpoint.rs`'s; here each endpoint gets its
//! method, the right it needs and its handler. The repository name is
//! validated before any handler runs; a bad one is a NAME_INVALID rejection
//! and never reaches the store.

use super::admin::{self, AdminToken};
use super::auth::{Identity, Right};
use super::caller::identity;
use super::endpoint::Endpoint;
use super::errors::{ApiError, Code, recover};
use super::origin::Site;
use super::state::Shared;
use super::{base, blobs, catalog, health, manifests, referrers, tags, uploads};
use crate::oci::RepoName;
use crate::storage::Body;
use bytes::Buf;
use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// Matches `/v2/<name>/<endpoint path>` and extracts the validated name and the
/// endpoint's parameter. With `?ns=<upstream>` (containerd's mirror requests),
/// the name is the local one of the pull-through cache, `<upstream>/<name>`.
fn repo_path(endpoint: Endpoint, state: &Shared) -> BoxedFilter<(RepoName, String)> {
    let state = state.clone();
    warp::path("v2")
        .and(warp::path::tail())
        .and(optional_raw_query())
        .and_then(move |tail: warp::path::Tail, query: String| {
            let state = state.clone();
            async move {
                let (name, param) = endpoint
                    .split(tail.as_str())
                    .ok_or_else(warp::reject::not_found)?;
                let name: RepoName = name.parse().map_err(|e: crate::oci::NameError| {
                    warp::reject::custom(ApiError::new(Code::NameInvalid, e.to_string()))
                })?;
                let ns = query.split('&').find_map(|pair| pair.strip_prefix("ns="));
                Ok::<_, Rejection>((state.proxy.local_name(name, ns), param.to_owned()))
            }
        })
        .untuple_one()
        .boxed()
}

/// The raw query string, empty when there is none.
fn optional_raw_query() -> BoxedFilter<(String,)> {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
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

/// The server's shared state, for every handler.
fn with_state(state: Shared) -> BoxedFilter<(Shared,)> {
    warp::any().map(move || state.clone()).boxed()
}

/// The query string, as the endpoint's typed struct.
fn query<T: DeserializeOwned + Send + 'static>() -> BoxedFilter<(T,)> {
    warp::query::<T>().boxed()
}

fn headers() -> BoxedFilter<(HeaderMap,)> {
    warp::header::headers_cloned().boxed()
}

/// GET or HEAD: the two methods one handler serves, told apart by [`is_head`].
fn get_or_head() -> BoxedFilter<()> {
    warp::get().or(warp::head()).unify().boxed()
}

fn is_head() -> BoxedFilter<(bool,)> {
    warp::method()
        .map(|method: Method| method == Method::HEAD)
        .boxed()
}

/// `/v2/<name>/<endpoint>` with `method`, for a caller holding `right` on
/// `<name>`. Path and method come first, so only the one route a request is
/// for checks its credentials. Repositories of the pull-through cache take
/// pulls only.
fn allowed_as(
    method: BoxedFilter<()>,
    endpoint: Endpoint,
    right: Right,
    state: &Shared,
) -> BoxedFilter<(RepoName, String, Identity)> {
    let check = state.clone();
    repo_path(endpoint, state)
        .and(method)
        .and(identity(&state.auth))
        .and(super::origin::site())
        .and_then(move |name: RepoName, param: String, who: Identity, site: Site| {
            let check = check.clone();
            async move {
                check.auth.require(&who, &name, right)?;
                // A browser that logged in to the web UI sends its
                // credentials with a form another site posts here too.
                if right != Right::Pull && site == Site::Other {
                    return Err(Rejection::from(ApiError::new(
                        Code::Denied,
                        "a browser request from another site may not change the registry",
                    )));
                }
                if right != Right::Pull
                    && let Some(route) = check.proxy.route(&name)
                {
                    return Err(Rejection::from(ApiError::new(
                        Code::Unsupported,
                        format!(
                            "{name} mirrors the upstream {} (pull-through cache) and is read-only; push to a repository outside {}/",
                            route.upstream(),
                            route.upstream()
                        ),
                    )));
                }
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
    state: &Shared,
) -> BoxedFilter<(RepoName, String)> {
    allowed_as(method, endpoint, right, state)
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
pub fn routes(state: Shared, admin_token: AdminToken) -> BoxedFilter<(Response,)> {
    let auth = &state.auth;
    let s = || with_state(state.clone());
    let get = || warp::get().boxed();
    let put = || warp::put().boxed();
    let delete = || warp::delete().boxed();

    let healthz = warp::path!("healthz").and(warp::get()).map(health::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(s())
        .then(health::readyz);
    let metrics_text = warp::path!("metrics")
        .and(warp::get())
        .and(s())
        .map(|state: Shared| {
            let text = state.metrics.encode(state.store.usage());
            let mut response = Response::new(text.into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        });

    // GET|HEAD /v2/  — API version check (and login check)
    let base = warp::path("v2")
        .and(warp::path::end())
        .and(warp::get().or(warp::head()).unify())
        .and(s())
        .and(identity(auth))
        .and_then(base::version);
    // GET /v2/_catalog[?n=&last=]
    let catalog = warp::path!("v2" / "_catalog")
        .and(warp::get())
        .and(s())
        .and(identity(auth))
        .and(query())
        .and_then(catalog::list);

    // GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>
    let manifest_get = allowed(get_or_head(), Endpoint::Manifest, Right::Pull, &state)
        .and(is_head())
        .and(s())
        .and(headers())
        .and_then(manifests::get);
    let manifest_put = allowed(put(), Endpoint::Manifest, Right::Push, &state)
        .and(s())
        .and(headers())
        .and(body())
        .and_then(manifests::put);
    let manifest_delete = allowed(delete(), Endpoint::Manifest, Right::Delete, &state)
        .and(s())
        .and_then(manifests::delete);

    // GET|HEAD|DELETE /v2/<name>/blobs/<digest>
    let blob_get = allowed(get_or_head(), Endpoint::Blob, Right::Pull, &state)
        .and(is_head())
        .and(s())
        .and(headers())
        .and_then(blobs::get);
    let blob_delete = allowed(delete(), Endpoint::Blob, Right::Delete, &state)
        .and(s())
        .and_then(blobs::delete);

    // POST /v2/<name>/blobs/uploads/[?digest=|?mount=&from=]
    let upload_start = allowed_as(
        warp::post().boxed(),
        Endpoint::UploadStart,
        Right::Push,
        &state,
    )
    .map(|name, _, who| (name, who))
    .untuple_one()
    .and(s())
    .and(query())
    .and(body())
    .and_then(uploads::start);
    // GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>
    let upload_status = allowed(get(), Endpoint::Upload, Right::Push, &state)
        .and(s())
        .and_then(uploads::status);
    let upload_patch = allowed(warp::patch().boxed(), Endpoint::Upload, Right::Push, &state)
        .and(s())
        .and(headers())
        .and(body())
        .and_then(uploads::patch);
    let upload_put = allowed(put(), Endpoint::Upload, Right::Push, &state)
        .and(s())
        .and(query())
        .and(body())
        .and_then(uploads::finish);
    let upload_delete = allowed(delete(), Endpoint::Upload, Right::Push, &state)
        .and(s())
        .and_then(uploads::cancel);

    // GET /v2/<name>/tags/list[?n=&last=]
    let tags = allowed(get(), Endpoint::Tags, Right::Pull, &state)
        .map(|name, _| name)
        .and(s())
        .and(query())
        .and_then(tags::list);
    // GET /v2/<name>/referrers/<digest>[?artifactType=]
    let referrers = allowed(get(), Endpoint::Referrers, Right::Pull, &state)
        .and(s())
        .and(query())
        .and_then(referrers::list);

    // POST /berth/v1/gc  — admin API, bearer token only
    let gc = warp::path!("berth" / "v1" / "gc")
        .and(warp::post())
        .and(admin(admin_token.clone()))
        .and(s())
        .and(query())
        .and(admin_body())
        .and_then(admin::gc);
    // POST /berth/v1/scrub  — admin API, bearer token only
    let scrub = warp::path!("berth" / "v1" / "scrub")
        .and(warp::post())
        .and(admin(admin_token.clone()))
        .and(s())
        .and(query())
        .and(admin_body())
        .and_then(admin::scrub);
    // GET /berth/v1/proxy  — admin API, bearer token only
    let proxy = warp::path!("berth" / "v1" / "proxy")
        .and(warp::get())
        .and(admin(admin_token))
        .and(s())
        .and_then(admin::proxy);

    let api = base
        .or(catalog)
        .unify()
        .or(manifest_get)
        .unify()
        .or(manifest_put)
        .unify()
        .or(manifest_delete)
        .unify()
        .or(blob_get)
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
        .or(proxy)
        .unify()
        .or(api)
        .unify()
        .or(super::ui::routes(state.clone()))
        .unify()
        .recover(recover)
        .unify()
        .map(|reply: Response| {
            warp::reply::with_header(reply, "Docker-Distribution-API-Version", "registry/2.0")
                .into_response()
        })
        .boxed()
}
