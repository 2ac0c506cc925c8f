//! The access file: who may pull, push or delete where.
//!
//! ```yaml
//! groups:
//!   team-a: [alice, bob]
//! access:
//!   - repository: "team-a/*"       # glob; `*` also matches `/`
//!     groups: [team-a]
//!     rights: [pull, push, delete]
//!   - repository: "*"
//!     users: [anonymous, carol]    # `anonymous`: callers without credentials
//!     rights: [pull]
//! ```
//!
//! A caller's rights on a repository are the union of the rules that match it.

use serde::Deserialize;
use std::collections::BTreeMap;

/// What a request needs on its repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    Pull,
    Push,
    Delete,
}

/// The name the access file gives callers without credentials.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFile {
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    access: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(with = "pattern")]
    repository: glob::Pattern,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    rights: Vec<Right>,
}

/// Repository globs in YAML files (also used by the GC's retention rules).
pub(crate) mod pattern {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<glob::Pattern, D::Error> {
        let text = String::deserialize(d)?;
        glob::Pattern::new(&text).map_err(serde::de::Error::custom)
    }
}

impl AccessFile {
    /// Whether `user` (or [`ANONYMOUS`]) holds `right` on `repository`.
    pub fn allows(&self, user: &str, repository: &str, right: Right) -> bool {
        self.access.iter().any(|rule| {
            rule.rights.contains(&right)
                && rule.repository.matches(repository)
                && (rule.users.iter().any(|u| u == user)
                    || rule.groups.iter().any(|g| {
                        self.groups
                            .get(g)
                            .is_some_and(|members| members.iter().any(|m| m == user))
                    }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
groups:
  team-a: [alice, bob]
access:
  - repository: "team-a/*"
    groups: [team-a]
    rights: [pull, push]
  - repository: "team-a/*"
    users: [alice]
    rights: [delete]
  - repository: "*"
    users: [anonymous, carol]
    rights: [pull]
"#;

    #[test]
    fn rights_are_the_union_of_matching_rules() {
        let file: AccessFile = serde_saphyr::from_str(FILE).unwrap();
        assert!(file.allows("bob", "team-a/app", Right::Push));
        assert!(file.allows("bob", "team-a/deep/app", Right::Pull));
        assert!(!file.allows("bob", "team-a/app", Right::Delete));
        assert!(file.allows("alice", "team-a/app", Right::Delete));
        assert!(!file.allows("bob", "team-b/app", Right::Push));
        assert!(!file.allows("bob", "team-b/app", Right::Pull));
        assert!(file.allows(ANONYMOUS, "anything", Right::Pull));
        assert!(!file.allows(ANONYMOUS, "anything", Right::Push));
        assert!(file.allows("carol", "team-a/app", Right::Pull));
    }

    #[test]
    fn unknown_rights_and_keys_are_refused() {
        assert!(
            serde_saphyr::from_str::<AccessFile>("access: [{repository: '*', rights: [own]}]")
                .is_err()
        );
        assert!(serde_saphyr::from_str::<AccessFile>("acess: []").is_err());
    }
}
