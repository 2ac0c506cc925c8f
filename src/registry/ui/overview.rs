//! `GET /overview`: what the registry holds (storage used and its growth,
//! blobs, uploads in progress), what its last garbage collections freed, and
//! how the upstreams of its pull-through cache are answering.
//!
//! Totals are the registry's; what names repositories is the viewer's: the
//! count of those they may pull, and an upstream only to whom may pull
//! something it mirrored (its errors name what was asked of it).

use super::page::{self, Refused, Section};
use super::{Viewer, format};
use crate::registry::auth::Right;
use crate::registry::state::Shared;
use crate::storage::{GcRun, Store, UsageSample};
use maud::{Markup, html};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;

/// How often the registry looks whether a sample of its size is due (the
/// store decides, history.rs).
const SAMPLE_CHECK: Duration = Duration::from_secs(60);

/// The chart shows this much of the history.
const CHART_SPAN: Duration = Duration::from_secs(30 * 86400);

/// Keeps the history of the store's size, for the chart; a failure to
/// write it is logged and tried again at the next check.
pub async fn keep_history(store: Store) {
    loop {
        if let Err(e) = store.record_usage().await {
            tracing::warn!(error = %e, "the storage history was not written");
        }
        tokio::time::sleep(SAMPLE_CHECK).await;
    }
}

pub async fn page(state: Shared, viewer: Viewer) -> Result<Response, Rejection> {
    let store = &state.store;
    let usage = store.usage();
    let free = store.free_space().await.map_err(Refused::from)?;
    let mut repositories = store.repositories().await.map_err(Refused::from)?;
    repositories.retain(|name| viewer.may(&state, name, Right::Pull));
    let mut upstreams = state.proxy.status();
    if state.auth.has_users() {
        upstreams.retain(|upstream| {
            let prefix = format!("{}/", upstream.name);
            repositories
                .iter()
                .any(|name| name.as_str().starts_with(&prefix))
        });
    }
    // The histories are an extra: one that cannot be read leaves the page.
    let mut samples = store.usage_history().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the storage history cannot be read");
        Vec::new()
    });
    // The chart ends at this moment's figures.
    samples.push(UsageSample {
        at: seconds(SystemTime::now()),
        bytes: usage.blob_bytes,
        blobs: usage.blobs,
    });
    let mut runs = store.gc_history().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the collections' history cannot be read");
        Vec::new()
    });
    runs.reverse();

    let body = html! {
        h1 { "Overview" }
        dl.stats {
            div { dt { "Storage used" } dd #storage { (format::size(usage.blob_bytes)) } }
            @if let Some(free) = free { div { dt { "Free on its disk" } dd #free { (format::size(free)) } } }
            div { dt { "Blobs" } dd #blobs { (usage.blobs) } }
            div { dt { "Repositories" } dd #repositories { (repositories.len()) } }
            div { dt { "Uploads in progress" } dd #uploads { (usage.uploads) } }
        }
        (chart(&samples))
        section aria-labelledby="collections" {
            h2 #collections { "Garbage collections" }
            @if runs.is_empty() {
                p { "None yet. The Registry's CronJob runs one each night; " code { "berth gc" } " runs one now." }
            } @else {
                table.list #runs {
                    thead { tr {
                        th scope="col" { "Finished" } th scope="col" { "Freed" } th scope="col" { "Blobs deleted" }
                        th scope="col" { "Manifests deleted" } th scope="col" { "Tags deleted" }
                        th scope="col" { "Uploads purged" } th scope="col" { "Took" }
                    } }
                    tbody {
                        @for run in &runs {
                            tr {
                                th scope="row" data-label="Finished" {
                                    (format::ago(UNIX_EPOCH + Duration::from_secs(run.finished)))
                                    @if run.report.dry_run { " " span.badge { "dry run" } }
                                    @if run.by == "cap" { " " span.badge title="run by the registry to keep a pull-through cache under its cap" { "cache cap" } }
                                    @if let Some(error) = &run.error {
                                        " " span.badge.failed { "failed" } br; span.hint { (error) }
                                    }
                                }
                                td data-label="Freed" { (format::size(run.report.bytes_freed)) }
                                td data-label="Blobs deleted" { (run.report.blobs_deleted) }
                                td data-label="Manifests deleted" { (run.report.manifests_deleted) }
                                td data-label="Tags deleted" { (run.report.tags_deleted) }
                                td data-label="Uploads purged" { (run.report.uploads_purged) }
                                td data-label="Took" { (took(run)) }
                            }
                        }
                    }
                }
            }
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

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn took(run: &GcRun) -> String {
    let ms = run.report.duration_ms;
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// Where the chart's lines go, in its own units.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;

/// The storage used over the last [`CHART_SPAN`], as a line: an SVG drawn
/// here (no script), described in words for screen readers, with its
/// figures in a table beneath.
fn chart(samples: &[UsageSample]) -> Markup {
    let end = samples.last().map_or(0, |s| s.at);
    let start_limit = end.saturating_sub(CHART_SPAN.as_secs());
    let shown: Vec<&UsageSample> = samples.iter().filter(|s| s.at >= start_limit).collect();
    let (Some(first), Some(last)) = (shown.first(), shown.last()) else {
        return html! {};
    };
    // Samples are in order (history.rs drops any from a clock that was ahead).
    let span = last.at.saturating_sub(first.at).max(1) as f64;
    let top = shown.iter().map(|s| s.bytes).max().unwrap_or(0).max(1) as f64;
    let points: Vec<String> = shown
        .iter()
        .map(|s| {
            let x = s.at.saturating_sub(first.at) as f64 / span * WIDTH;
            let y = HEIGHT - s.bytes as f64 / top * HEIGHT;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let day = |at: u64| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string()[..10]
            .to_owned()
    };
    let words = format!(
        "Storage used went from {} on {} to {} on {}.",
        bytesize::ByteSize::b(first.bytes).display().iec(),
        day(first.at),
        bytesize::ByteSize::b(last.bytes).display().iec(),
        day(last.at)
    );
    let recent: Vec<&&UsageSample> = shown.iter().rev().take(10).collect();
    html! {
        section aria-labelledby="growth" {
            h2 #growth { "Storage over time" }
            @if shown.len() < 2 {
                p { "The chart starts once the registry has a sample older than this one (one is taken every hour, or ten minutes after a change)." }
            } @else {
                figure.chart {
                    svg #chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="chart-words" preserveAspectRatio="none" {
                        title #chart-words { (words) }
                        polyline points=(points.join(" ")) {}
                    }
                    figcaption {
                        span { (day(first.at)) } span { "up to " (format::size(top as u64)) } span { (day(last.at)) }
                    }
                }
                details {
                    summary { "The figures" }
                    table.pairs {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Storage used" } th scope="col" { "Blobs" } } }
                        tbody {
                            @for sample in recent {
                                tr {
                                    th scope="row" { (format::ago(UNIX_EPOCH + Duration::from_secs(sample.at))) }
                                    td { (format::size(sample.bytes)) }
                                    td { (sample.blobs) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
