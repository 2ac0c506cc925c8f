//! The `berth` command line: one subcommand per role, each calling one entry
//! point of the library.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A private OCI registry for Kubernetes, with its operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the OCI registry (default: 0.0.0.0:5000, data in ./berth-data)
    Serve(berth::registry::ServeArgs),
    /// Collect garbage: ask a running registry (--url), or a stopped one's data folder (--root)
    Gc(berth::gc::GcArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(berth::registry::serve(args.resolve()?)),
        Command::Gc(args) => runtime.block_on(berth::gc::run(args)),
    }
}
