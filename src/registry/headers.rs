//! Parsers of the request headers the API reads (`Range`, `Content-Range`,
//! `Accept`, `If-None-Match`): client bytes, so each has unit and property tests
//! and a fuzz target (`fuzz/`).

use crate::oci::Digest;
use crate::oci::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use warp::http::{HeaderMap, header};

/// `"<digest>"`, the ETag of content-addressed things.
pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// Whether `If-None-Match` names this ETag (or `*`).
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == etag || v == "*")
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// Not a single byte range we serve: answer with the whole blob (RFC 9110 lets
    /// a server ignore Range).
    Ignore,
    Satisfiable(u64, u64),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
pub fn parse_range(spec: &str, size: u64) -> RangeRequest {
    let Some(range) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if range.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = range.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return RangeRequest::Ignore,
        // suffix: the last n bytes
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => (size.saturating_sub(n), size - 1),
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Ignore,
        },
        (false, true) => match parse(first) {
            Some(start) => (start, size.saturating_sub(1)),
            None => return RangeRequest::Ignore,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
            _ => return RangeRequest::Ignore,
        },
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Satisfiable(start, end)
}

/// `Content-Range: <start>-<end>` (inclusive) as (start, length). Some clients
/// prefix `bytes ` or `bytes=`; we accept both.
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = value
        .strip_prefix("bytes")
        .map(|v| v.trim_start_matches(['=', ' ']))
        .unwrap_or(value);
    let (start, end) = value.split('/').next()?.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let length = end.checked_sub(start)?.checked_add(1)?;
    Some((start, length))
}

/// Whether the client's Accept headers allow `media_type`. A client that names no
/// manifest type at all (curl's `*/*`, or no header) takes what is stored; one that
/// lists manifest types but not this one gets MANIFEST_UNKNOWN, as distribution
/// answers old clients that cannot read OCI manifests.
pub fn acceptable(headers: &HeaderMap, media_type: &str) -> bool {
    let accepted: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    let names_manifests = accepted
        .iter()
        .any(|t| matches!(*t, OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST));
    !names_manifests || accepted.iter().any(|t| *t == media_type || *t == "*/*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;
    use warp::http::HeaderValue;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Satisfiable(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), Satisfiable(90, 99));
        assert_eq!(parse_range("bytes=95-", 100), Satisfiable(95, 99));
        assert_eq!(parse_range("bytes=-10", 100), Satisfiable(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ignore);
        assert_eq!(parse_range("items=0-1", 100), Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), Ignore);
    }

    #[test]
    fn if_none_match() {
        let d = Digest::sha256(b"");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag(&d)));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag(&d)).unwrap(),
        );
        assert!(not_modified(&h, &etag(&d)));
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(acceptable(&h, OCI_INDEX), "no Accept header takes anything");
        h.append(header::ACCEPT, HeaderValue::from_static(DOCKER_MANIFEST));
        h.append(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/vnd.docker.distribution.manifest.list.v2+json; q=0.5, text/plain",
            ),
        );
        assert!(acceptable(&h, DOCKER_LIST));
        assert!(!acceptable(&h, OCI_INDEX));
        h.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(acceptable(&h, OCI_INDEX));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 100)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 100)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 1)));
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("abc"), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn satisfiable_ranges_lie_inside_the_blob(spec in "\\PC{0,30}|bytes=[0-9]{0,4}-[0-9]{0,4}", size in 0u64..5000) {
            if let RangeRequest::Satisfiable(start, end) = parse_range(&spec, size) {
                prop_assert!(start <= end && end < size);
            }
        }
    }

    proptest! {
        #[test]
        fn content_ranges_have_a_length(spec in "\\PC{0,30}|(bytes[ =])?[0-9]{0,21}-[0-9]{0,21}") {
            if let Some((start, length)) = parse_content_range(&spec) {
                prop_assert!(length >= 1 && start.checked_add(length - 1).is_some());
            }
        }
    }
}
