//! The HTTP server: the OCI Distribution API on warp, over the [`Store`].
//!
//! `endpoint.rs` says which path is which endpoint; `routes.rs` gives each its
//! method, right and handler; each resource has its handler file; every error
//! leaves through `errors.rs` as OCI error JSON.

mod access_log;
mod admin;
pub(crate) mod auth;
mod base;
mod blobs;
mod caller;
mod catalog;
pub(crate) mod config;
mod endpoint;
mod errors;
pub mod headers;
mod health;
mod leftover;
mod manifests;
mod metrics;
mod origin;
mod pagination;
mod referrers;
mod routes;
mod server;
mod state;
mod tags;
mod ui;
mod uploads;

use crate::proxy::Proxy;
use crate::storage::{Store, StoreError};
use errors::ApiError;
use std::net::SocketAddr;
use warp::http::{HeaderName, HeaderValue, StatusCode, header};
use warp::reply::Response;

pub use config::{ServeArgs, ServeConfig};

/// Runs the registry until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let auth = auth::Auth::load(&config.auth)?;
    let admin = admin::AdminToken::load(config.admin_token_file.as_deref())?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(server::tls_acceptor(cert, key)?),
        None => None,
    };
    let store = match &config.bucket {
        None => Store::open(&config.root, config.min_free.as_u64())
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open the data folder {}: {e}", config.root.display())
            })?,
        Some(bucket) => {
            let objects = crate::storage::bucket::connect(bucket)?;
            tracing::info!(storage = %bucket.url, redirect = bucket.redirect, "content in {}", objects.store);
            Store::open_bucket(objects, &config.root.join("tmp"), bucket.redirect)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", bucket.url))?
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(root = %config.root.display(), "listening on {scheme}://{addr}");
    let proxy = Proxy::new(config.proxy.clone())?;
    for (name, url) in proxy.upstreams() {
        tracing::info!(upstream = name, url, "mirroring {url} under {name}/");
    }
    let metrics = std::sync::Arc::new(metrics::Metrics::with_proxy(&proxy.metrics));
    let state = std::sync::Arc::new(state::State {
        store,
        auth,
        metrics: metrics.clone(),
        gc_defaults: config.gc.clone(),
        proxy,
        pull_names: config.pull_names.clone(),
        ui: Default::default(),
    });
    tokio::spawn(admin::keep_caches(state.clone()));
    tokio::spawn(ui::keep_history(state.store.clone()));
    server::run(
        listener,
        routes::routes(state, admin),
        metrics,
        tls,
        server::Limits::default(),
        shutdown_signal(),
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

impl From<StoreError> for warp::Rejection {
    fn from(e: StoreError) -> warp::Rejection {
        warp::reject::custom(ApiError::from(e))
    }
}

/// Headers of the distribution API that `http` has no constant for.
const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
/// The upstream a mirrored repository's content came from (the spec's Registry Proxying).
const OCI_NAMESPACE: HeaderName = HeaderName::from_static("oci-namespace");
/// Whether the pull-through cache had it (RFC 9211).
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// A response with a status and no body.
fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(bytes::Bytes::new().into());
    *response.status_mut() = status;
    response
}

/// A JSON response with the given content type.
fn json(status: StatusCode, content_type: &'static str, body: &serde_json::Value) -> Response {
    let mut response = Response::new(body.to_string().into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Sets a header from a value we built (digests, validated paths, numbers), which
/// is always valid ASCII.
fn set_header(response: &mut Response, name: HeaderName, value: impl ToString) {
    if let Ok(value) = HeaderValue::try_from(value.to_string()) {
        response.headers_mut().insert(name, value);
    }
}
