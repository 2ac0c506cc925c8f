//! `berth scrub`: verifies every stored blob against its digest and prints the
//! report as JSON. With `--url` it asks a running registry through
//! `POST /berth/v1/scrub` (paced, while it serves); with `--root` it scrubs a
//! stopped registry's data folder itself, as fast as the disk reads unless
//! `--rate` says otherwise. The exit status says what was found (see
//! [`ScrubArgs`]), so a script or a Job can alert on it.

use crate::storage::{ScrubOptions, ScrubReport, Store};
use anyhow::bail;
use bytesize::ByteSize;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

/// Exit status when corrupt blobs were found (and moved aside).
pub const EXIT_CORRUPT: u8 = 2;
/// Exit status when no blob was corrupt but some could not be read.
pub const EXIT_UNREADABLE: u8 = 3;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit status: 0 when every blob matched its digest, \
    2 when corrupt blobs were found (each moved to quarantine/ in the data folder, \
    so that the next push of its digest stores it anew), 3 when none was corrupt \
    but some could not be read, 1 when the scrub could not run.")]
pub struct ScrubArgs {
    /// Registry to ask, e.g. http://registry.container-registry.svc:5000
    #[arg(
        long,
        env = "BERTH_SCRUB_URL",
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
    /// Scrub this data folder directly; the registry using it must be stopped
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub root: Option<PathBuf>,
    /// Bytes read per second at most, e.g. 200MiB; 0 for no limit
    /// (default: 64MiB with --url, no limit with --root)
    #[arg(long, value_name = "SIZE")]
    pub rate: Option<ByteSize>,
}

/// Runs the scrub `args` asks for, prints its report, and returns the exit status.
pub async fn run(args: ScrubArgs) -> anyhow::Result<u8> {
    let report = match (&args.url, &args.root) {
        (Some(url), _) => remote(url, &args).await?,
        (None, Some(root)) => offline(root, args.rate).await?,
        (None, None) => bail!("give --url of a running registry or --root of a stopped one"),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(exit_status(&report))
}

/// What the report means for the exit status.
pub fn exit_status(report: &ScrubReport) -> u8 {
    if !report.corrupt.is_empty() {
        EXIT_CORRUPT
    } else if !report.errors.is_empty() {
        EXIT_UNREADABLE
    } else {
        0
    }
}

async fn remote(url: &str, args: &ScrubArgs) -> anyhow::Result<ScrubReport> {
    let mut body = serde_json::json!({});
    if let Some(rate) = args.rate {
        body["rate"] = rate.as_u64().into();
    }
    crate::admin_client::post(url, "scrub", args.token_file.as_deref(), body, "scrub").await
}

async fn offline(root: &Path, rate: Option<ByteSize>) -> anyhow::Result<ScrubReport> {
    let store = Store::open_offline(root).await?;
    // Nothing else reads this disk: as fast as it goes unless told otherwise.
    let options = ScrubOptions {
        rate: rate.and_then(|r| NonZeroU64::new(r.as_u64())),
    };
    Ok(store.scrub(options).await?)
}
