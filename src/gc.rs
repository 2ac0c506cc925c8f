//! `berth gc`: runs one garbage collection and prints its report. With `--url`
//! it asks a running registry through `POST /berth/v1/gc` (what the operator's
//! CronJob runs); with `--root` it collects a stopped registry's data folder
//! itself. Either way it exits non-zero when the collection fails.

use crate::registry::config::gc_options_from_file;
use crate::storage::{GcOptions, GcReport, Store};
use anyhow::bail;
use bytesize::ByteSize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// Registry to ask, e.g. http://registry.container-registry.svc:5000
    #[arg(
        long,
        env = "BERTH_GC_URL",
        value_name = "URL",
        required_unless_present = "root"
    )]
    pub url: Option<String>,
    /// File holding the registry's admin token (its --admin-token-file)
    #[arg(
        long,
        env = "BERTH_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        requires = "url"
    )]
    pub token_file: Option<PathBuf>,
    /// Collect this data folder directly; the registry using it must be stopped
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub root: Option<PathBuf>,
    /// With --root: the registry's config file, for its retention rules and upload max age
    #[arg(long, value_name = "FILE", requires = "root")]
    pub config: Option<PathBuf>,
    /// Report what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete manifests that no tag reaches
    #[arg(long)]
    pub delete_untagged: bool,
    /// Keep anything younger than this (default 1h)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,
    /// Purge upload sessions idle for longer than this (default 24h, or the registry's setting)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub upload_max_age: Option<Duration>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Runs the collection `args` asks for and prints the report.
pub async fn run(args: GcArgs) -> anyhow::Result<()> {
    let report = match (&args.url, &args.root) {
        (Some(url), _) => remote(url, &args).await?,
        (None, Some(root)) => offline(root, &args).await?,
        (None, None) => bail!("give --url of a running registry or --root of a stopped one"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", readable(&report));
    }
    Ok(())
}

async fn remote(url: &str, args: &GcArgs) -> anyhow::Result<GcReport> {
    let mut body = serde_json::json!({
        "dryRun": args.dry_run,
        "deleteUntagged": args.delete_untagged,
    });
    if let Some(grace) = args.grace {
        body["grace"] = humantime::format_duration(grace).to_string().into();
    }
    if let Some(age) = args.upload_max_age {
        body["uploadMaxAge"] = humantime::format_duration(age).to_string().into();
    }
    crate::admin_client::post(
        url,
        "gc",
        args.token_file.as_deref(),
        body,
        "garbage collection",
    )
    .await
}

async fn offline(root: &std::path::Path, args: &GcArgs) -> anyhow::Result<GcReport> {
    let defaults = match &args.config {
        Some(path) => gc_options_from_file(path)?,
        None => GcOptions::default(),
    };
    let options = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: args.grace.unwrap_or(defaults.grace),
        upload_max_age: args.upload_max_age.unwrap_or(defaults.upload_max_age),
        retention: defaults.retention,
        caches: defaults.caches,
    };
    let store = Store::open_offline(root).await?;
    Ok(store.collect(options).await?)
}

/// The report as a person reads it.
fn readable(r: &GcReport) -> String {
    let verb = if r.dry_run { "would be" } else { "were" };
    let size = |n: u64| ByteSize::b(n).display().iec().to_string();
    let caches: String = r
        .caches
        .iter()
        .map(|c| {
            format!(
                "  cache of {}: {} images {verb} evicted ({}), {} of {} left\n",
                c.upstream,
                c.images_evicted,
                size(c.bytes_evicted),
                size(c.bytes),
                size(c.max_size)
            )
        })
        .collect();
    let report = format!(
        "Garbage collection {} in {} ms:\n  {} blobs {verb} deleted ({} freed)\n  {} manifests {verb} deleted\n  {} tags {verb} deleted\n  {} upload sessions {verb} purged\n",
        if r.dry_run {
            "dry run (nothing deleted) done"
        } else {
            "done"
        },
        r.duration_ms,
        r.blobs_deleted,
        ByteSize::b(r.bytes_freed).display().iec(),
        r.manifests_deleted,
        r.tags_deleted,
        r.uploads_purged,
    );
    report + &caches
}
