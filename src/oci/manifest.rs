//! Manifest media types and the parsing a registry needs to accept a manifest: its
//! kind (image or index), the descriptors it refers to, its subject and its
//! artifact type. Unknown fields are kept out of our way: the stored bytes are the
//! pushed bytes, so we parse only to validate and to index, never to re-serialize.

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest we store; the spec suggests registries accept at least 4 MiB.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// A content descriptor as it appears in manifests and in the referrers index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// Foreign ("non-distributable") layers live elsewhere, named by `urls`; a
    /// registry does not hold them and must not demand them.
    pub fn is_foreign(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
            && (self.media_type.contains("foreign") || self.media_type.contains("nondistributable"))
    }
}

/// Whether a manifest points at blobs (image) or at other manifests (index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// What a registry needs to know of a manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
    /// Blobs an image manifest needs: its config, then its layers.
    pub blobs: Vec<Descriptor>,
    /// Manifests an index lists.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for {media_type}: {reason}")]
    Malformed { media_type: String, reason: String },
    #[error(
        "unsupported manifest media type {0:?} (expected an OCI image manifest or index, or a Docker schema 2 manifest or manifest list)"
    )]
    UnsupportedMediaType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("schemaVersion must be 2")]
    SchemaVersion,
}

/// The fields common to every schema 2 manifest; absent fields stay `None` so that
/// each kind can say which it requires.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// The media type named by a Content-Type header, without parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

impl Manifest {
    /// Parses and validates `body`, pushed with `content_type` (if any). The media
    /// type is the header's, the body's `mediaType`, or inferred from the fields
    /// (an index has `manifests`, an image `config`), in that order; header and
    /// body must agree when both are set.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, ManifestError> {
        let header = content_type.map(essence).filter(|t| {
            !t.is_empty() && *t != "application/json" && *t != "application/octet-stream"
        });
        let raw: Raw = serde_json::from_slice(body).map_err(|e| ManifestError::Malformed {
            media_type: header.unwrap_or("manifest").to_owned(),
            reason: e.to_string(),
        })?;
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(h), Some(b)) if h != b => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: h.to_owned(),
                    body: b.to_owned(),
                });
            }
            (Some(t), _) | (None, Some(t)) => t.to_owned(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) => OCI_MANIFEST.to_owned(),
        };
        let kind = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Kind::Image,
            OCI_INDEX | DOCKER_LIST => Kind::Index,
            _ => return Err(ManifestError::UnsupportedMediaType(media_type)),
        };
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let malformed = |reason: &str| ManifestError::Malformed {
            media_type: media_type.clone(),
            reason: reason.to_owned(),
        };
        let (blobs, manifests) = match kind {
            Kind::Image => {
                let config = raw.config.ok_or_else(|| malformed("missing config"))?;
                let layers = raw.layers.ok_or_else(|| malformed("missing layers"))?;
                (std::iter::once(config).chain(layers).collect(), Vec::new())
            }
            Kind::Index => {
                let manifests = raw
                    .manifests
                    .ok_or_else(|| malformed("missing manifests"))?;
                (Vec::new(), manifests)
            }
        };
        Ok(Manifest {
            media_type,
            kind,
            blobs,
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// The descriptor of this manifest as the referrers API lists it: its
    /// artifactType, or for an image manifest without one, its config's media type.
    pub fn referrer_descriptor(&self, digest: Digest, size: u64) -> Descriptor {
        let artifact_type = self.artifact_type.clone().or_else(|| match self.kind {
            Kind::Image => self.blobs.first().map(|c| c.media_type.clone()),
            Kind::Index => None,
        });
        Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size,
            artifact_type,
            annotations: self.annotations.clone(),
            urls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]}}"#
        )
    }

    #[test]
    fn parses_an_image_manifest() {
        let m = Manifest::parse(Some(OCI_MANIFEST), image(OCI_MANIFEST).as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::Image);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.blobs[1].size, 3);
        let r = m.referrer_descriptor(D2.parse().unwrap(), 10);
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn docker_manifest_with_its_header() {
        let m = Manifest::parse(
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
            image(DOCKER_MANIFEST).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn infers_the_type_without_header_or_field() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5}}]}}"#
        );
        let m = Manifest::parse(None, body.as_bytes()).unwrap();
        assert_eq!((m.kind, m.media_type.as_str()), (Kind::Index, OCI_INDEX));
    }

    #[test]
    fn refuses_mismatch_and_junk() {
        assert!(matches!(
            Manifest::parse(Some(OCI_INDEX), image(OCI_MANIFEST).as_bytes()),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            Manifest::parse(Some(OCI_MANIFEST), b"not json"),
            Err(ManifestError::Malformed { .. })
        ));
        assert!(matches!(
            Manifest::parse(
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                b"{}"
            ),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        let no_config =
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#);
        assert!(Manifest::parse(None, no_config.as_bytes()).is_err());
        let bad_digest = image(OCI_MANIFEST).replace(D1, "sha256:abc");
        assert!(Manifest::parse(None, bad_digest.as_bytes()).is_err());
        let negative = image(OCI_MANIFEST).replace("\"size\":2", "\"size\":-1");
        assert!(Manifest::parse(None, negative.as_bytes()).is_err());
        let v1 = image(OCI_MANIFEST).replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert_eq!(
            Manifest::parse(None, v1.as_bytes()).unwrap_err(),
            ManifestError::SchemaVersion
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            "[a-zA-Z0-9:.+/-]{0,20}".prop_map(Into::into),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("schemaVersion".to_owned()),
                        Just("mediaType".to_owned()),
                        Just("config".to_owned()),
                        Just("layers".to_owned()),
                        Just("manifests".to_owned()),
                        Just("subject".to_owned()),
                        Just("digest".to_owned()),
                        Just("size".to_owned()),
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse(None, &bytes);
            let _ = Manifest::parse(Some(OCI_MANIFEST), &bytes);
        }

        /// Manifest-shaped JSON either parses into a consistent manifest or is refused.
        #[test]
        fn manifest_shaped_json_is_parsed_or_refused(value in json()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            if let Ok(m) = Manifest::parse(None, &bytes) {
                match m.kind {
                    Kind::Image => prop_assert!(!m.blobs.is_empty()),
                    Kind::Index => prop_assert!(m.blobs.is_empty()),
                }
            }
        }
    }
}
