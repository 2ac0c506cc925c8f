//! Repository names, tags, references and digests from arbitrary text: never a
//! panic, and an accepted name is always a safe relative path.
#![no_main]

use berth::oci::{Digest, Reference, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(name) = s.parse::<RepoName>() {
        assert!(
            name.as_str()
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
        );
    }
    if let Ok(tag) = s.parse::<Tag>() {
        assert!(!tag.as_str().contains('/'));
    }
    if let Ok(digest) = s.parse::<Digest>() {
        assert_eq!(digest.to_string(), s);
    }
    let _ = s.parse::<Reference>();
});
