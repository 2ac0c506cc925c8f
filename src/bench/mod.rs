//! `berth bench`: a load generator for any OCI registry (berth or another), the
//! one BENCHMARKS.md is measured with. It runs named scenarios (large pushes and
//! pulls, request rates of manifest GETs and blob HEADs on many keep-alive
//! connections, small pushes, the catalog), checks every answer's status, digest
//! and bytes (a wrong answer is an error, never a fast result), and prints a
//! table or JSON.
//!
//! It owns no registry logic: `args` is the command line, `client` a lean
//! HTTP/1.1 connection, `payload` the generated blobs, `scenarios` what each
//! scenario does, `report` the figures and their rendering.

mod args;
mod client;
mod payload;
mod report;
mod scenarios;

pub use args::{BenchArgs, Scenario};
pub use report::{LatencySummary, Report, ScenarioReport};

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("{0}: {1}")]
    Http(String, hyper::Error),
    #[error("{0}: no answer in time")]
    Timeout(String),
    #[error("{what}: expected HTTP status {expected:?}, got {got}: {body}")]
    Status {
        what: String,
        expected: Vec<u16>,
        got: u16,
        body: String,
    },
    #[error("{what}: wrong digest: expected {expected}, the registry answered {got}")]
    Digest {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{what}: wrong content: {detail}")]
    Content { what: String, detail: String },
    #[error("{0}")]
    Protocol(String),
}

/// Runs the scenarios `args` selects against `args.url` and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let target = Arc::new(client::Target::new(&args.url, args.user.as_deref())?);
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut bench = scenarios::Bench::new(target, args.clone());
    bench.check_api().await?;
    let mut scenarios = Vec::new();
    for scenario in args.selected() {
        let report = bench
            .run(scenario)
            .await
            .map_err(|e| anyhow::anyhow!("scenario {} failed: {e}", scenario.name()))?;
        scenarios.push(report);
    }
    let report = Report {
        url: args.url.clone(),
        started_at,
        berth_version: env!("CARGO_PKG_VERSION"),
        scenarios,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
