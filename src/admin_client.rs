//! The client side of the registry's admin API (`/berth/v1/`), shared by the
//! commands that ask a running registry to do something (`berth gc --url`,
//! `berth scrub --url`) and the operator, which reads how the registry's
//! upstreams are doing.

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;

/// Posts `body` to `{url}/berth/v1/{action}` with the bearer token read from
/// `token_file`, and reads the JSON answer. `what` names the job in errors.
/// No overall timeout: a paced scrub or a large collection takes hours.
pub async fn post<T: DeserializeOwned>(
    url: &str,
    action: &str,
    token_file: Option<&Path>,
    body: serde_json::Value,
    what: &str,
) -> anyhow::Result<T> {
    let path = token_file
        .context("--token-file is required with --url: the admin API needs the registry's token")?;
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let endpoint = format!("{}/berth/v1/{action}", url.trim_end_matches('/'));
    let client = crate::tls::client_builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let request = client
        .post(&endpoint)
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body(body.to_string());
    answer(request, &endpoint, what).await
}

/// Reads `{url}/berth/v1/{resource}` with `token`, giving up after `timeout`.
pub async fn get<T: DeserializeOwned>(
    url: &str,
    resource: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<T> {
    let endpoint = format!("{}/berth/v1/{resource}", url.trim_end_matches('/'));
    let client = crate::tls::client_builder().timeout(timeout).build()?;
    let request = client.get(&endpoint).bearer_auth(token);
    answer(request, &endpoint, resource).await
}

/// Sends `request` and reads its JSON answer, or the registry's error message.
async fn answer<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    endpoint: &str,
    what: &str,
) -> anyhow::Result<T> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        // The registry answers OCI error JSON; show its message, not the JSON.
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{what} failed: {status}: {message}");
    }
    serde_json::from_str(&text)
        .with_context(|| format!("unexpected answer from {endpoint}: {text}"))
}
