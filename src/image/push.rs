//! `berth image push REF`: sends the image's blobs and manifest to a registry over
//! the OCI Distribution API: a HEAD per blob (what the registry has is not sent
//! again), a POST and a monolithic PUT for each missing one, then the manifest
//! under the tag.
//!
//! Plain HTTP only: a registry on this machine (`localhost`, `127.x`) is spoken to
//! that way, as docker and containerd do, and any other needs `--insecure` to say
//! so. berth's HTTP client carries no TLS stack (the registry and the operator
//! do not need one), so an HTTPS registry is refused with the way around it: an
//! exported archive and `skopeo copy`.

use super::Image;
use crate::oci::manifest::OCI_MANIFEST;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Speak plain HTTP to a registry that is not on this machine.
    pub insecure: bool,
    /// Basic-auth `user` and `password`.
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "{domain} is not on this machine and berth pushes over plain HTTP only: pass --insecure if it serves plain HTTP, \
         or export the image and copy it over HTTPS: berth image export -o berth.tar && skopeo copy oci-archive:berth.tar docker://{reference}"
    )]
    NeedsTls { domain: String, reference: String },
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} wants a login: pass --user USER:PASSWORD")]
    LoginNeeded { url: String },
    #[error("{url} refused the login of {user} ({status})")]
    LoginRefused {
        url: String,
        user: String,
        status: StatusCode,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Refused {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url} answered 202 without a Location for the upload")]
    NoLocation { url: String },
}

/// What was pushed: the manifest digest, and how many blobs travelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub digest: String,
    pub blobs_sent: usize,
    pub blobs_present: usize,
}

/// Pushes `image` to its reference.
pub async fn push(image: &Image, options: &PushOptions) -> Result<Pushed, PushError> {
    let target = &image.reference;
    if !target.is_local() && !options.insecure {
        return Err(PushError::NeedsTls {
            domain: target.domain.clone(),
            reference: target.to_string(),
        });
    }
    let base = format!("http://{}/v2/{}", target.domain, target.repository);
    let http = crate::tls::client_builder()
        .build()
        .map_err(|source| PushError::Http {
            url: base.clone(),
            source,
        })?;
    let session = Session { http, options };
    let mut pushed = Pushed {
        digest: image.manifest.digest.to_string(),
        blobs_sent: 0,
        blobs_present: 0,
    };
    for blob in [&image.layer, &image.config] {
        let url = format!("{base}/blobs/{}", blob.digest);
        if session.send(Method::HEAD, &url, |r| r).await?.status() == StatusCode::OK {
            pushed.blobs_present += 1;
            continue;
        }
        let start = format!("{base}/blobs/uploads/");
        let response = session
            .expect(Method::POST, &start, StatusCode::ACCEPTED, |r| r)
            .await?;
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or(PushError::NoLocation { url: start.clone() })?;
        let upload = absolute(&format!("http://{}", target.domain), location);
        let separator = if upload.contains('?') { '&' } else { '?' };
        let finish = format!("{upload}{separator}digest={}", blob.digest);
        let bytes = blob.bytes.clone();
        session
            .expect(Method::PUT, &finish, StatusCode::CREATED, move |r| {
                r.header("content-type", "application/octet-stream")
                    .body(bytes)
            })
            .await?;
        pushed.blobs_sent += 1;
    }
    let manifest = image.manifest.bytes.clone();
    session
        .expect(
            Method::PUT,
            &format!("{base}/manifests/{}", target.tag),
            StatusCode::CREATED,
            move |r| r.header("content-type", OCI_MANIFEST).body(manifest),
        )
        .await?;
    Ok(pushed)
}

/// A Location header is often a path; make it a URL on the registry.
fn absolute(origin: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{origin}{location}")
    }
}

struct Session<'a> {
    http: Client,
    options: &'a PushOptions,
}

impl Session<'_> {
    async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, PushError> {
        let mut request = self.http.request(method, url);
        if let Some((user, password)) = &self.options.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = build(request)
            .send()
            .await
            .map_err(|source| PushError::Http {
                url: url.to_string(),
                source,
            })?;
        match (response.status(), &self.options.credentials) {
            (StatusCode::UNAUTHORIZED, None) => Err(PushError::LoginNeeded {
                url: url.to_string(),
            }),
            (status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), Some((user, _))) => {
                Err(PushError::LoginRefused {
                    url: url.to_string(),
                    user: user.clone(),
                    status,
                })
            }
            _ => Ok(response),
        }
    }

    /// Sends and insists on `expected`; anything else is an error with the body.
    async fn expect(
        &self,
        method: Method,
        url: &str,
        expected: StatusCode,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, PushError> {
        let response = self.send(method.clone(), url, build).await?;
        if response.status() == expected {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(PushError::Refused {
            method,
            url: url.to_string(),
            status,
            body: body.chars().take(500).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_urls() {
        assert_eq!(
            absolute("http://h:1", "/v2/r/blobs/uploads/u?s=1"),
            "http://h:1/v2/r/blobs/uploads/u?s=1"
        );
        assert_eq!(absolute("http://h:1", "http://o:2/u"), "http://o:2/u");
    }

    #[tokio::test]
    async fn a_remote_registry_needs_insecure_to_get_plain_http() {
        let image = crate::image::test_support::fake_image("registry.example.com/berth:1");
        let error = push(&image, &PushOptions::default()).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--insecure"), "{message}");
        assert!(
            message.contains("skopeo copy oci-archive:berth.tar"),
            "{message}"
        );
    }
}
