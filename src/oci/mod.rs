//! Pure OCI types: digests, repository names, tags, references, media types and
//! manifest parsing. Nothing here does I/O, so every rule of the spec's grammar can
//! be tested (and fuzzed) on its own.

pub mod digest;
pub mod manifest;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, Manifest, ManifestError};
pub use name::{NameError, Reference, RepoName, Tag};
