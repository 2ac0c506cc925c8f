//! The htpasswd file, as `htpasswd -B` writes it: `user:$2y$…` lines. Only bcrypt
//! is accepted: the older hashes htpasswd can write (MD5 `$apr1$`, `{SHA}`,
//! crypt, plain text) are too cheap to brute-force.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HtpasswdError {
    #[error("line {line}: expected user:hash")]
    Malformed { line: usize },
    #[error(
        "line {line}: user {user:?} has a hash that is not bcrypt; recreate it with `htpasswd -B`"
    )]
    NotBcrypt { line: usize, user: String },
}

/// Users and their bcrypt hashes.
#[derive(Debug, Default, Clone)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .filter(|(u, h)| !u.is_empty() && !h.is_empty())
                .ok_or(HtpasswdError::Malformed { line: line_no })?;
            let bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|p| hash.starts_with(p));
            if !bcrypt {
                return Err(HtpasswdError::NotBcrypt {
                    line: line_no,
                    user: user.to_owned(),
                });
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd { users })
    }

    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bcrypt_lines_and_names_bad_ones() {
        let h = Htpasswd::parse("# team\nalice:$2y$05$abcdefghijklmnopqrstuu\n\nbob:$2b$05$x\n")
            .unwrap();
        assert!(h.hash_of("alice").is_some() && h.hash_of("bob").is_some());
        assert_eq!(h.hash_of("carol"), None);
        assert_eq!(
            Htpasswd::parse("alice:$2y$05$x\nbob:$apr1$salt$hash\n").unwrap_err(),
            HtpasswdError::NotBcrypt {
                line: 2,
                user: "bob".into()
            }
        );
        assert_eq!(
            Htpasswd::parse("carol:{SHA}abc").unwrap_err().to_string(),
            "line 1: user \"carol\" has a hash that is not bcrypt; recreate it with `htpasswd -B`"
        );
        assert_eq!(
            Htpasswd::parse("nocolon").unwrap_err(),
            HtpasswdError::Malformed { line: 1 }
        );
    }
}
