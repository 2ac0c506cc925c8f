//! One upstream registry: its address and credentials, and the HTTP client
//! that talks to it, answering its challenges (Basic, or the bearer-token
//! flow of the Docker token spec, `token.rs`).

use super::caps::Cap;
use super::credentials::{Credentials, Login};
use super::health::Health;
use super::metrics::ProxyMetrics;
use super::token::{Challenge, Tokens};
use crate::storage::{CacheLimit, record_interval};
use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Logins a request may answer a 401 with before the 401 is the answer.
const MAX_LOGINS: usize = 2;

/// How long a cached tag is trusted before it is revalidated upstream.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);

/// How long after its last pull a cached image is safe from eviction.
pub const DEFAULT_KEEP_PULLED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Time to open a connection to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest silence in an upstream response before it counts as cut.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// An upstream as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// The local name its repositories go under, e.g. `docker.io`.
    pub name: String,
    /// Its base URL, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// A file (YAML with `username` and `password`) or a folder (files
    /// `username` and `password`, as a mounted Kubernetes basic-auth Secret).
    pub credentials: Option<PathBuf>,
    pub tag_ttl: Duration,
    /// Bytes its cached images may take before the least recently pulled
    /// are evicted; no cap when `None`.
    pub max_size: Option<u64>,
    /// An image pulled within this long is never evicted.
    pub keep_pulled: Duration,
}

impl UpstreamConfig {
    pub fn new(name: &str, url: &str) -> UpstreamConfig {
        UpstreamConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            credentials: None,
            tag_ttl: DEFAULT_TAG_TTL,
            max_size: None,
            keep_pulled: DEFAULT_KEEP_PULLED,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read the upstream credentials {path}: {reason}")]
    Credentials { path: String, reason: String },
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
}

/// Why an upstream gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {upstream} is unreachable: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("upstream {upstream} answered {status} to {what}")]
    Status {
        upstream: String,
        status: StatusCode,
        what: String,
    },
    #[error("upstream {upstream}: {reason}")]
    Protocol { upstream: String, reason: String },
}

impl UpstreamError {
    /// Whether upstream (or its token server) refused our credentials.
    pub fn is_refused(&self) -> bool {
        matches!(self, UpstreamError::Status { status, .. }
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    }

    /// Whether upstream said plainly that it has no such thing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// How requests to the upstream are authorized, learnt from its first challenge.
#[derive(Clone)]
enum Scheme {
    /// No challenge seen yet (or none needed).
    Unknown,
    Basic,
    Bearer(Challenge),
}

pub struct Upstream {
    pub name: String,
    /// The base URL without a trailing slash.
    pub base: String,
    /// Its scheme, host and port: the only origin whose challenges count.
    origin: String,
    client: reqwest::Client,
    login: Option<Login>,
    pub tag_ttl: Duration,
    /// How often a pull of one of its manifests is written down (pulls.rs).
    pub record_pulls_every: Duration,
    /// Its cap, when it has one.
    pub cap: Option<Cap>,
    scheme: Mutex<Scheme>,
    tokens: Tokens,
    pub metrics: ProxyMetrics,
    pub health: Health,
}

impl Upstream {
    /// `over_cap` is woken when its cache may have outgrown its cap.
    pub fn new(
        config: UpstreamConfig,
        metrics: ProxyMetrics,
        over_cap: &Arc<Notify>,
    ) -> Result<Upstream, BuildError> {
        let url = config.url.trim_end_matches('/').to_owned();
        let parsed = url.parse::<reqwest::Url>().map_err(|e| BuildError::Url {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(BuildError::Url {
                url: config.url,
                reason: "give http:// or https:// and a host".to_owned(),
            });
        }
        let login = config.credentials.as_deref().map(Login::open).transpose()?;
        let cap = config.max_size.map(|max_size| {
            let limit = CacheLimit {
                upstream: config.name.clone(),
                max_size,
                keep_pulled: config.keep_pulled,
            };
            Cap::new(limit, over_cap.clone())
        });
        Ok(Upstream {
            tokens: Tokens::new(client(&config.name)?, metrics.clone(), config.name.clone()),
            client: client(&config.name)?,
            name: config.name,
            origin: parsed.origin().ascii_serialization(),
            base: url,
            login,
            tag_ttl: config.tag_ttl,
            record_pulls_every: record_interval(config.keep_pulled),
            cap,
            scheme: Mutex::new(Scheme::Unknown),
            metrics,
            health: Health::default(),
        })
    }

    /// The repository `rest` (what follows the upstream's name) is called
    /// upstream: Docker Hub keeps its official images under `library/`.
    pub fn remote_name(&self, rest: &str) -> String {
        if self.name == "docker.io" && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        }
    }

    /// Sends `method /v2/<repository>/<path>` with `accept`, authorized for
    /// pulling `repository`; answers one 401 by logging in as it asks, then
    /// sends again. Any status comes back; only a failure to talk is an error.
    pub async fn send(
        &self,
        method: Method,
        repository: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        let scope = format!("repository:{repository}:pull");
        let url = format!("{}/v2/{repository}/{path}", self.base);
        let mut authorization = self.authorization(&scope, None).await?;
        for attempt in 0.. {
            let mut request = self.client.request(method.clone(), &url);
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(value) = &authorization {
                request = request.header(header::AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(|e| self.unreachable(&e));
            self.metrics
                .upstream_response(&self.name, response.as_ref().ok());
            let response = response?;
            self.health.answered();
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                self.health.failed(&format!(
                    "answered {status} to {method} {repository}/{path}"
                ));
            }
            if response.status() != StatusCode::UNAUTHORIZED || attempt == MAX_LOGINS {
                return Ok(response);
            }
            // A 401 of a host upstream redirected to is not upstream refusing
            // our login: nothing to answer it with (see `learn`).
            if response.url().origin().ascii_serialization() != self.origin {
                return Ok(response);
            }
            // A challenge of a scheme not known before is answered as it asks;
            // the same one again means the credentials we sent went stale (a
            // token upstream expired early): a fresh token, once.
            let learnt = self.learn(&response);
            let refused = if learnt { None } else { authorization.as_ref() };
            let retry = self.authorization(&scope, refused).await?;
            if retry.is_none() || (!learnt && retry == authorization) {
                return Ok(response);
            }
            authorization = retry;
        }
        unreachable!("the loop returns by its last attempt")
    }

    /// Takes the scheme a 401 asks for; says whether it is one not known before.
    fn learn(&self, response: &Response) -> bool {
        // Only the upstream itself says where our credentials go (`send`
        // answers no other host's 401), and not to a plain-HTTP realm of an
        // HTTPS upstream.
        let Some(challenge) = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let learnt = if challenge.len() >= 6 && challenge[..6].eq_ignore_ascii_case("bearer") {
            match Challenge::parse(challenge) {
                Some(c)
                    if self.base.starts_with("https://") && !c.realm.starts_with("https://") =>
                {
                    tracing::warn!(upstream = %self.name, realm = %c.realm, "a plain-HTTP token realm of an HTTPS upstream is not used");
                    return false;
                }
                Some(c) => Scheme::Bearer(c),
                None => return false,
            }
        } else if challenge.len() >= 5 && challenge[..5].eq_ignore_ascii_case("basic") {
            Scheme::Basic
        } else {
            return false;
        };
        let mut scheme = self.scheme.lock().unwrap_or_else(|e| e.into_inner());
        let new = match (&*scheme, &learnt) {
            (Scheme::Basic, Scheme::Basic) => false,
            (Scheme::Bearer(known), Scheme::Bearer(asked)) => known != asked,
            _ => true,
        };
        *scheme = learnt;
        new
    }

    /// The Authorization header for `scope` under the scheme known so far,
    /// other than one upstream just `refused`.
    async fn authorization(
        &self,
        scope: &str,
        refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        let scheme = self
            .scheme
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Refused: the credentials may have changed on disk since.
        if refused.is_some()
            && let Some(login) = &self.login
        {
            login.refused();
        }
        let credentials = || self.login.as_ref().map(Login::current);
        Ok(match scheme {
            Scheme::Unknown => None,
            Scheme::Basic => credentials().as_ref().map(Credentials::basic),
            Scheme::Bearer(challenge) => {
                let token = self
                    .tokens
                    .token(&challenge, scope, credentials().as_ref(), refused)
                    .await;
                let token = match token {
                    // The token server refused them; once more if they changed.
                    Err(e) if e.is_refused() && self.login.as_ref().is_some_and(Login::refused) => {
                        let credentials = credentials();
                        let token =
                            self.tokens
                                .token(&challenge, scope, credentials.as_ref(), refused);
                        token.await
                    }
                    token => token,
                };
                // The token server is part of the upstream, for its status too.
                if let Err(e) = &token {
                    self.health.failed(&e.to_string());
                }
                Some(token?)
            }
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> UpstreamError {
        // reqwest's Display stops at "error sending request"; the cause says why.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        let error = UpstreamError::Unreachable {
            upstream: self.name.clone(),
            reason,
        };
        self.health.failed(&error.to_string());
        error
    }

    pub fn status_error(&self, status: StatusCode, what: String) -> UpstreamError {
        let error = UpstreamError::Status {
            upstream: self.name.clone(),
            status,
            what,
        };
        // Credentials upstream refuses are a failure to see; a 404 is an answer.
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            self.health.failed(&error.to_string());
        }
        error
    }

    pub fn protocol_error(&self, reason: String) -> UpstreamError {
        let error = UpstreamError::Protocol {
            upstream: self.name.clone(),
            reason,
        };
        self.health.failed(&error.to_string());
        error
    }

    /// The failure of a transfer cut while its body streamed.
    pub fn cut(&self, e: &reqwest::Error) -> UpstreamError {
        self.unreachable(e)
    }
}

/// Why a small body (manifest, index, token) could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// The transfer broke off.
    Cut(reqwest::Error),
    /// More than the limit came.
    TooLarge,
}

/// Reads a small body, refusing it once it passes `limit` bytes, so that an
/// upstream cannot make us hold more than that in memory.
pub async fn read_limited(mut response: Response, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Cut)? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(BodyError::TooLarge);
        }
    }
    Ok(body.freeze())
}

/// An HTTP client for upstream `name`, with timeouts so that a dead
/// upstream is given up on.
fn client(name: &str) -> Result<reqwest::Client, BuildError> {
    crate::tls::client_builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(format!(
            "berth/{} (pull-through cache for {name})",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| BuildError::Client(e.to_string()))
}
