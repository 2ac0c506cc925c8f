//! The `berth` command line: one subcommand per role, each calling one entry
//! point of the library.

use anyhow::Context;
use berth::install::progress::{Lines, Progress, Spinner};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    Serve(Box<berth::registry::ServeArgs>),
    /// Collect garbage: ask a running registry (--url), or a stopped one's data folder (--root)
    Gc(berth::gc::GcArgs),
    /// Verify every blob against its digest and move corrupt ones aside (JSON report; exit 2
    /// when corrupt): ask a running registry (--url), or a stopped one's data folder (--root)
    Scrub(berth::scrub::ScrubArgs),
    /// Run the Kubernetes operator that reconciles Registry objects
    Operator(berth::operator::OperatorArgs),
    /// Print the Registry CustomResourceDefinition (what crds/registry.yaml holds)
    Crd,
    /// Print every object the operator would apply for a Registry file, with no cluster
    Render(RenderArgs),
    /// Measure a registry: push and pull throughput, request rates, catalog latency
    Bench(berth::bench::BenchArgs),
    /// Install berth in the current kube context's cluster: the CRD, the operator, and a
    /// Registry every node pulls from at localhost:32000
    Enable(berth::install::EnableArgs),
    /// Remove the Registry and the operator (the images' volume and the CRD are kept unless --purge)
    Disable(berth::install::DisableArgs),
    /// Write containerd's hosts.toml for the registry's node port and keep it in place
    /// (what the DaemonSet of spec.nodeConfig.containerd runs on every node)
    NodeConfig(berth::nodeconfig::NodeConfigArgs),
    /// Give the registry's data folder to its user (what the registry pod's init
    /// container runs as root with CAP_CHOWN only; internal, so not in --help)
    #[command(hide = true)]
    PrepareVolume(berth::volume::PrepareVolumeArgs),
    /// The berth image (this binary, statically linked): export it as an archive or push it
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Write the image as an archive for docker/podman load, ctr import, kind, minikube
    Export(berth::image::command::ExportArgs),
    /// Push the image to a registry (plain HTTP: localhost, or --insecure)
    Push(berth::image::command::PushArgs),
}

#[derive(clap::Args)]
struct RenderArgs {
    /// The Registry manifest (`-` for standard input)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Image to deploy when spec.image is empty, as the operator's BERTH_IMAGE
    #[arg(long, env = "BERTH_IMAGE", value_name = "IMAGE", default_value = berth::image::DEFAULT_IMAGE)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    berth::logging::init(cli.log_format);
    // In a pod, the kubelet shows a failed container's termination message in
    // its status, where the operator reads why the registry does not start.
    let in_pod = matches!(cli.command, Command::Serve(_) | Command::PrepareVolume(_));
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The message and its causes on one line. Not anyhow's Debug form,
            // which adds a stack backtrace when RUST_BACKTRACE is set: an error
            // returned here is the user's to fix; a bug panics, and a panic
            // still prints its backtrace.
            let message = format!("{error:#}");
            eprintln!("Error: {message}");
            if in_pod {
                write_termination_message(&message);
            }
            ExitCode::FAILURE
        }
    }
}

/// Writes /dev/termination-log when the kubelet provides it (never creates it:
/// outside Kubernetes, /dev is no place for a file of ours).
fn write_termination_message(message: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open("/dev/termination-log")
    {
        // Best effort: the same error is on stderr anyway.
        let _ = file.write_all(message.as_bytes());
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            tokio::runtime::Runtime::new()?.block_on(berth::registry::serve(args.resolve()?))
        }
        Command::Gc(args) => tokio::runtime::Runtime::new()?.block_on(berth::gc::run(args)),
        Command::Scrub(args) => {
            let status = tokio::runtime::Runtime::new()?.block_on(berth::scrub::run(args))?;
            if status != 0 {
                // The report is printed; exit skips destructors, so flush it first.
                std::io::stdout().flush()?;
                std::process::exit(status.into());
            }
            Ok(())
        }
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
        Command::Enable(args) => {
            let enabled = tokio::runtime::Runtime::new()?.block_on(async {
                let client = kube_client().await?;
                berth::install::enable(&client, &args, progress().as_mut(), berth::install::POLL)
                    .await
            })?;
            print(&enabled.to_string())
        }
        Command::Disable(args) => {
            let disabled = tokio::runtime::Runtime::new()?.block_on(async {
                let client = kube_client().await?;
                berth::install::disable(
                    &client,
                    &args,
                    progress().as_mut(),
                    berth::install::POLL,
                    &mut confirm,
                )
                .await
            })?;
            print(&disabled.to_string())
        }
        Command::NodeConfig(args) => {
            Ok(tokio::runtime::Runtime::new()?.block_on(berth::nodeconfig::run(args))?)
        }
        Command::PrepareVolume(args) => Ok(berth::volume::run(&args)?),
        Command::Image(ImageCommand::Export(args)) => {
            let report = berth::image::command::export(&args)?;
            // The archive may be on standard output; the report never is.
            eprint!("{report}");
            Ok(())
        }
        Command::Image(ImageCommand::Push(args)) => {
            let report = tokio::runtime::Runtime::new()?
                .block_on(berth::image::command::push_image(&args))?;
            print(&report)
        }
    }
}

async fn kube_client() -> Result<kube::Client, berth::install::InstallError> {
    kube::Client::try_default()
        .await
        .map_err(berth::install::InstallError::Connect)
}

/// A spinner on a terminal, one line per step in a log.
fn progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Spinner::new())
    } else {
        Box::new(Lines::new(std::io::stderr()))
    }
}

/// Asks on the terminal; without one, the answer is no (`--yes` skips the question).
fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Writes to standard output; a closed pipe (`berth crd | head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}
