//! Repository names, tags and manifest references, following the grammar of the
//! OCI Distribution Spec. A value of these types is safe to join onto a storage
//! path: no component can be empty, `.` or `..`, or contain anything but
//! `[a-z0-9._-]` (names) or `[A-Za-z0-9._-]` (tags).

use super::digest::Digest;
use std::fmt;
use std::str::FromStr;

/// Longest repository name we accept; clients limit `host/name` to 255 characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag the spec's grammar allows.
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("repository name must be at most {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "invalid repository name {0:?}: path components of lowercase letters and digits, separated by '.', '_', '__' or dashes"
    )]
    Invalid(String),
    #[error("invalid tag {0:?}: up to 128 of [A-Za-z0-9._-], not starting with '.' or '-'")]
    InvalidTag(String),
}

/// A repository name such as `team-a/app` (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/…)*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if s.split('/').all(valid_component) {
            Ok(RepoName(s.to_owned()))
        } else {
            Err(NameError::Invalid(s.to_owned()))
        }
    }
}

/// One path component: runs of `[a-z0-9]` joined by exactly one separator, where a
/// separator is `.`, `_`, `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !is_alnum(first) || !is_alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator starts here; it must be followed by an alphanumeric.
        let sep_start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let ok = match &c[sep_start..i] {
            "." | "_" | "__" => true,
            dashes => dashes.bytes().all(|b| b == b'-'),
        };
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_TAG_LEN
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidTag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag, or a digest (anything with a colon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Tag(#[from] NameError),
    #[error(transparent)]
    Digest(#[from] super::digest::DigestError),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "app",
            "team-a/app",
            "a/b/c/d",
            "my.app_v2",
            "a__b",
            "a---b",
            "library/ubuntu",
            "0/1",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok:?} was refused");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", "a/./b", "%2e%2e", "A", "App", "a..b", "a___b",
            "a_-b", "-a", "a-", "_a", "a b", "a\\b", "a\0b", "é",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} was accepted");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(long.parse::<RepoName>(), Err(NameError::TooLong));
        assert!("a".repeat(MAX_NAME_LEN).parse::<RepoName>().is_ok());
    }

    #[test]
    fn tags_follow_the_grammar() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok:?} was refused");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a:b",
            &"t".repeat(129),
        ] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        assert!("sha256:zz".parse::<Reference>().is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const COMPONENT: &str = "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,3}";

    proptest! {
        #[test]
        fn names_from_the_grammar_parse(components in prop::collection::vec(COMPONENT, 1..5)) {
            let name = components.join("/");
            prop_assume!(name.len() <= MAX_NAME_LEN);
            prop_assert_eq!(name.parse::<RepoName>().map(|n| n.to_string()), Ok(name));
        }

        /// Whatever a client sends, an accepted name is a safe relative path.
        #[test]
        fn accepted_names_stay_inside_the_root(s in "\\PC{0,40}|[a-z0-9./_%-]{0,40}") {
            if let Ok(name) = s.parse::<RepoName>() {
                for c in name.as_str().split('/') {
                    prop_assert!(!c.is_empty() && c != "." && c != "..");
                    prop_assert!(c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
                    prop_assert!(!c.starts_with('_'));
                }
            }
        }

        #[test]
        fn tags_are_single_safe_components(s in "\\PC{0,140}|[A-Za-z0-9._-]{0,140}") {
            if let Ok(tag) = s.parse::<Tag>() {
                prop_assert!(tag.as_str().len() <= MAX_TAG_LEN);
                prop_assert!(!tag.as_str().contains('/') && !tag.as_str().starts_with('.'));
            }
        }

        #[test]
        fn references_never_panic(s in "\\PC{0,200}") {
            let _ = s.parse::<Reference>();
        }
    }
}
