//! What a run measured: latency percentiles, one record per scenario, the
//! human table, the JSON, and the progress bars shown on a terminal while the
//! long phases run.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// Latencies of requests, in microseconds.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies(Vec::with_capacity(n))
    }

    pub fn record(&mut self, elapsed: Duration) {
        self.0
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(mut self) -> Option<LatencySummary> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let v = &self.0;
        // Nearest rank: the smallest value with at least p% of samples at or below it.
        let at = |p: f64| {
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            ms(v[rank.clamp(1, v.len()) - 1])
        };
        let sum: u64 = v.iter().map(|&x| u64::from(x)).sum();
        Some(LatencySummary {
            mean_ms: sum as f64 / v.len() as f64 / 1000.0,
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: ms(v[v.len() - 1]),
        })
    }
}

fn ms(micros: u32) -> f64 {
    f64::from(micros) / 1000.0
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One scenario's result. Every request in it was checked (status, digest,
/// content); a wrong answer fails the run instead of producing a record.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: &'static str,
    /// What was done, in words (sizes, counts, connections).
    pub description: String,
    /// Requests sent in the timed part.
    pub requests: u64,
    /// Concurrent requests in flight (connections or workers).
    pub concurrency: u32,
    pub seconds: f64,
    pub requests_per_second: f64,
    /// Payload bytes moved, for throughput scenarios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
}

impl ScenarioReport {
    pub fn new(
        name: &'static str,
        description: String,
        requests: u64,
        concurrency: u32,
        elapsed: Duration,
    ) -> ScenarioReport {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        ScenarioReport {
            name,
            description,
            requests,
            concurrency,
            seconds,
            requests_per_second: requests as f64 / seconds,
            bytes: None,
            bytes_per_second: None,
            latency: None,
        }
    }

    pub fn with_bytes(mut self, bytes: u64) -> ScenarioReport {
        self.bytes = Some(bytes);
        self.bytes_per_second = Some(bytes as f64 / self.seconds);
        self
    }

    pub fn with_latency(mut self, latencies: Latencies) -> ScenarioReport {
        self.latency = latencies.summary();
        self
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_at: u64,
    pub berth_version: &'static str,
    pub scenarios: Vec<ScenarioReport>,
}

/// `1.23 GB/s` (decimal units, as network and disk speeds are quoted).
pub fn rate(bytes_per_second: f64) -> String {
    if bytes_per_second >= 1e9 {
        format!("{:.2} GB/s", bytes_per_second / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_second / 1e6)
    }
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "scenario".to_owned(),
            "result".to_owned(),
            "requests".to_owned(),
            "p50".to_owned(),
            "p99".to_owned(),
            "what".to_owned(),
        ]];
        for s in &self.scenarios {
            let result = match s.bytes_per_second {
                Some(bps) => rate(bps),
                None => format!("{:.0} req/s", s.requests_per_second),
            };
            let (p50, p99) = match &s.latency {
                Some(l) => (format!("{:.2} ms", l.p50_ms), format!("{:.2} ms", l.p99_ms)),
                None => ("-".to_owned(), "-".to_owned()),
            };
            rows.push([
                s.name.to_owned(),
                result,
                s.requests.to_string(),
                p50,
                p99,
                s.description.clone(),
            ]);
        }
        let mut widths = [0usize; 6];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!("{}\n", self.url);
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                // Numbers right-aligned, words left-aligned; no padding at the end.
                let _ = match i {
                    0 => write!(line, "{cell:<w$}"),
                    5 => write!(line, "  {cell}"),
                    _ => write!(line, "  {cell:>w$}"),
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A bar over `total` bytes (or items), drawn on standard error when it is a
/// terminal and hidden otherwise.
pub fn bar(total: u64, bytes: bool, message: impl Into<String>) -> ProgressBar {
    let template = if bytes {
        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}"
    } else {
        "{msg:24} [{bar:30}] {pos}/{len} {per_sec} {eta}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(total)
        .with_style(style)
        .with_message(message.into())
}

/// A bar that fills over a fixed duration (the request-rate phases).
pub fn timer(duration: Duration, message: impl Into<String>) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:24} [{bar:30}] {elapsed}/{len}s")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(duration.as_secs().max(1))
        .with_style(style)
        .with_message(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut l = Latencies::default();
        for micros in 1..=100u64 {
            l.record(Duration::from_micros(micros * 1000));
        }
        let s = l.summary().unwrap();
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p90_ms, 90.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.mean_ms, 50.5);
        assert_eq!(Latencies::default().summary(), None);
    }

    #[test]
    fn the_table_has_a_row_per_scenario() {
        let report = Report {
            url: "http://x".to_owned(),
            started_at: 0,
            berth_version: "0",
            scenarios: vec![
                ScenarioReport::new("push", "1 GiB".to_owned(), 2, 1, Duration::from_secs(1))
                    .with_bytes(2_000_000_000),
                ScenarioReport::new(
                    "manifest-get",
                    "64".to_owned(),
                    1000,
                    64,
                    Duration::from_secs(2),
                ),
            ],
        };
        let table = report.table();
        assert!(table.contains("2.00 GB/s"), "{table}");
        assert!(table.contains("500 req/s"), "{table}");
        assert_eq!(table.lines().count(), 4);
    }
}
