//! Throughput: `push` (one large blob, monolithic), `push-chunked` (the same
//! in PATCHes) and `pull` (it read back), each timed over the whole transfer.

use super::steps::{check_stored, expect_length};
use super::{Bench, OCTET_STREAM, size_text};
use crate::bench::BenchError;
use crate::bench::client::{
    Conn, REQUEST_TIMEOUT, ReqBody, expect_digest, expect_status, header_str, location_with,
    with_query,
};
use crate::bench::payload::Payload;
use crate::bench::report::{self, ScenarioReport};
use http_body_util::BodyExt;
use hyper::header;
use hyper::{Method, StatusCode};
use indicatif::ProgressBar;
use std::sync::Arc;
use std::time::Instant;

impl Bench {
    pub(super) async fn push(&mut self) -> Result<ScenarioReport, BenchError> {
        let payload = self.prepare("push").await?;
        let repo = self.repo("push");
        let mut conn = self.target.connect().await?;
        let progress = report::bar(payload.size(), true, "push");
        let started = Instant::now();
        push_monolithic(&mut conn, &repo, &payload, Some(&progress)).await?;
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        check_stored(&mut conn, &repo, payload.digest(), payload.size()).await?;
        let size = payload.size();
        self.pushed = Some((repo, payload));
        Ok(ScenarioReport::new(
            "push",
            format!(
                "one {} blob, monolithic: POST, then PUT ?digest= with the body",
                size_text(size)
            ),
            2,
            1,
            elapsed,
        )
        .with_bytes(size))
    }

    pub(super) async fn push_chunked(&mut self) -> Result<ScenarioReport, BenchError> {
        let payload = self.prepare("push-chunked").await?;
        let repo = self.repo("chunked");
        let mut conn = self.target.connect().await?;
        let size = payload.size();
        let chunk = self.args.chunk_size;
        let progress = report::bar(size, true, "push-chunked");
        let started = Instant::now();

        let path = self.target.path(&format!("/v2/{repo}/blobs/uploads/"));
        let what = format!("POST {path}");
        let (r, body) = conn.call(Method::POST, &path, &[], ReqBody::Empty).await?;
        expect_status(&what, &r, &body, &[StatusCode::ACCEPTED])?;
        let mut location = location_with(&what, &r, "")?;
        let mut requests = 1;
        let mut offset = 0;
        while offset < size {
            let end = (offset + chunk).min(size);
            let range = format!("{offset}-{}", end - 1);
            let what = format!("PATCH {location} ({range})");
            let (r, body) = conn
                .call(
                    Method::PATCH,
                    &location,
                    &[
                        (header::CONTENT_TYPE, OCTET_STREAM),
                        (header::CONTENT_RANGE, &range),
                    ],
                    ReqBody::payload(&payload, offset, end, Some(&progress)),
                )
                .await?;
            requests += 1;
            expect_status(&what, &r, &body, &[StatusCode::ACCEPTED])?;
            let expected_range = format!("0-{}", end - 1);
            if header_str(&r, "range") != Some(expected_range.as_str()) {
                return Err(BenchError::Protocol(format!(
                    "{what}: Range says {:?}, expected {expected_range}",
                    header_str(&r, "range")
                )));
            }
            location = location_with(&what, &r, "")?;
            offset = end;
        }
        let put = with_query(&location, &format!("digest={}", payload.digest()));
        let what = format!("PUT {put}");
        let (r, body) = conn
            .call(
                Method::PUT,
                &put,
                &[(header::CONTENT_TYPE, OCTET_STREAM)],
                ReqBody::Empty,
            )
            .await?;
        requests += 1;
        expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
        expect_digest(&what, &r, payload.digest())?;
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        check_stored(&mut conn, &repo, payload.digest(), size).await?;
        Ok(ScenarioReport::new(
            "push-chunked",
            format!(
                "one {} blob in {} PATCHes of {}, then PUT ?digest=",
                size_text(size),
                size.div_ceil(chunk),
                size_text(chunk.min(size))
            ),
            requests,
            1,
            elapsed,
        )
        .with_bytes(size))
    }

    pub(super) async fn pull(&mut self) -> Result<ScenarioReport, BenchError> {
        let mut conn = self.target.connect().await?;
        let (repo, payload) = match &self.pushed {
            Some(pushed) => pushed.clone(),
            None => {
                let payload = self.prepare("pull").await?;
                let repo = self.repo("pull");
                push_monolithic(&mut conn, &repo, &payload, None).await?;
                (repo, payload)
            }
        };
        let size = payload.size();
        let pulls = u64::from(self.args.pulls);
        let progress = report::bar(size * pulls, true, "pull");
        let path = self
            .target
            .path(&format!("/v2/{repo}/blobs/{}", payload.digest()));
        // One read untimed first: what is measured is a blob being served
        // again, as to a fleet of nodes, whether or not the push left it in the
        // page cache (berth writes large blobs past it, with direct I/O).
        let warm_up = ProgressBar::hidden();
        let mut started = Instant::now();
        for i in 0..=pulls {
            let bar = if i == 0 { &warm_up } else { &progress };
            tokio::time::timeout(REQUEST_TIMEOUT, pull_once(&mut conn, &path, &payload, bar))
                .await
                .map_err(|_| BenchError::Timeout(format!("GET {path}")))??;
            if i == 0 {
                started = Instant::now();
            }
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        Ok(ScenarioReport::new(
            "pull",
            format!(
                "one {} blob, read once untimed, then {pulls} times, every byte checked",
                size_text(size)
            ),
            pulls,
            1,
            elapsed,
        )
        .with_bytes(size * pulls))
    }
}

/// POST a session, PUT the whole payload with its digest.
pub(super) async fn push_monolithic(
    conn: &mut Conn,
    repo: &str,
    payload: &Arc<Payload>,
    progress: Option<&ProgressBar>,
) -> Result<(), BenchError> {
    let path = conn.target().path(&format!("/v2/{repo}/blobs/uploads/"));
    let what = format!("POST {path}");
    let (r, body) = conn.call(Method::POST, &path, &[], ReqBody::Empty).await?;
    expect_status(&what, &r, &body, &[StatusCode::ACCEPTED])?;
    let put = location_with(&what, &r, &format!("digest={}", payload.digest()))?;
    let what = format!("PUT {put}");
    let (r, body) = conn
        .call(
            Method::PUT,
            &put,
            &[(header::CONTENT_TYPE, OCTET_STREAM)],
            ReqBody::payload(payload, 0, payload.size(), progress),
        )
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, payload.digest())
}

/// GETs the blob, comparing every byte with the payload as it streams in.
pub(super) async fn pull_once(
    conn: &mut Conn,
    path: &str,
    payload: &Payload,
    progress: &ProgressBar,
) -> Result<(), BenchError> {
    let what = format!("GET {path}");
    let response = conn.send(Method::GET, path, &[], ReqBody::Empty).await?;
    if response.status() != StatusCode::OK {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let r = hyper::Response::from_parts(parts, ());
        return expect_status(&what, &r, &body, &[StatusCode::OK]);
    }
    expect_digest(&what, &response, payload.digest())?;
    expect_length(&what, &response, payload.size())?;
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::Http(what.clone(), e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if !payload.matches_at(offset, &data) {
            return Err(BenchError::Content {
                what,
                detail: format!("the bytes from offset {offset} are not the blob pushed"),
            });
        }
        offset += data.len() as u64;
        progress.inc(data.len() as u64);
    }
    if offset != payload.size() {
        return Err(BenchError::Content {
            what,
            detail: format!("{offset} bytes, expected {}", payload.size()),
        });
    }
    Ok(())
}
