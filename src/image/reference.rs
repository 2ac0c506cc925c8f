//! Image references as users type them (`berth:0.1.0`, `localhost:32000/berth:dev`)
//! and as container runtimes store them (`docker.io/library/berth:0.1.0`).
//!
//! The normalization is docker's: a first component with a `.` or a `:`, or
//! `localhost`, is a registry host; anything else lives on docker.io, and a
//! one-component name there is under `library/`. A kubelet asking for image
//! `berth:0.1.0` looks for `docker.io/library/berth:0.1.0` in containerd, so an
//! imported archive must carry that full name.

use crate::oci::name::{NameError, RepoName, Tag};
use std::fmt;

/// The registry host of names without one.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// `[HOST[:PORT]/]REPOSITORY[:TAG]`; a missing tag is `latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host, e.g. `docker.io` or `localhost:32000`.
    pub domain: String,
    pub repository: RepoName,
    pub tag: Tag,
}

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("{0:?} is not an image reference: references by digest (@sha256:…) cannot be written")]
    Digest(String),
    #[error("{0:?} is not an image reference: {1}")]
    Name(String, NameError),
    #[error("{0:?} is not an image reference: empty registry host")]
    EmptyHost(String),
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, RefError> {
        if text.contains('@') {
            return Err(RefError::Digest(text.to_string()));
        }
        let (first, rest) = text.split_once('/').unwrap_or(("", text));
        let (domain, path) = if first.contains(['.', ':']) || first == "localhost" {
            (first.to_string(), rest.to_string())
        } else if text.contains('/') {
            (DEFAULT_DOMAIN.to_string(), text.to_string())
        } else {
            (DEFAULT_DOMAIN.to_string(), format!("library/{text}"))
        };
        if domain.starts_with(':') {
            return Err(RefError::EmptyHost(text.to_string()));
        }
        // A colon after the last slash starts the tag; one before it is a port.
        let (name, tag) = match path.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (path.as_str(), "latest"),
        };
        let name_error = |e| RefError::Name(text.to_string(), e);
        Ok(ImageRef {
            domain,
            repository: name.parse().map_err(name_error)?,
            tag: tag.parse().map_err(name_error)?,
        })
    }

    /// Whether the registry is this machine, where plain HTTP is the norm (docker
    /// and containerd trust `localhost` without TLS too).
    pub fn is_local(&self) -> bool {
        let host = match self.domain.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.domain.as_str(),
        };
        matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
    }
}

/// The full name: `docker.io/library/berth:0.1.0`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.domain, self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(text: &str) -> String {
        ImageRef::parse(text).unwrap().to_string()
    }

    #[test]
    fn names_are_normalized_as_docker_does() {
        assert_eq!(full("berth:0.1.0"), "docker.io/library/berth:0.1.0");
        assert_eq!(full("berth"), "docker.io/library/berth:latest");
        assert_eq!(full("team/berth:1"), "docker.io/team/berth:1");
        assert_eq!(
            full("localhost:32000/berth:dev"),
            "localhost:32000/berth:dev"
        );
        assert_eq!(full("localhost/berth"), "localhost/berth:latest");
        assert_eq!(full("ghcr.io/a/b/c:v1"), "ghcr.io/a/b/c:v1");
        assert_eq!(full("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
    }

    #[test]
    fn local_registries_are_recognized() {
        for local in [
            "localhost:32000/b",
            "127.0.0.1:5000/b",
            "localhost/b",
            "[::1]:5000/b",
        ] {
            assert!(ImageRef::parse(local).unwrap().is_local(), "{local}");
        }
        for remote in ["ghcr.io/b", "registry.example.com:5000/b", "berth"] {
            assert!(!ImageRef::parse(remote).unwrap().is_local(), "{remote}");
        }
    }

    #[test]
    fn bad_references_are_refused() {
        assert!(matches!(
            ImageRef::parse("b@sha256:00"),
            Err(RefError::Digest(_))
        ));
        assert!(matches!(
            ImageRef::parse("Upper/case"),
            Err(RefError::Name(..))
        ));
        assert!(matches!(
            ImageRef::parse("berth:bad tag"),
            Err(RefError::Name(..))
        ));
        assert!(matches!(
            ImageRef::parse(":5000/b"),
            Err(RefError::EmptyHost(_))
        ));
    }
}
