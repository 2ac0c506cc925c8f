//! The berth image, made by berth itself: `berth image export` writes it as an
//! archive that `docker load`, `podman load`, `ctr images import`, `kind load
//! image-archive` and `minikube image load` take, and `berth image push` sends it
//! to a registry. No Docker, no network beyond the machine: the image is the
//! running `berth` binary (which must be statically linked) in one layer.
//!
//! - elf.rs: is the binary static, and for which architecture.
//! - layer.rs: the root file system, as a reproducible tar.gz.
//! - archive.rs: the OCI image layout in a tar, with docker's manifest.json beside it.
//! - push.rs: the same blobs and manifest over the OCI Distribution API.
//! - reference.rs: image names, normalized as docker and containerd do.
//! - command.rs: the two subcommands' flags and what they print.

pub(crate) mod archive;
pub mod command;
pub mod elf;
pub(crate) mod layer;
pub(crate) mod push;
pub(crate) mod reference;

use crate::oci::digest::Digest;
use crate::oci::manifest::OCI_MANIFEST;
use reference::ImageRef;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The image the operator, its chart and `berth enable` deploy unless told
/// otherwise, and the tag `berth image export` gives: `berth:VERSION`.
pub const DEFAULT_IMAGE: &str = concat!("berth:", env!("CARGO_PKG_VERSION"));

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How to build a binary that runs in the image, for the error that refuses one
/// that would not.
pub const STATIC_BUILD_HINT: &str = "build a static berth with \
     RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile image --target x86_64-unknown-linux-gnu \
     (your host's target triple), then run that binary";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read the binary {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Elf(PathBuf, #[source] elf::ElfError),
    #[error(
        "{path} is dynamically linked (it needs {interpreter}) and would not run in an image that holds nothing else; {hint} (or pass --allow-dynamic)",
        hint = STATIC_BUILD_HINT
    )]
    Dynamic { path: PathBuf, interpreter: String },
    #[error("cannot build the layer: {0}")]
    Layer(#[source] std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, #[source] std::io::Error),
}

/// One blob of the image: its media type, digest and bytes.
pub struct Blob {
    pub media_type: &'static str,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: Digest::sha256(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.bytes.len(),
        })
    }
}

/// The image in memory: a config, one layer and the manifest that ties them.
pub struct Image {
    pub reference: ImageRef,
    pub architecture: &'static str,
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Blob,
}

/// The binary to pack: `path`, or the running executable.
pub fn binary_path(path: Option<&Path>) -> Result<PathBuf, ImageError> {
    match path {
        Some(path) => Ok(path.to_path_buf()),
        None => std::env::current_exe().map_err(|e| ImageError::Read("berth".into(), e)),
    }
}

impl Image {
    /// Builds the image around the binary at `path`; refuses a dynamically linked
    /// one unless `allow_dynamic`.
    pub fn build(
        path: &Path,
        reference: ImageRef,
        allow_dynamic: bool,
    ) -> Result<Image, ImageError> {
        let binary = std::fs::read(path).map_err(|e| ImageError::Read(path.to_path_buf(), e))?;
        let elf = elf::inspect(&binary).map_err(|e| ImageError::Elf(path.to_path_buf(), e))?;
        if let (Some(interpreter), false) = (&elf.interpreter, allow_dynamic) {
            return Err(ImageError::Dynamic {
                path: path.to_path_buf(),
                interpreter: interpreter.clone(),
            });
        }
        let layer = layer::build(&binary).map_err(ImageError::Layer)?;
        let config = Blob::new(
            OCI_CONFIG,
            config(elf.architecture, &Digest::sha256(&layer.tar)),
        );
        let layer = Blob::new(OCI_LAYER_GZIP, layer.gzip);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        });
        let manifest = Blob::new(OCI_MANIFEST, to_vec(&manifest));
        Ok(Image {
            reference,
            architecture: elf.architecture,
            config,
            layer,
            manifest,
        })
    }
}

/// The image config: run `/berth serve` as user 65532, data in /var/lib/registry.
/// No creation time but the epoch, so the digest depends on the binary alone.
fn config(architecture: &str, diff_id: &Digest) -> Vec<u8> {
    let epoch = "1970-01-01T00:00:00Z";
    to_vec(&json!({
        "created": epoch,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "User": format!("{0}:{0}", layer::USER),
            "Entrypoint": [format!("/{}", layer::BINARY_PATH)],
            "Cmd": ["serve"],
            "Env": ["PATH=/", format!("BERTH_ROOT={}", layer::DATA_DIR)],
            "WorkingDir": layer::HOME,
            // The registry, and the operator's /healthz and /metrics.
            "ExposedPorts": {"5000/tcp": {}, "8080/tcp": {}},
            "Labels": {
                "org.opencontainers.image.title": "berth",
                "org.opencontainers.image.version": env!("CARGO_PKG_VERSION"),
                "org.opencontainers.image.description": env!("CARGO_PKG_DESCRIPTION"),
                "org.opencontainers.image.licenses": env!("CARGO_PKG_LICENSE"),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": epoch, "created_by": "berth image export"}],
    }))
}

/// serde_json's map is ordered, so the same value always gives the same bytes.
fn to_vec(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::{Image, ImageRef};

    /// An image around a fake static amd64 binary (an ELF header, no interpreter).
    pub fn fake_image(tag: &str) -> Image {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 0x3e;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth");
        std::fs::write(&path, &elf).unwrap();
        Image::build(&path, ImageRef::parse(tag).unwrap(), false).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_is_berth_at_this_version() {
        assert_eq!(
            DEFAULT_IMAGE,
            format!("berth:{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn the_test_binary_is_dynamic_and_refused() {
        let exe = std::env::current_exe().unwrap();
        let reference = ImageRef::parse(DEFAULT_IMAGE).unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        if elf::inspect(&bytes).unwrap().interpreter.is_none() {
            eprintln!("this test binary is static; nothing to refuse");
            return;
        }
        let error = Image::build(&exe, reference.clone(), false).err().unwrap();
        let message = error.to_string();
        assert!(message.contains("dynamically linked"), "{message}");
        assert!(message.contains("+crt-static"), "{message}");
        assert!(message.contains("--allow-dynamic"), "{message}");
    }

    #[test]
    fn the_config_runs_berth_as_nonroot() {
        let config: serde_json::Value =
            serde_json::from_slice(&config("amd64", &Digest::sha256(b"tar"))).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"], json!(["/berth"]));
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            Digest::sha256(b"tar").to_string()
        );
    }
}
