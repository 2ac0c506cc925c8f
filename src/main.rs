//! The `berth` command line: one subcommand per role, each calling one entry
//! point of the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A private OCI registry for Kubernetes, with its operator"
)]
struct Cli {
    /// How logs on stderr look: `text` for people, `json` (one object per line) for collectors
    #[arg(
        long,
        global = true,
        env = "BERTH_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: berth::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the OCI registry (default: 0.0.0.0:5000, data in ./berth-data)
    Serve(berth::registry::ServeArgs),
    /// Collect garbage: ask a running registry (--url), or a stopped one's data folder (--root)
    Gc(berth::gc::GcArgs),
    /// Run the Kubernetes operator that reconciles Registry objects
    Operator(berth::operator::OperatorArgs),
    /// Print the Registry CustomResourceDefinition (what crds/registry.yaml holds)
    Crd,
    /// Print every object the operator would apply for a Registry file, with no cluster
    Render(RenderArgs),
    /// Measure a registry: push and pull throughput, request rates, catalog latency
    Bench(berth::bench::BenchArgs),
}

#[derive(clap::Args)]
struct RenderArgs {
    /// The Registry manifest (`-` for standard input)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Image to deploy when spec.image is empty, as the operator's BERTH_IMAGE
    #[arg(long, env = "BERTH_IMAGE", value_name = "IMAGE")]
    image: Option<String>,
    /// Secret manifests the Registry's auth refers to (password Secrets,
    /// existingSecret), so the htpasswd file is rendered for real; repeatable
    #[arg(long = "secret", value_name = "FILE")]
    secrets: Vec<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("cannot read standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    berth::logging::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            tokio::runtime::Runtime::new()?.block_on(berth::registry::serve(args.resolve()?))
        }
        Command::Gc(args) => tokio::runtime::Runtime::new()?.block_on(berth::gc::run(args)),
        Command::Operator(args) => {
            Ok(tokio::runtime::Runtime::new()?.block_on(berth::operator::run(args))?)
        }
        Command::Bench(args) => tokio::runtime::Runtime::new()?.block_on(berth::bench::run(args)),
        Command::Crd => print(&berth::operator::crd::crd_yaml()?),
        Command::Render(args) => {
            let registry = read(&args.file)?;
            let secrets = args
                .secrets
                .iter()
                .map(|path| read(path))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let yaml = berth::operator::render(&registry, args.image.as_deref(), &secrets)
                .with_context(|| format!("cannot render {}", args.file.display()))?;
            print(&yaml)
        }
    }
}

/// Writes to standard output; a closed pipe (`berth crd | head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}
