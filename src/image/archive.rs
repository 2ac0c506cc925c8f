//! `berth image export`: the image as one tar that every loader takes, the same
//! shape `docker save` writes since Docker 25:
//!
//! - an OCI image layout: `oci-layout`, `index.json` (the manifest, annotated
//!   with the tag as `org.opencontainers.image.ref.name` and the full name as
//!   `io.containerd.image.name`, which `ctr images import` names the image by)
//!   and `blobs/sha256/…`;
//! - docker's `manifest.json` (`[{Config, RepoTags, Layers}]`) pointing at the
//!   same blobs, for `docker load` of any age.
//!
//! Entries are sorted and dated 0, so an archive's bytes depend on the binary
//! and the tag alone.

use super::{Blob, Image, ImageError};
use crate::oci::manifest::OCI_INDEX;
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Writes the archive to `out`.
pub fn write(image: &Image, out: impl Write) -> std::io::Result<()> {
    let blob_path = |blob: &Blob| format!("blobs/sha256/{}", blob.digest.hex());
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.bytes.len(),
            "annotations": {
                "io.containerd.image.name": image.reference.to_string(),
                "org.opencontainers.image.ref.name": image.reference.tag.to_string(),
            },
        }],
    });
    let docker_manifest = json!([{
        "Config": blob_path(&image.config),
        "RepoTags": [familiar(&image.reference.to_string())],
        "Layers": [blob_path(&image.layer)],
    }]);
    let index = super::to_vec(&index);
    let docker_manifest = super::to_vec(&docker_manifest);

    let mut blobs: Vec<&Blob> = vec![&image.config, &image.layer, &image.manifest];
    blobs.sort_by(|a, b| a.digest.hex().cmp(b.digest.hex()));
    let mut files: Vec<(String, &[u8])> = blobs
        .iter()
        .map(|b| (blob_path(b), b.bytes.as_slice()))
        .collect();
    files.push(("index.json".into(), &index));
    files.push(("manifest.json".into(), &docker_manifest));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice(),
    ));

    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    for (path, bytes) in files {
        let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        tar.append_data(&mut header, path, bytes)?;
    }
    tar.into_inner()?.flush()
}

/// Writes the archive to a file, through a temporary file renamed at the end so
/// that a failure leaves no half archive; `-` is standard output.
pub fn write_file(image: &Image, path: &Path) -> Result<(), ImageError> {
    let failed = |e| ImageError::Write(path.to_path_buf(), e);
    if path == Path::new("-") {
        return write(image, std::io::stdout().lock()).map_err(failed);
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let result = std::fs::File::create(&partial).and_then(|file| {
        let mut out = std::io::BufWriter::new(file);
        write(image, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map_err(failed)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// The name as docker shows it: `berth:0.1.0` for `docker.io/library/berth:0.1.0`.
pub fn familiar(full: &str) -> String {
    let short = full.strip_prefix("docker.io/").unwrap_or(full);
    short.strip_prefix("library/").unwrap_or(short).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_support::fake_image;
    use std::collections::BTreeMap;
    use std::io::Read;

    fn entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for entry in tar::Archive::new(archive).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            out.insert(entry.path().unwrap().display().to_string(), bytes);
        }
        out
    }

    #[test]
    fn the_archive_is_an_oci_layout_and_a_docker_save() {
        let image = fake_image("berth:0.1.0");
        let mut archive = Vec::new();
        write(&image, &mut archive).unwrap();
        let files = entries(&archive);

        assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], image.manifest.digest.to_string());
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            "docker.io/library/berth:0.1.0"
        );
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "0.1.0"
        );

        let docker: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(docker[0]["RepoTags"], json!(["berth:0.1.0"]));
        for path in [&docker[0]["Config"], &docker[0]["Layers"][0]] {
            let bytes = &files[path.as_str().unwrap()];
            let hex = path.as_str().unwrap().rsplit('/').next().unwrap();
            assert_eq!(crate::oci::digest::Digest::sha256(bytes).hex(), hex);
        }
        let manifest = &files[&format!("blobs/sha256/{}", image.manifest.digest.hex())];
        let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            crate::image::OCI_LAYER_GZIP
        );
    }

    #[test]
    fn the_archive_is_reproducible() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write(&fake_image("berth:1"), &mut a).unwrap();
        write(&fake_image("berth:1"), &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn names_are_shown_as_docker_shows_them() {
        assert_eq!(familiar("docker.io/library/berth:1"), "berth:1");
        assert_eq!(familiar("docker.io/team/berth:1"), "team/berth:1");
        assert_eq!(
            familiar("localhost:32000/berth:1"),
            "localhost:32000/berth:1"
        );
    }
}
