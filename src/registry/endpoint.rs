//! The endpoint table: every path the registry serves, as a value.
//!
//! A leaf module: it knows paths and repository names and nothing else of the
//! registry, so the routes, the metrics and the access log all read it and
//! none of them reads another.
//!
//! Repository names contain slashes, so an OCI path is matched from its end:
//! `/v2/<name>/manifests/<reference>` is the tail split at its last
//! `/manifests/`.

use crate::oci::RepoName;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest,
    /// `/v2/<name>/blobs/<digest>`
    Blob,
    /// `/v2/<name>/blobs/uploads/`
    UploadStart,
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload,
    /// `/v2/<name>/tags/list`
    Tags,
    /// `/v2/<name>/referrers/<digest>`
    Referrers,
    /// `/healthz`
    Healthz,
    /// `/readyz`
    Readyz,
    /// `/metrics`
    Metrics,
    /// `/berth/v1/gc`
    Gc,
    /// `/berth/v1/scrub`
    Scrub,
    /// A path no endpoint serves.
    Other,
}

/// The endpoints under `/v2/<name>/`, in the order a path is tried against
/// them: an upload path also ends like a blob path.
const UNDER_A_REPOSITORY: [Endpoint; 6] = [
    Endpoint::Upload,
    Endpoint::UploadStart,
    Endpoint::Blob,
    Endpoint::Manifest,
    Endpoint::Tags,
    Endpoint::Referrers,
];

/// The endpoints with a fixed path.
const FIXED: [Endpoint; 7] = [
    Endpoint::Catalog,
    Endpoint::Healthz,
    Endpoint::Readyz,
    Endpoint::Metrics,
    Endpoint::Gc,
    Endpoint::Scrub,
    Endpoint::Base,
];

impl Endpoint {
    /// The route template: the `route` label of the metrics and the access
    /// log's `route`; it never carries a name or a digest.
    pub fn template(self) -> &'static str {
        match self {
            Endpoint::Base => "/v2/",
            Endpoint::Catalog => "/v2/_catalog",
            Endpoint::Manifest => "/v2/<name>/manifests/<reference>",
            Endpoint::Blob => "/v2/<name>/blobs/<digest>",
            Endpoint::UploadStart => "/v2/<name>/blobs/uploads/",
            Endpoint::Upload => "/v2/<name>/blobs/uploads/<uuid>",
            Endpoint::Tags => "/v2/<name>/tags/list",
            Endpoint::Referrers => "/v2/<name>/referrers/<digest>",
            Endpoint::Healthz => "/healthz",
            Endpoint::Readyz => "/readyz",
            Endpoint::Metrics => "/metrics",
            Endpoint::Gc => "/berth/v1/gc",
            Endpoint::Scrub => "/berth/v1/scrub",
            Endpoint::Other => "other",
        }
    }

    /// The endpoint a path is for and, for the endpoints under
    /// `/v2/<name>/`, the repository it names when that is a valid name.
    pub fn of(path: &str) -> (Endpoint, Option<RepoName>) {
        if path == "/v2" {
            return (Endpoint::Base, None);
        }
        if let Some(fixed) = FIXED.into_iter().find(|e| e.template() == path) {
            return (fixed, None);
        }
        let Some(tail) = path.strip_prefix("/v2/") else {
            return (Endpoint::Other, None);
        };
        UNDER_A_REPOSITORY
            .into_iter()
            .find_map(|endpoint| {
                let (name, _) = endpoint.split(tail)?;
                Some((endpoint, name.parse().ok()))
            })
            .unwrap_or((Endpoint::Other, None))
    }

    /// For an endpoint under `/v2/<name>/`: splits a path below `/v2/` into
    /// the repository name and what follows the endpoint's keyword (empty for
    /// endpoints without a parameter). None when the path is not this
    /// endpoint's, and for the other endpoints.
    pub fn split(self, tail: &str) -> Option<(&str, &str)> {
        let with_param = |keyword: &str| {
            let (name, param) = tail.rsplit_once(keyword)?;
            (!param.is_empty() && !param.contains('/')).then_some((name, param))
        };
        match self {
            Endpoint::Manifest => with_param("/manifests/"),
            Endpoint::Blob => with_param("/blobs/").filter(|(_, p)| *p != "uploads"),
            Endpoint::Upload => with_param("/blobs/uploads/"),
            Endpoint::Referrers => with_param("/referrers/"),
            Endpoint::UploadStart => tail
                .strip_suffix("/blobs/uploads/")
                .or_else(|| tail.strip_suffix("/blobs/uploads"))
                .map(|name| (name, "")),
            Endpoint::Tags => tail.strip_suffix("/tags/list").map(|name| (name, "")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_from_the_end() {
        use Endpoint::*;
        let m = |t, e: Endpoint| e.split(t);
        assert_eq!(m("a/b/manifests/latest", Manifest), Some(("a/b", "latest")));
        assert_eq!(m("a/blobs/sha256:x", Blob), Some(("a", "sha256:x")));
        assert_eq!(m("a/blobs/uploads/", Blob), None);
        assert_eq!(m("a/blobs/uploads/", UploadStart), Some(("a", "")));
        assert_eq!(m("a/blobs/uploads/u1", Upload), Some(("a", "u1")));
        assert_eq!(m("a/blobs/uploads/u1", Blob), None);
        assert_eq!(m("a/blobs/uploads/u1", UploadStart), None);
        // A repository may itself be called "blobs" or "manifests".
        assert_eq!(
            m("x/manifests/blobs/sha256:y", Blob),
            Some(("x/manifests", "sha256:y"))
        );
        assert_eq!(m("x/manifests/blobs/sha256:y", Manifest), None);
        assert_eq!(m("a/tags/list", Tags), Some(("a", "")));
        assert_eq!(
            m("a/referrers/sha256:z", Referrers),
            Some(("a", "sha256:z"))
        );
        assert_eq!(m("a/manifests/", Manifest), None);
        assert_eq!(m("a/manifests/x", Catalog), None);
    }

    #[test]
    fn route_templates_never_carry_names_or_digests() {
        let t = |path| Endpoint::of(path).0.template();
        assert_eq!(t("/v2/"), "/v2/");
        assert_eq!(t("/v2"), "/v2/");
        assert_eq!(
            t("/v2/team/app/manifests/latest"),
            "/v2/<name>/manifests/<reference>"
        );
        assert_eq!(t("/v2/app/blobs/sha256:abc"), "/v2/<name>/blobs/<digest>");
        assert_eq!(t("/v2/app/blobs/uploads/"), "/v2/<name>/blobs/uploads/");
        assert_eq!(
            t("/v2/app/blobs/uploads/0b1c"),
            "/v2/<name>/blobs/uploads/<uuid>"
        );
        assert_eq!(t("/v2/app/tags/list"), "/v2/<name>/tags/list");
        assert_eq!(
            t("/v2/app/referrers/sha256:abc"),
            "/v2/<name>/referrers/<digest>"
        );
        assert_eq!(t("/v2/_catalog"), "/v2/_catalog");
        assert_eq!(t("/metrics"), "/metrics");
        assert_eq!(t("/healthz"), "/healthz");
        assert_eq!(t("/berth/v1/gc"), "/berth/v1/gc");
        assert_eq!(t("/berth/v1/scrub"), "/berth/v1/scrub");
        assert_eq!(t("/v2/app/what"), "other");
        assert_eq!(t("/etc/passwd"), "other");
        assert_eq!(t("/metrics/x"), "other");
    }

    #[test]
    fn the_repository_of_a_path_is_a_valid_name_or_none() {
        let repo = |path| Endpoint::of(path).1.map(|name| name.as_str().to_owned());
        assert_eq!(
            repo("/v2/team/app/manifests/latest").as_deref(),
            Some("team/app")
        );
        assert_eq!(repo("/v2/app/blobs/uploads/").as_deref(), Some("app"));
        assert_eq!(repo("/v2/Bad..Name/tags/list"), None);
        assert_eq!(repo("/v2/_catalog"), None);
    }
}
