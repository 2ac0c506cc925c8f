//! Which site a browser request came from. Browsers send the Basic
//! credentials they remember (the web UI's) with any request to the
//! registry, a form that another site posts included; what they also send
//! tells the registry's own pages from the others:
//!
//! * `Sec-Fetch-Site` on every request to a trustworthy origin (HTTPS,
//!   localhost), which no page can forge or drop;
//! * `Origin` on every POST, to any origin, which another site's page cannot
//!   set to the registry's.
//!
//! Other clients (docker, podman, containerd, skopeo, oras) send neither.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::uri::{Authority, Uri};

/// Where a request came from, as far as its headers tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// A page of the registry itself.
    Same,
    /// A page of another site.
    Other,
    /// Not a browser's page (or one that said nothing).
    Unknown,
}

/// The [`Site`] of a request.
pub fn site() -> BoxedFilter<(Site,)> {
    warp::header::optional::<String>("sec-fetch-site")
        .and(warp::header::optional::<String>("origin"))
        .and(warp::host::optional())
        .map(
            |fetch_site: Option<String>, origin: Option<String>, host: Option<Authority>| {
                of(fetch_site.as_deref(), origin.as_deref(), host.as_ref())
            },
        )
        .boxed()
}

/// `Sec-Fetch-Site` decides by itself (it survives a proxy that rewrites
/// the Host); without it, the `Origin` must name the host the request was
/// sent to (`host`: the Host header, or HTTP/2's authority). The scheme is
/// left out: behind a proxy that ends TLS, the page is https and the request
/// reaching us http.
fn of(fetch_site: Option<&str>, origin: Option<&str>, host: Option<&Authority>) -> Site {
    if let Some(fetch_site) = fetch_site {
        return match fetch_site {
            "same-origin" => Site::Same,
            // A typed address or a bookmark: no page sent it.
            "none" => Site::Unknown,
            _ => Site::Other,
        };
    }
    let Some(origin) = origin else {
        return Site::Unknown;
    };
    let authority = origin
        .parse::<Uri>()
        .ok()
        .and_then(|uri| uri.authority().cloned());
    match (authority, host) {
        (Some(authority), Some(host)) if authority == *host => Site::Same,
        _ => Site::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_headers_tell() {
        let host: Authority = "localhost:32000".parse().unwrap();
        let site = |fetch_site, origin| of(fetch_site, origin, Some(&host));
        assert_eq!(site(None, Some("http://localhost:32000")), Site::Same);
        assert_eq!(site(None, Some("https://localhost:32000")), Site::Same);
        // A proxy may rewrite the Host; Sec-Fetch-Site still tells.
        assert_eq!(
            site(Some("same-origin"), Some("https://registry.example")),
            Site::Same
        );
        assert_eq!(site(Some("same-origin"), None), Site::Same);
        assert_eq!(site(None, None), Site::Unknown);
        assert_eq!(site(Some("none"), None), Site::Unknown);
        for (fetch_site, origin) in [
            (None, Some("http://evil.example")),
            (None, Some("http://localhost:32001")),
            (None, Some("null")),
            (Some("cross-site"), Some("http://localhost:32000")),
            (Some("same-site"), Some("http://localhost:32000")),
        ] {
            assert_eq!(
                site(fetch_site, origin),
                Site::Other,
                "{fetch_site:?} {origin:?}"
            );
        }
        assert_eq!(of(None, Some("http://localhost:32000"), None), Site::Other);
    }
}
