//! The bearer-token flow of the Docker token spec, as Docker Hub, ghcr.io and
//! most registries ask for it: a 401 names a `realm` (the token server) and a
//! `service`; a GET of `realm?service=…&scope=repository:<name>:pull`, with
//! Basic credentials if we have any, gives a token good for `expires_in`
//! seconds. Tokens are cached per scope until shortly before they expire, and
//! however many requests wait for one scope, one of them asks.

use super::credentials::Credentials;
use super::metrics::ProxyMetrics;
use super::slots::Slots;
use super::upstream::{BodyError, UpstreamError, read_limited};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderValue};
use std::time::{Duration, Instant};

/// What the spec says a token lives when the server does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// The longest a token is kept, whatever its server says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A token is renewed this long before it expires (or at a tenth of its life
/// for shorter ones), so that it does not expire between our check and its use.
const MARGIN: Duration = Duration::from_secs(10);

/// A token server's answer is a few fields; one larger than this is refused.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A `WWW-Authenticate: Bearer` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
}

impl Challenge {
    /// Parses `Bearer realm="…",service="…",scope="…"` (the scope is ours to
    /// choose: the repository a request is for).
    pub fn parse(header: &str) -> Option<Challenge> {
        let params = header.get(6..)?;
        let mut realm = None;
        let mut service = None;
        for (key, value) in auth_params(params) {
            match key.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                _ => {}
            }
        }
        Some(Challenge {
            realm: realm.filter(|r| r.starts_with("http://") || r.starts_with("https://"))?,
            service,
        })
    }
}

/// The `key="value"` (or `key=token`) pairs of a challenge, comma-separated.
fn auth_params(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        let Some(eq) = s.find('=') else { break };
        let key = s[..eq].trim().to_owned();
        s = &s[eq + 1..];
        let value = if let Some(quoted) = s.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            s = &quoted[end.min(quoted.len())..];
            value
        } else {
            let end = s.find(',').unwrap_or(s.len());
            let value = s[..end].trim().to_owned();
            s = &s[end..];
            value
        };
        out.push((key, value));
    }
    out
}

#[derive(Clone)]
struct Token {
    value: HeaderValue,
    renew_at: Instant,
}

/// The token server's answer; `token` and `access_token` are synonyms.
#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Each scope's token, behind its own lock so that one request fetches it
/// while the others for that scope wait.
pub struct Tokens {
    client: reqwest::Client,
    metrics: ProxyMetrics,
    upstream: String,
    /// One per repository pulled.
    scopes: Slots<String, Token>,
}

impl Tokens {
    pub fn new(client: reqwest::Client, metrics: ProxyMetrics, upstream: String) -> Tokens {
        Tokens {
            client,
            metrics,
            upstream,
            scopes: Slots::default(),
        }
    }

    /// The `Bearer` header for `scope`: the cached token while it is good and
    /// is not the one upstream just `refused`, else a new one.
    pub async fn token(
        &self,
        challenge: &Challenge,
        scope: &str,
        credentials: Option<&Credentials>,
        refused: Option<&HeaderValue>,
    ) -> Result<HeaderValue, UpstreamError> {
        let key = format!(
            "{}\n{}\n{scope}",
            challenge.realm,
            challenge.service.as_deref().unwrap_or("")
        );
        // A token due for renewal is as good as none.
        let now = Instant::now();
        let slot = self.scopes.slot(key, |t| now < t.renew_at);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
            && refused != Some(&token.value)
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch(challenge, scope, credentials).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn fetch(
        &self,
        challenge: &Challenge,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Token, UpstreamError> {
        let failed = |reason: String| UpstreamError::Protocol {
            upstream: self.upstream.clone(),
            reason: format!("token from {}: {reason}", challenge.realm),
        };
        let mut url =
            reqwest::Url::parse(&challenge.realm).map_err(|e| failed(format!("bad realm: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self.client.get(url);
        if let Some(credentials) = credentials {
            request = request.header(header::AUTHORIZATION, credentials.basic());
        }
        let started = Instant::now();
        let response = request.send().await;
        self.metrics
            .token_request(&self.upstream, response.as_ref().ok());
        let response = response.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // Our credentials, refused: said as such (a 403 to the client).
            return Err(UpstreamError::Status {
                upstream: self.upstream.clone(),
                status,
                what: format!("a token request to {}", challenge.realm),
            });
        }
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| match e {
                BodyError::Cut(e) => failed(e.to_string()),
                BodyError::TooLarge => failed(format!(
                    "the answer is larger than {MAX_TOKEN_RESPONSE} bytes"
                )),
            })?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| failed(format!("not a token: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("no token in the answer".to_owned()))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| failed("the token is not a valid header".to_owned()))?;
        value.set_sensitive(true);
        // Capped: a token server's number is no reason to overflow a clock.
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME)
            .min(MAX_LIFETIME);
        let margin = MARGIN.min(lifetime / 10);
        Ok(Token {
            value,
            renew_at: started + lifetime - margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::slots::PRUNE_ABOVE;
    use super::*;
    use std::sync::Arc;
    use warp::Filter;

    /// A token server on loopback: `/big` answers more than a token answer
    /// may hold, `/forever` a token that claims to live for ever, `/token`
    /// a token only to the right Basic credentials.
    async fn token_server() -> String {
        let big = warp::path!("big").map(|| "x".repeat(MAX_TOKEN_RESPONSE + 1));
        let forever =
            warp::path!("forever").map(|| format!(r#"{{"token":"T","expires_in":{}}}"#, u64::MAX));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(big.or(forever)).incoming(listener).run());
        format!("http://{addr}")
    }

    fn tokens() -> Tokens {
        let client = crate::tls::client_builder().build().unwrap();
        Tokens::new(client, ProxyMetrics::default(), "up.test".into())
    }

    #[tokio::test]
    async fn a_token_answer_is_read_only_up_to_its_limit_and_lives_a_day_at_most() {
        let base = token_server().await;
        let challenge = |path: &str| Challenge {
            realm: format!("{base}/{path}"),
            service: None,
        };
        let tokens = tokens();
        let err = tokens
            .token(&challenge("big"), "repository:a:pull", None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
        // An expires_in past any clock neither panics nor keeps the token longer than a day.
        let asked = Instant::now();
        let token = tokens
            .fetch(&challenge("forever"), "repository:a:pull", None)
            .await
            .unwrap();
        assert_eq!(token.value, "Bearer T");
        assert!(token.renew_at <= asked + MAX_LIFETIME + Duration::from_secs(5));
        assert!(token.renew_at > asked + MAX_LIFETIME - MARGIN - Duration::from_secs(5));
    }

    #[test]
    fn expired_tokens_go_once_there_are_many_scopes() {
        let tokens = tokens();
        let challenge = Challenge {
            realm: "http://127.0.0.1:1/token".into(),
            service: None,
        };
        let fill = |renew_at: Instant| {
            let mut scopes = tokens.scopes.0.lock().unwrap();
            for i in scopes.len()..PRUNE_ABOVE {
                let slot = Arc::new(tokio::sync::Mutex::new(Some(Token {
                    value: HeaderValue::from_static("Bearer T"),
                    renew_at,
                })));
                scopes.insert(format!("{i}"), slot);
            }
        };
        fill(Instant::now() + Duration::from_secs(60));
        // A new scope with every token still good: nothing goes. (The fetch
        // fails, nothing listens there; the slot stays for the next try.)
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ask = |scope: &str| {
            let _ = runtime.block_on(tokens.token(&challenge, scope, None, None));
        };
        ask("repository:new:pull");
        assert_eq!(tokens.scopes.0.lock().unwrap().len(), PRUNE_ABOVE + 1);
        // Once they are due for renewal they are as good as none.
        tokens.scopes.0.lock().unwrap().clear();
        fill(Instant::now() - Duration::from_secs(1));
        ask("repository:other:pull");
        assert_eq!(tokens.scopes.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        // Unquoted values, spaces, an escaped quote, another case.
        let c =
            Challenge::parse(r#"bearer service=ghcr.io, realm="http://127.0.0.1:9/t\"x""#).unwrap();
        assert_eq!(c.realm, "http://127.0.0.1:9/t\"x");
        assert_eq!(c.service.as_deref(), Some("ghcr.io"));
        // No realm, or one that is no URL: nothing to ask.
        assert!(Challenge::parse(r#"Bearer service="x""#).is_none());
        assert!(Challenge::parse(r#"Bearer realm="/token""#).is_none());
    }
}
