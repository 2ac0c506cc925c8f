//! The htpasswd file of a Registry, made from its users' password Secrets: one
//! bcrypt line `user:$2y$…` per user, in the order of the spec.
//!
//! The same input gives the same bytes on every pass. bcrypt wants a salt, and a
//! fresh random one each pass would change the Secret, and the pod-template hash
//! with it, restarting the registry every few minutes. So the salt is derived:
//! the first 16 bytes of sha256 over the Registry's uid, the user name and the
//! password. It still does what a salt is for: two users, or two registries, with
//! the same password get different hashes, and a password change gets a new salt.
//! It does not make a guess cheaper: testing a candidate still costs one bcrypt.
//!
//! bcrypt takes a noticeable fraction of a second on purpose, and a Registry is
//! reconciled often, so computed lines are kept in a [`LineCache`] keyed by that
//! same digest.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// bcrypt cost of the lines. The registry caches verified passwords, so only a
/// login's first check pays it; 10 keeps that near 50 ms.
pub const COST: u32 = 10;

/// A user and the password read from its Secret.
pub struct Credential {
    pub user: String,
    pub password: Vec<u8>,
}

/// Trims one trailing line break: `echo pw | kubectl create secret …` stores one,
/// and a password nobody can type is never what was meant.
pub fn password_from_secret(bytes: &[u8]) -> Vec<u8> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    bytes.to_vec()
}

fn digest(registry_uid: &str, credential: &Credential) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"berth htpasswd salt v1\0");
    hasher.update(registry_uid.as_bytes());
    hasher.update(b"\0");
    hasher.update(credential.user.as_bytes());
    hasher.update(b"\0");
    hasher.update(&credential.password);
    hasher.finalize().into()
}

/// Computed lines by the digest of their input, shared by all passes.
#[derive(Default)]
pub struct LineCache(Mutex<HashMap<[u8; 32], String>>);

impl LineCache {
    /// The htpasswd file for these users. CPU-heavy on a cache miss; call it off
    /// the async runtime's worker threads.
    pub fn file(
        &self,
        registry_uid: &str,
        credentials: &[Credential],
    ) -> Result<String, bcrypt::BcryptError> {
        let mut file = String::new();
        for credential in credentials {
            let key = digest(registry_uid, credential);
            let cached = self.lock().get(&key).cloned();
            let line = match cached {
                Some(line) => line,
                None => {
                    let line = line(&key, credential)?;
                    self.lock().insert(key, line.clone());
                    line
                }
            };
            file.push_str(&line);
            file.push('\n');
        }
        Ok(file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], String>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn line(key: &[u8; 32], credential: &Credential) -> Result<String, bcrypt::BcryptError> {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&key[..16]);
    let hash = bcrypt::hash_with_salt(&credential.password, COST, salt)?;
    Ok(format!(
        "{}:{}",
        credential.user,
        hash.format_for_version(bcrypt::Version::TwoY)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(user: &str, password: &str) -> Credential {
        Credential {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn same_input_same_bytes_and_the_passwords_verify() {
        let users = [credential("alice", "s3cret"), credential("bob", "hunter2")];
        let first = LineCache::default().file("uid-1", &users).unwrap();
        let second = LineCache::default().file("uid-1", &users).unwrap();
        assert_eq!(first, second);
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.len(), 2);
        let (user, hash) = lines[0].split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$10$"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
        assert!(bcrypt::verify("hunter2", lines[1].split_once(':').unwrap().1).unwrap());
        // What `berth serve --htpasswd` reads.
        crate::registry::auth::htpasswd::Htpasswd::parse(&first).unwrap();
    }

    #[test]
    fn salts_differ_by_registry_user_and_password() {
        let cache = LineCache::default();
        let one = |uid: &str, user: &str, pw: &str| {
            let file = cache.file(uid, &[credential(user, pw)]).unwrap();
            file.split_once(':').unwrap().1.to_string()
        };
        let base = one("uid-1", "alice", "pw");
        assert_ne!(base, one("uid-2", "alice", "pw"));
        assert_ne!(base, one("uid-1", "bob", "pw"));
        assert_ne!(base, one("uid-1", "alice", "pw2"));
        assert_eq!(base, one("uid-1", "alice", "pw"));
    }

    #[test]
    fn no_users_no_lines() {
        assert_eq!(LineCache::default().file("uid", &[]).unwrap(), "");
    }

    #[test]
    fn one_trailing_line_break_is_not_part_of_the_password() {
        assert_eq!(password_from_secret(b"pw\n"), b"pw");
        assert_eq!(password_from_secret(b"pw\r\n"), b"pw");
        assert_eq!(password_from_secret(b"pw"), b"pw");
        assert_eq!(password_from_secret(b"p w "), b"p w ");
    }
}
