//! A flood of malformed requests: bad methods, paths, names, digests, ranges,
//! manifests and headers. None may get a 5xx, each gets a 4xx, and the registry
//! still works afterwards.

mod common;

use common::TestRegistry;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const UNKNOWN: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Sends one raw HTTP/1.1 request and returns the status code.
fn raw(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {text:?}"))
}

/// `(method, path, headers, body)`.
type BadRequest = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
);

/// Requests that are wrong in one way each.
fn bad_requests() -> Vec<BadRequest> {
    let none = Vec::new;
    let long_name = "a".repeat(300);
    let mut v =
        vec![
        ("BREW", "/v2/".into(), none(), vec![]),
        ("POST", "/v2/a/blobs/".to_string() + D, none(), vec![]),
        ("PUT", "/v2/_catalog".into(), none(), vec![]),
        (
            "GET",
            "/v2/../../etc/passwd/blobs/".to_string() + D,
            none(),
            vec![],
        ),
        (
            "GET",
            "/v2/%2e%2e/%2e%2e/blobs/".to_string() + D,
            none(),
            vec![],
        ),
        ("GET", "/v2//a/manifests/latest".into(), none(), vec![]),
        ("GET", "/v2/UPPER/manifests/latest".into(), none(), vec![]),
        ("GET", format!("/v2/{long_name}/tags/list"), none(), vec![]),
        ("GET", "/v2/a/blobs/sha256:xyz".into(), none(), vec![]),
        (
            "GET",
            "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            none(),
            vec![],
        ),
        ("GET", "/v2/a/blobs/sha256:".into(), none(), vec![]),
        ("GET", "/v2/a/manifests/..".into(), none(), vec![]),
        ("GET", "/v2/a/manifests/-tag".into(), none(), vec![]),
        ("GET", "/v2/a/referrers/notadigest".into(), none(), vec![]),
        ("GET", "/v2/a/tags/list?n=-1".into(), none(), vec![]),
        (
            "GET",
            "/v2/a/tags/list?n=99999999999999999999999".into(),
            none(),
            vec![],
        ),
        ("GET", "/v2/_catalog?n=abc".into(), none(), vec![]),
        (
            "GET",
            "/v2/a/blobs/uploads/not-a-uuid".into(),
            none(),
            vec![],
        ),
        (
            "PATCH",
            "/v2/a/blobs/uploads/00000000-0000-0000-0000-000000000000".into(),
            none(),
            b"x".to_vec(),
        ),
        (
            "PUT",
            "/v2/a/blobs/uploads/00000000-0000-0000-0000-000000000000?digest=".to_string() + D,
            none(),
            vec![],
        ),
        (
            "POST",
            "/v2/a/blobs/uploads/?digest=sha256:nope".into(),
            none(),
            b"x".to_vec(),
        ),
        (
            "POST",
            "/v2/a/blobs/uploads/?digest=".to_string() + D,
            none(),
            b"not empty".to_vec(),
        ),
        (
            "POST",
            "/v2/a/blobs/uploads/?mount=junk&from=b".into(),
            none(),
            vec![],
        ),
        (
            "PUT",
            "/v2/a/manifests/latest".into(),
            vec![("Content-Type", OCI_MANIFEST)],
            b"{junk".to_vec(),
        ),
        (
            "PUT",
            "/v2/a/manifests/latest".into(),
            vec![("Content-Type", OCI_MANIFEST)],
            b"[]".to_vec(),
        ),
        (
            "PUT",
            "/v2/a/manifests/latest".into(),
            vec![("Content-Type", OCI_MANIFEST)],
            b"{\"schemaVersion\":2}".to_vec(),
        ),
        (
            "PUT",
            "/v2/a/manifests/latest".into(),
            vec![(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )],
            br#"{"schemaVersion":1,"name":"a","tag":"latest","fsLayers":[]}"#.to_vec(),
        ),
        (
            "PUT",
            "/v2/a/manifests/latest".into(),
            vec![("Content-Type", "application/vnd.oci.image.index.v1+json")],
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{}},"layers":[]}}"#
            )
            .into_bytes(),
        ),
        (
            "PUT",
            "/v2/a/manifests/".to_string() + D,
            vec![("Content-Type", OCI_MANIFEST)],
            b"{}".to_vec(),
        ),
        (
            "PUT",
            "/v2/a/manifests/bad..tag".into(),
            vec![("Content-Type", OCI_MANIFEST)],
            b"{}".to_vec(),
        ),
        (
            "GET",
            "/v2/a/blobs/".to_string() + D,
            vec![("Range", "bytes=999-")],
            vec![],
        ),
        ("DELETE", "/v2/a/manifests/latest".into(), none(), vec![]),
        ("DELETE", "/v2/a/blobs/".to_string() + UNKNOWN, none(), vec![]),
        ("GET", "/nowhere".into(), none(), vec![]),
    ];
    // A manifest over the 4 MiB limit.
    v.push((
        "PUT",
        "/v2/a/manifests/big".into(),
        vec![("Content-Type", OCI_MANIFEST)],
        vec![b' '; 4 * 1024 * 1024 + 1],
    ));
    v
}

#[test]
fn malformed_requests_get_4xx_never_5xx() {
    let registry = TestRegistry::start();
    let addr = registry.server.addr().to_owned();

    // A real repository, so that some bad requests hit existing state.
    let ok = raw(
        &addr,
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={D}"),
        &[],
        b"",
    );
    assert_eq!(ok, 201);
    let start = raw(&addr, "POST", "/v2/a/blobs/uploads/", &[], b"");
    assert_eq!(start, 202);

    let requests = bad_requests();
    for round in 0..5 {
        for (method, path, headers, body) in &requests {
            let status = raw(&addr, method, path, headers, body);
            assert!(
                (400..500).contains(&status),
                "round {round}: {method} {path} answered {status}"
            );
        }
    }
    // Contradictory Content-Range on a live session: 4xx, and the session lives on.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let location = answer
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned();
    for range in ["5-9", "9-5", "junk", "0-99"] {
        let status = raw(
            &addr,
            "PATCH",
            &location,
            &[("Content-Range", range)],
            b"hello",
        );
        assert!(
            (400..500).contains(&status),
            "Content-Range {range} answered {status}"
        );
    }
    assert_eq!(
        raw(
            &addr,
            "PATCH",
            &location,
            &[("Content-Range", "0-4")],
            b"hello"
        ),
        202
    );

    // Still a working registry.
    assert_eq!(
        raw(&addr, "GET", &format!("/v2/a/blobs/{D}"), &[], b""),
        200
    );
    assert_eq!(raw(&addr, "GET", "/readyz", &[], b""), 200);
}
