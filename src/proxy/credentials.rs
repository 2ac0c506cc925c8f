//! An upstream's credentials, from a YAML file (`username`, `password`) or a
//! folder of the files `username` and `password` (a mounted Kubernetes
//! Secret), and read again while the registry runs: when upstream refuses
//! them, and a minute after the last read when they are used. The kubelet
//! updates a mounted Secret in place, so a changed Secret takes effect
//! without restarting the registry.

use super::upstream::BuildError;
use reqwest::header::HeaderValue;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Credentials in use are read again this long after the last read.
const REREAD: Duration = Duration::from_secs(60);

/// A refusal reads them again only this long after the last read, so that
/// credentials that are plain wrong do not cost a read per request.
const REREAD_REFUSED: Duration = Duration::from_secs(1);

/// A user name and password for an upstream.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl Credentials {
    /// Reads a credentials file or folder (see [`super::UpstreamConfig::credentials`]).
    pub fn read(path: &Path) -> Result<Credentials, BuildError> {
        let failed = |reason: String| BuildError::Credentials {
            path: path.display().to_string(),
            reason,
        };
        if path.is_dir() {
            let field = |name: &str| {
                std::fs::read_to_string(path.join(name))
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| failed(format!("{name}: {e}")))
            };
            return Ok(Credentials {
                username: field("username")?,
                password: field("password")?,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        serde_saphyr::from_str(&text).map_err(|e| failed(e.to_string()))
    }

    pub fn basic(&self) -> HeaderValue {
        use base64::Engine;
        let pair = format!("{}:{}", self.username, self.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        let mut value =
            HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header");
        value.set_sensitive(true);
        value
    }
}

/// Credentials and the path they are read from.
pub struct Login {
    path: PathBuf,
    state: Mutex<(Credentials, Instant)>,
}

impl Login {
    /// Reads them once: credentials that cannot be read stop the start.
    pub fn open(path: &Path) -> Result<Login, BuildError> {
        Ok(Login {
            path: path.to_owned(),
            state: Mutex::new((Credentials::read(path)?, Instant::now())),
        })
    }

    /// The credentials to send, read again if the last read is old.
    pub fn current(&self) -> Credentials {
        self.reread_after(REREAD);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.clone()
    }

    /// Upstream refused what we sent: reads them again, unless that was just
    /// done; says whether they changed.
    pub fn refused(&self) -> bool {
        self.reread_after(REREAD_REFUSED)
    }

    /// Reads them again if the last read is older than `age`; says whether
    /// they changed. A file that cannot be read now keeps the last ones.
    fn reread_after(&self, age: Duration) -> bool {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.1.elapsed() < age {
                return false;
            }
            // Claimed: the others keep sending what they have meanwhile.
            state.1 = Instant::now();
        }
        // Read without the lock: no request waits on the file.
        let read = Credentials::read(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(read) if read != state.0 => {
                tracing::info!(path = %self.path.display(), "upstream credentials changed; using the new ones");
                state.0 = read;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "keeping the upstream credentials read before");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_them_again_and_bad_files_keep_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let write = |user: &str| {
            std::fs::write(dir.path().join("username"), user).unwrap();
            std::fs::write(dir.path().join("password"), "pw\n").unwrap();
        };
        write("alice");
        let login = Login::open(dir.path()).unwrap();
        assert_eq!(login.current().username, "alice");
        write("bob");
        // Just read: a refusal does not read again yet.
        assert!(!login.refused());
        std::thread::sleep(REREAD_REFUSED);
        assert!(login.refused());
        assert_eq!(login.current().username, "bob");
        assert_eq!(login.current().password, "pw");
        std::fs::remove_file(dir.path().join("username")).unwrap();
        std::thread::sleep(REREAD_REFUSED);
        assert!(!login.refused());
        assert_eq!(login.current().username, "bob");
    }
}
