//! The admin API under `/berth/v1/`, apart from the OCI API: only a caller that
//! sends `Authorization: Bearer <token>` with the token of `--admin-token-file`
//! gets in. Without that file the admin API is closed to everyone.
//!
//! `POST /berth/v1/gc` runs a garbage collection (see `storage/gc.rs`) and
//! answers its report; options come from the query string or a JSON body:
//! `dryRun`, `deleteUntagged`, `grace` and `uploadMaxAge` (durations like `1h`).
//!
//! `POST /berth/v1/scrub` verifies every stored blob against its digest (see
//! `storage/scrub.rs`), moves the corrupt ones aside and answers the report;
//! its one option is `rate`, bytes read per second (`64MiB`, the default;
//! `0` for no limit).
//!
//! `GET /berth/v1/proxy` says how each upstream of the pull-through cache has
//! been answering (last contact, last failure) and, with a cap, how much its
//! cache holds: what the operator shows in the Registry's status.

use super::errors::{ApiError, Code};
use super::state::{Shared, State};
use crate::storage::{GcOptions, GcReport, ScrubOptions, StoreError, gc_run};
use bytes::Bytes;
use bytesize::ByteSize;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;
use subtle::ConstantTimeEq;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// The admin token, kept as its sha256 so that comparing takes the same time
/// whatever the length or content of what a caller sends.
#[derive(Clone)]
pub struct AdminToken(Option<[u8; 32]>);

impl AdminToken {
    /// Reads the token file (surrounding whitespace ignored); `None` closes the API.
    pub fn load(path: Option<&Path>) -> anyhow::Result<AdminToken> {
        let Some(path) = path else {
            return Ok(AdminToken(None));
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the admin token file {}: {e}", path.display())
        })?;
        let token = text.trim();
        if token.is_empty() {
            anyhow::bail!("the admin token file {} is empty", path.display());
        }
        Ok(AdminToken(Some(Sha256::digest(token.as_bytes()).into())))
    }

    /// Lets the request through only with the right bearer token.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.0 else {
            return Err(ApiError::new(
                Code::Denied,
                "the admin API is disabled: start the registry with --admin-token-file",
            ));
        };
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|token| Sha256::digest(token.trim().as_bytes()));
        match presented {
            Some(hash) if bool::from(hash.as_slice().ct_eq(expected)) => Ok(()),
            _ => Err(
                ApiError::new(Code::Unauthorized, "admin bearer token required").with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"berth-admin\""),
                ),
            ),
        }
    }
}

/// Options of a GC request; any left out take the registry's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GcRequest {
    dry_run: Option<bool>,
    delete_untagged: Option<bool>,
    #[serde(default, with = "humantime_serde_opt")]
    grace: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    upload_max_age: Option<Duration>,
}

/// Durations written as humans do (`90s`, `1h`, `7d`).
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl GcRequest {
    /// From the query string, then the JSON body (which wins where both speak).
    fn parse(query: &HashMap<String, String>, body: &[u8]) -> Result<GcRequest, ApiError> {
        let invalid = |message: String| {
            ApiError::new(Code::Unsupported, message).with_status(StatusCode::BAD_REQUEST)
        };
        let mut request = GcRequest::default();
        for (key, value) in query {
            let flag = || match value.as_str() {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(invalid(format!("{key}: not a boolean: {other}"))),
            };
            let duration = || {
                humantime::parse_duration(value)
                    .map_err(|e| invalid(format!("{key}: not a duration ({e}): {value}")))
            };
            match key.as_str() {
                "dryRun" => request.dry_run = Some(flag()?),
                "deleteUntagged" => request.delete_untagged = Some(flag()?),
                "grace" => request.grace = Some(duration()?),
                "uploadMaxAge" => request.upload_max_age = Some(duration()?),
                other => return Err(invalid(format!("unknown GC option: {other}"))),
            }
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let from_body: GcRequest = serde_json::from_slice(body)
                .map_err(|e| invalid(format!("invalid GC request body: {e}")))?;
            request.dry_run = from_body.dry_run.or(request.dry_run);
            request.delete_untagged = from_body.delete_untagged.or(request.delete_untagged);
            request.grace = from_body.grace.or(request.grace);
            request.upload_max_age = from_body.upload_max_age.or(request.upload_max_age);
        }
        Ok(request)
    }

    fn options(self, defaults: &GcOptions) -> GcOptions {
        GcOptions {
            dry_run: self.dry_run.unwrap_or(defaults.dry_run),
            delete_untagged: self.delete_untagged.unwrap_or(defaults.delete_untagged),
            grace: self.grace.unwrap_or(defaults.grace),
            upload_max_age: self.upload_max_age.unwrap_or(defaults.upload_max_age),
            retention: defaults.retention.clone(),
            caches: defaults.caches.clone(),
        }
    }
}

/// Options of a scrub request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScrubRequest {
    /// Bytes per second (`0`: no limit); the default when left out.
    rate: Option<ByteSize>,
}

impl ScrubRequest {
    /// From the query string, then the JSON body (which wins where both speak).
    fn parse(query: &HashMap<String, String>, body: &[u8]) -> Result<ScrubRequest, ApiError> {
        let invalid = |message: String| {
            ApiError::new(Code::Unsupported, message).with_status(StatusCode::BAD_REQUEST)
        };
        let mut request = ScrubRequest::default();
        for (key, value) in query {
            match key.as_str() {
                "rate" => {
                    let rate = value
                        .parse()
                        .map_err(|e| invalid(format!("rate: not a size ({e}): {value}")))?;
                    request.rate = Some(rate);
                }
                other => return Err(invalid(format!("unknown scrub option: {other}"))),
            }
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let from_body: ScrubRequest = serde_json::from_slice(body)
                .map_err(|e| invalid(format!("invalid scrub request body: {e}")))?;
            request.rate = from_body.rate.or(request.rate);
        }
        Ok(request)
    }

    fn options(self) -> ScrubOptions {
        match self.rate {
            Some(rate) => ScrubOptions {
                rate: NonZeroU64::new(rate.as_u64()),
            },
            None => ScrubOptions::default(),
        }
    }
}

/// `POST /berth/v1/scrub`
pub async fn scrub(
    state: Shared,
    query: HashMap<String, String>,
    body: Bytes,
) -> Result<Response, warp::Rejection> {
    let options = ScrubRequest::parse(&query, &body)?.options();
    let (store, metrics) = (state.store.clone(), state.metrics.clone());
    // On a task of its own, so that a client giving up on a long scrub (the
    // request's future dropped) neither stops it halfway nor loses its metrics.
    let run = tokio::spawn(async move {
        let started = Instant::now();
        let report = store.scrub(options).await;
        match &report {
            Ok(report) => metrics.scrub(Ok(report), started.elapsed()),
            // A refused second run is not a scrub.
            Err(StoreError::ScrubRunning) => {}
            Err(_) => metrics.scrub(Err(()), started.elapsed()),
        }
        report
    });
    let report = run
        .await
        .map_err(|e| warp::reject::custom(ApiError::new(Code::Unknown, format!("scrub: {e}"))))??;
    let body = serde_json::to_value(&report)
        .map_err(|e| warp::reject::custom(ApiError::new(Code::Unknown, format!("report: {e}"))))?;
    Ok(super::json(StatusCode::OK, "application/json", &body))
}

/// `POST /berth/v1/gc`
pub async fn gc(
    state: Shared,
    query: HashMap<String, String>,
    body: Bytes,
) -> Result<Response, warp::Rejection> {
    let options = GcRequest::parse(&query, &body)?.options(&state.gc_defaults);
    let report = collect(&state, options, REQUEST_RUN).await?;
    let body = serde_json::to_value(&report)
        .map_err(|e| warp::reject::custom(ApiError::new(Code::Unknown, format!("report: {e}"))))?;
    Ok(super::json(StatusCode::OK, "application/json", &body))
}

/// `GET /berth/v1/proxy`
pub async fn proxy(state: Shared) -> Result<Response, warp::Rejection> {
    let body = serde_json::json!({ "upstreams": state.proxy.status() });
    Ok(super::json(StatusCode::OK, "application/json", &body))
}

/// Runs one collection, and counts it in the metrics and the caches' sizes…
/// …and written in the store's history for the web UI's overview (`by`:
/// who asked); a collection for the caps that deleted nothing is left out,
/// so that those do not push the scheduled ones off the list.
async fn collect(state: &State, options: GcOptions, by: &str) -> Result<GcReport, StoreError> {
    let started = Instant::now();
    let fetched = state.proxy.fetched();
    let report = state.store.collect(options).await;
    let run = match &report {
        Ok(report) => {
            state.metrics.gc(Ok(report), started.elapsed());
            state.proxy.collected(report, &fetched);
            let deleted = report.blobs_deleted
                + report.manifests_deleted
                + report.tags_deleted
                + report.uploads_purged;
            (by != CAP_RUN || deleted > 0).then(|| gc_run(by, Ok(report)))
        }
        // A refused second run is not a collection.
        Err(StoreError::GcRunning) => None,
        Err(e) => {
            state.metrics.gc(Err(()), started.elapsed());
            Some(gc_run(by, Err(e.to_string())))
        }
    };
    if let Some(run) = run
        && let Err(e) = state.store.record_gc(run).await
    {
        tracing::warn!(error = %e, "the collection is not in the history");
    }
    report
}

/// Who asked for a collection, as its history says.
const REQUEST_RUN: &str = "request";
const CAP_RUN: &str = "cap";

/// Least pause between two collections the registry runs for its caps.
const CAP_PAUSE: Duration = Duration::from_secs(10);

/// Runs a collection, with the registry's own options, each time a capped
/// upstream's cache calls for one (`proxy/caps.rs`: after a start, past its
/// cap, when a kept image leaves the window), so that the cap holds between
/// the scheduled collections. After each, it pauses nine times as long as the
/// run took (10 s at least), so that a large store spends at most a tenth of
/// its time collecting for the caps. One that finds another running goes
/// back to waiting: that run evicts as well.
pub async fn keep_caches(state: Shared) {
    if state.gc_defaults.caches.is_empty() {
        return;
    }
    loop {
        state.proxy.over_cap().await;
        let started = Instant::now();
        match collect(&state, state.gc_defaults.clone(), CAP_RUN).await {
            Ok(_) | Err(StoreError::GcRunning) => {}
            Err(e) => tracing::warn!(error = %e, "the collection for the caches failed"),
        }
        tokio::time::sleep(CAP_PAUSE.max(started.elapsed() * 9)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> AdminToken {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, text).unwrap();
        AdminToken::load(Some(&path)).unwrap()
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = token("s3cret\n");
        assert!(t.check(Some("Bearer s3cret")).is_ok());
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("s3cret"),
        ] {
            assert!(t.check(wrong).is_err(), "{wrong:?}");
        }
        assert!(AdminToken(None).check(Some("Bearer s3cret")).is_err());
    }

    #[test]
    fn empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n").unwrap();
        assert!(AdminToken::load(Some(&path)).is_err());
    }

    #[test]
    fn options_from_query_and_body() {
        let query: HashMap<String, String> = [
            ("dryRun".into(), "true".into()),
            ("grace".into(), "10m".into()),
        ]
        .into();
        let r = GcRequest::parse(&query, br#"{"grace":"30s","deleteUntagged":true}"#).unwrap();
        let o = r.options(&GcOptions::default());
        assert!(o.dry_run && o.delete_untagged);
        assert_eq!(o.grace, Duration::from_secs(30));
        assert_eq!(o.upload_max_age, GcOptions::default().upload_max_age);
        let bad: HashMap<String, String> = [("grace".into(), "soon".into())].into();
        assert!(GcRequest::parse(&bad, b"").is_err());
        assert!(GcRequest::parse(&HashMap::new(), b"{\"gracee\":\"1s\"}").is_err());
    }

    #[test]
    fn scrub_rate_from_query_and_body() {
        let rate = |query: &[(&str, &str)], body: &[u8]| {
            let query = query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ScrubRequest::parse(&query, body).map(|r| r.options().rate.map(NonZeroU64::get))
        };
        assert_eq!(
            rate(&[], b"").unwrap(),
            Some(crate::storage::DEFAULT_SCRUB_RATE)
        );
        assert_eq!(rate(&[("rate", "1MiB")], b"").unwrap(), Some(1 << 20));
        assert_eq!(rate(&[("rate", "0")], b"").unwrap(), None);
        assert_eq!(
            rate(&[("rate", "1MiB")], br#"{"rate":"2KiB"}"#).unwrap(),
            Some(2048)
        );
        assert_eq!(rate(&[], br#"{"rate":4096}"#).unwrap(), Some(4096));
        assert!(rate(&[("rate", "fast")], b"").is_err());
        assert!(rate(&[("speed", "1MiB")], b"").is_err());
        assert!(rate(&[], br#"{"rat":"1MiB"}"#).is_err());
    }
}
