//! Who is calling, and what they may do: htpasswd basic auth (re-read when the
//! file changes), an optional access file of per-repository rights, anonymous
//! pulls, and a brake on clients that keep failing.
//!
//! Without `--htpasswd` the registry is open, like the classic `registry:2` on a
//! laptop. With it and no access file, every user who logs in has every right.
//!
//! bcrypt costs tens of milliseconds per check, and a pull of 30 layers sends the
//! same credentials 30 times; so a verified (user, password) is remembered for a
//! few minutes, keyed by a hash of the user, the password and the stored bcrypt
//! hash: a new password or a changed file never matches an old entry.

pub mod access;
pub mod htpasswd;

use super::errors::{ApiError, Code};
use crate::oci::RepoName;
pub use access::Right;
use access::{ANONYMOUS, AccessFile};
use base64::Engine as _;
use htpasswd::Htpasswd;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use warp::http::{HeaderValue, header};

/// How long a verified password is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Entries kept before the cache is emptied (a bound, not a working size).
const CACHE_MAX: usize = 10_000;
/// Failed logins from one address within [`FAILURE_WINDOW`] before it is refused…
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// …for this long.
const LOCKOUT: Duration = Duration::from_secs(60);

/// The caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Htpasswd {
        path: PathBuf,
        source: htpasswd::HtpasswdError,
    },
    #[error("{path}: {reason}")]
    Access { path: PathBuf, reason: String },
}

/// The settings `berth serve` takes for access control.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub htpasswd: Option<PathBuf>,
    pub access: Option<PathBuf>,
    pub anonymous_pull: bool,
}

/// Access control; cheap to clone. `Auth::default()` lets everyone do everything.
#[derive(Clone, Default)]
pub struct Auth {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    htpasswd_path: PathBuf,
    users: RwLock<Loaded>,
    access: Option<AccessFile>,
    anonymous_pull: bool,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// The htpasswd content and the file state it was read from.
struct Loaded {
    users: Htpasswd,
    stamp: Option<Stamp>,
}

/// What tells us the file changed: modification time, size and inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp(SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp(meta.modified().ok()?, meta.len(), meta.ino()))
}

struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

fn read_htpasswd(path: &Path) -> Result<Loaded, AuthError> {
    let stamp = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    let users = Htpasswd::parse(&text).map_err(|source| AuthError::Htpasswd {
        path: path.to_owned(),
        source,
    })?;
    Ok(Loaded { users, stamp })
}

impl Auth {
    /// Reads the files; a bad one stops start-up with a message naming the line.
    pub fn load(config: &AuthConfig) -> Result<Auth, AuthError> {
        let Some(path) = &config.htpasswd else {
            return Ok(Auth::default());
        };
        let access = match &config.access {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(
                    serde_saphyr::from_str(&text).map_err(|e| AuthError::Access {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
        };
        Ok(Auth {
            inner: Some(Arc::new(Inner {
                htpasswd_path: path.clone(),
                users: RwLock::new(read_htpasswd(path)?),
                access,
                anonymous_pull: config.anonymous_pull,
                verified: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
            })),
        })
    }

    /// Who sent `authorization` (the header's value) from `client`.
    pub async fn identify(
        &self,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Identity, ApiError> {
        let Some(inner) = &self.inner else {
            return Ok(Identity::Anonymous);
        };
        if let Some(ip) = client
            && inner.locked_out(ip)
        {
            return Err(ApiError::new(
                Code::TooManyRequests,
                "too many failed logins from this address; try again in a minute",
            ));
        }
        let Some(authorization) = authorization else {
            return Ok(Identity::Anonymous);
        };
        let credentials = authorization
            .strip_prefix("Basic ")
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((user, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
            return Err(challenge("malformed Basic credentials"));
        };
        if inner.verify(user, password).await {
            Ok(Identity::User(user.to_owned()))
        } else {
            if let Some(ip) = client {
                inner.record_failure(ip);
            }
            tracing::info!(user, "failed login");
            Err(challenge("wrong user name or password"))
        }
    }

    /// Whether `who` holds `right` on `repository`.
    pub fn allows(&self, who: &Identity, repository: &RepoName, right: Right) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let anonymous_pull = inner.anonymous_pull && right == Right::Pull;
        match (who, &inner.access) {
            (Identity::Anonymous, _) if anonymous_pull => true,
            (Identity::Anonymous, None) => false,
            (Identity::Anonymous, Some(file)) => file.allows(ANONYMOUS, repository.as_str(), right),
            (Identity::User(_), None) => true,
            (Identity::User(user), Some(file)) => file.allows(user, repository.as_str(), right),
        }
    }

    /// `Ok` if `who` holds `right`; else 401 for a caller who has not logged in
    /// (so the client logs in) and 403 DENIED for one who has.
    pub fn require(
        &self,
        who: &Identity,
        repository: &RepoName,
        right: Right,
    ) -> Result<(), ApiError> {
        if self.allows(who, repository, right) {
            return Ok(());
        }
        Err(match who {
            Identity::Anonymous => challenge("authentication required"),
            Identity::User(_) => ApiError::new(
                Code::Denied,
                format!("no {right:?} right on {repository}").to_lowercase(),
            ),
        })
    }

    /// Whether the registry has users to log in as (`--htpasswd`).
    pub fn has_users(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether an anonymous caller may use the API at all (`GET /v2/`, catalog).
    pub fn open_to_anonymous(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.anonymous_pull)
    }
}

/// 401 with the Basic challenge clients answer by sending credentials.
pub fn challenge(message: &str) -> ApiError {
    ApiError::new(Code::Unauthorized, message).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"berth\""),
    )
}

impl Inner {
    /// Re-reads the htpasswd file if it changed; a broken new version is logged
    /// and the last good one kept, so a half-saved edit locks nobody out.
    fn current_hash(&self, user: &str) -> Option<String> {
        let now = stamp(&self.htpasswd_path);
        let stale = self.users.read().unwrap_or_else(|e| e.into_inner()).stamp != now;
        if stale {
            match read_htpasswd(&self.htpasswd_path) {
                Ok(loaded) => {
                    tracing::info!(path = %self.htpasswd_path.display(), "htpasswd reloaded");
                    *self.users.write().unwrap_or_else(|e| e.into_inner()) = loaded;
                }
                Err(e) => {
                    tracing::error!(error = %e, "htpasswd not reloaded; keeping the previous users")
                }
            }
        }
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.users.hash_of(user).map(str::to_owned)
    }

    async fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.current_hash(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified
                .get(&key)
                .is_some_and(|at| at.elapsed() < CACHE_TTL)
            {
                return true;
            }
        }
        let password = password.to_owned();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= CACHE_MAX {
                verified.clear();
            }
            verified.insert(key, Instant::now());
        }
        ok
    }

    fn locked_out(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&ip)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = failures.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
            locked_until: None,
        });
        if now.duration_since(entry.since) > FAILURE_WINDOW {
            *entry = Failures {
                count: 0,
                since: now,
                locked_until: None,
            };
        }
        entry.count += 1;
        if entry.count >= MAX_FAILURES {
            tracing::warn!(%ip, "too many failed logins; refusing this address for a minute");
            entry.locked_until = Some(now + LOCKOUT);
            entry.count = 0;
            entry.since = now;
        }
    }
}
