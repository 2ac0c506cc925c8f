//! The flags of `berth image export` and `berth image push`, and what each prints.

use super::archive;
use super::push::{PushError, PushOptions, push};
use super::reference::{ImageRef, RefError};
use super::{DEFAULT_IMAGE, Image, ImageError, binary_path};
use std::path::PathBuf;

/// What goes into the image.
#[derive(Debug, Clone, clap::Args)]
pub struct BinaryArgs {
    /// Pack a dynamically linked binary anyway (it will not start in the image)
    #[arg(long)]
    pub allow_dynamic: bool,
    /// Pack this binary instead of the running one (a static build of the same
    /// berth, e.g. in CI)
    #[arg(long, value_name = "PATH", hide = true)]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The archive to write (`-` for standard output)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// The image's name in the archive
    #[arg(long, value_name = "NAME:TAG", default_value = DEFAULT_IMAGE)]
    pub tag: String,
    #[command(flatten)]
    pub binary: BinaryArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Where to push, e.g. localhost:32000/berth:0.1.0
    #[arg(value_name = "REGISTRY/NAME:TAG")]
    pub reference: String,
    /// Speak plain HTTP to a registry that is not on this machine
    #[arg(long)]
    pub insecure: bool,
    /// Log in with basic auth
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "BERTH_PUSH_USER",
        hide_env_values = true
    )]
    pub user: Option<String>,
    #[command(flatten)]
    pub binary: BinaryArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("--user takes USER:PASSWORD")]
    User,
}

fn build(reference: &str, binary: &BinaryArgs) -> Result<Image, CommandError> {
    let reference = ImageRef::parse(reference)?;
    let path = binary_path(binary.binary.as_deref())?;
    Ok(Image::build(&path, reference, binary.allow_dynamic)?)
}

/// Writes the archive; returns the lines to print (on standard error when the
/// archive goes to standard output).
pub fn export(args: &ExportArgs) -> Result<String, CommandError> {
    let image = build(&args.tag, &args.binary)?;
    archive::write_file(&image, &args.output)?;
    let file = args.output.display();
    let name = archive::familiar(&image.reference.to_string());
    Ok(format!(
        "wrote {file}: {name} ({}, linux/{}, manifest {})\n\
         load it with one of:\n  \
         docker load -i {file}\n  \
         podman load -i {file}\n  \
         ctr images import {file}            (microk8s ctr image import {file})\n  \
         kind load image-archive {file}\n  \
         minikube image load {file}\n",
        bytesize::ByteSize(image.layer.bytes.len() as u64),
        image.architecture,
        image.manifest.digest,
    ))
}

/// Pushes the image; returns the line to print.
pub async fn push_image(args: &PushArgs) -> Result<String, CommandError> {
    let image = build(&args.reference, &args.binary)?;
    let credentials = match &args.user {
        Some(user) => {
            let (user, password) = user.split_once(':').ok_or(CommandError::User)?;
            Some((user.to_string(), password.to_string()))
        }
        None => None,
    };
    let options = PushOptions {
        insecure: args.insecure,
        credentials,
    };
    let pushed = push(&image, &options).await?;
    Ok(format!(
        "pushed {} ({}): {} blobs sent, {} already there\n",
        image.reference, pushed.digest, pushed.blobs_sent, pushed.blobs_present
    ))
}
