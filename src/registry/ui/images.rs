//! What the pages say about a manifest: its kind and platforms, the blobs it
//! needs and their size, and an image's config.

use crate::oci::manifest::Kind;
use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};
use crate::storage::{Store, StoreError, StoredManifest};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Configs past this are not read (a config is a few KiB; its history grows
/// it, but not to megabytes).
const CONFIG_LIMIT: u64 = 1 << 20;

/// Summaries kept before the cache is emptied (a bound, not a working size:
/// a repository of 10,000 tags is read once).
const SUMMARIES_MAX: usize = 50_000;

/// The configs of images, as opposed to those of other artifacts.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// A manifest's own parse, from its stored bytes.
pub fn parse(manifest: &StoredManifest) -> Result<Manifest, StoreError> {
    Manifest::parse(Some(&manifest.media_type), &manifest.body)
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))
}

/// The manifest `digest` of `name`, or `None` when the repository does not
/// hold it (any more): a tag moved or deleted while the page was made, an
/// index's child never pushed here.
pub async fn stored(
    store: &Store,
    name: &RepoName,
    digest: &Digest,
) -> Result<Option<StoredManifest>, StoreError> {
    match store
        .get_manifest(name, &Reference::Digest(digest.clone()))
        .await
    {
        Ok(manifest) => Ok(Some(manifest)),
        Err(StoreError::ManifestUnknown) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An entry of an index, with what the registry's own descriptor leaves out.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub digest: Digest,
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Entry {
    /// Build attestations (SBOM, provenance) that docker buildx lists in an
    /// index beside the images, under the platform unknown/unknown.
    pub fn is_attestation(&self) -> bool {
        self.annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// The entries of an index's body.
pub fn entries(manifest: &StoredManifest) -> Vec<Entry> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    serde_json::from_slice::<Index>(&manifest.body)
        .map(|index| index.manifests)
        .unwrap_or_default()
}

/// An image's config: how it runs, and where it was built for.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    pub created: Option<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub history: Vec<History>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct History {
    pub created_by: Option<String>,
}

impl Config {
    pub fn platform(&self) -> Option<String> {
        Some(
            Platform {
                os: self.os.clone()?,
                architecture: self.architecture.clone()?,
                variant: self.variant.clone(),
            }
            .to_string(),
        )
    }
}

/// Whether `manifest` is an image's (its config is an image config), not
/// another artifact's.
fn is_image(manifest: &Manifest) -> bool {
    manifest.kind == Kind::Image
        && manifest
            .blobs
            .first()
            .is_some_and(|config| IMAGE_CONFIGS.contains(&config.media_type.as_str()))
}

/// The config of the image `manifest` of `name`, if it is an image's and
/// reads as one.
pub async fn config(store: &Store, name: &RepoName, manifest: &Manifest) -> Option<Config> {
    if !is_image(manifest) {
        return None;
    }
    let descriptor = manifest.blobs.first()?;
    let bytes = store
        .read_blob(name, &descriptor.digest, CONFIG_LIMIT)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a tag or a repository list says of a manifest.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub artifact_type: Option<String>,
    /// The images' platforms (an index's, or the one of an image's config).
    pub platforms: Vec<String>,
    /// Every blob it needs, its children's included, each once.
    pub blobs: BTreeMap<Digest, u64>,
    /// Whether everything it names could be read: an image's config, an
    /// index's children (a pull-through cache gets them as nodes pull them).
    complete: bool,
}

impl Summary {
    /// Bytes of its layers and configs, as stored (compressed), each once.
    pub fn size(&self) -> u64 {
        self.blobs.values().sum()
    }
}

/// Summaries of manifests already read. A manifest never changes under its
/// digest, so neither does its summary; only an index's children may go
/// from the repository, and its summary still counts them until the cache
/// is emptied.
#[derive(Default)]
pub struct Summaries(Mutex<HashMap<(RepoName, Digest), Arc<Summary>>>);

impl Summaries {
    /// The summary of `manifest` of `name`, from the cache or read.
    pub async fn of(
        &self,
        store: &Store,
        name: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<Arc<Summary>, StoreError> {
        let key = (name.clone(), manifest.digest.clone());
        if let Some(known) = self.lock().get(&key) {
            return Ok(known.clone());
        }
        let summary = Arc::new(summarize(store, name, manifest).await?);
        if !summary.complete {
            return Ok(summary);
        }
        let mut cache = self.lock();
        if cache.len() >= SUMMARIES_MAX {
            cache.clear();
        }
        cache.insert(key, summary.clone());
        Ok(summary)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RepoName, Digest), Arc<Summary>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Summarizes `manifest` of `name`, reading an index's children and an
/// image's config. A manifest that does not parse (stored by an older
/// version, say) summarizes as nothing rather than fail the page.
async fn summarize(
    store: &Store,
    name: &RepoName,
    manifest: &StoredManifest,
) -> Result<Summary, StoreError> {
    let Ok(parsed) = parse(manifest) else {
        return Ok(Summary {
            complete: true,
            ..Summary::default()
        });
    };
    let mut summary = Summary {
        artifact_type: parsed.artifact_type.clone(),
        complete: true,
        ..Summary::default()
    };
    match parsed.kind {
        Kind::Image => {
            add(&mut summary, &parsed.blobs);
            match config(store, name, &parsed).await {
                Some(config) => summary.platforms.extend(config.platform()),
                None => summary.complete = !is_image(&parsed),
            }
        }
        Kind::Index => {
            for entry in entries(manifest) {
                if !entry.is_attestation()
                    && let Some(platform) = &entry.platform
                {
                    summary.platforms.push(platform.to_string());
                }
                // An index may list manifests this repository never got
                // (or has not got yet).
                let Some(child) = stored(store, name, &entry.digest).await? else {
                    summary.complete = false;
                    continue;
                };
                if let Ok(child) = parse(&child) {
                    add(&mut summary, &child.blobs);
                }
            }
        }
    }
    Ok(summary)
}

fn add(summary: &mut Summary, blobs: &[Descriptor]) {
    for blob in blobs.iter().filter(|b| !b.is_foreign()) {
        summary.blobs.insert(blob.digest.clone(), blob.size);
    }
}
