//! The access log in JSON mode: one parseable line per request, with method,
//! route, repository, status, bytes, duration and user, and never a credential.

mod common;

use base64::Engine as _;
use common::Server;
use common::api::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct-horse-battery";
const WRONG_PASSWORD: &str = "wrong-staple-guess";

/// Waits until the server has logged `n` access lines, and returns every line
/// it logged: the access lines parsed as JSON, and every raw line (each of
/// which must be JSON).
async fn logged(server: &Server, n: usize) -> (Vec<Value>, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let raw = server.log.lock().unwrap().clone();
        let parsed: Vec<Value> = raw
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect();
        let access: Vec<Value> = parsed
            .into_iter()
            .filter(|v| v["target"] == "berth::access")
            .collect();
        if access.len() >= n || Instant::now() > deadline {
            return (access, raw);
        }
        // Not a thread sleep: the client's connections must go on being driven.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_access_lines_carry_the_request_and_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash_with_result(PASSWORD, 4).unwrap();
    std::fs::write(
        &htpasswd,
        format!("bob:{}\n", hash.format_for_version(bcrypt::Version::TwoY)),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--log-format",
            "json",
            "--htpasswd",
            htpasswd.to_str().unwrap(),
        ],
    );
    let http = client();
    let base = server.url("");
    let blob = b"a layer of some bytes".repeat(50);
    let d = digest(&blob);

    // Anonymous, then a wrong password, then bob.
    let r = http.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(server.url("/v2/team/app/tags/list"))
        .basic_auth("bob", Some(WRONG_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/v2/team/app/blobs/uploads/?digest={d}"))
        .basic_auth("bob", Some(PASSWORD))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(format!("{base}/v2/team/app/blobs/{d}"))
        .basic_auth("bob", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), blob);
    let r = http
        .head(format!("{base}/v2/team/app/blobs/{d}"))
        .basic_auth("bob", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (access, raw) = logged(&server, 5).await;
    let summary: Vec<_> = access
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap(),
                l["route"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
                l["user"].as_str(),
                l["repository"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", "/v2/", 401, None, None),
            ("GET", "/v2/<name>/tags/list", 401, None, Some("team/app")),
            (
                "POST",
                "/v2/<name>/blobs/uploads/",
                201,
                Some("bob"),
                Some("team/app")
            ),
            (
                "GET",
                "/v2/<name>/blobs/<digest>",
                200,
                Some("bob"),
                Some("team/app")
            ),
            (
                "HEAD",
                "/v2/<name>/blobs/<digest>",
                200,
                Some("bob"),
                Some("team/app")
            ),
        ]
    );
    let (push, pull, head) = (&access[2], &access[3], &access[4]);
    assert_eq!(push["bytes_in"], blob.len());
    assert_eq!(pull["bytes_out"], blob.len());
    assert_eq!(pull["path"], format!("/v2/team/app/blobs/{d}"));
    assert_eq!(head["bytes_out"], 0);
    for line in &access {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["complete"], true, "{line}");
        assert!(line["micros"].as_u64().is_some(), "{line}");
    }

    // No secret in any line the server wrote, access log or not.
    let encode = |password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("bob:{password}"))
    };
    let secrets = [
        PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        encode(PASSWORD),
        encode(WRONG_PASSWORD),
        hash.to_string(),
    ];
    for line in &raw {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "a secret in: {line}");
        }
        assert!(
            !line.to_ascii_lowercase().contains("authorization"),
            "{line}"
        );
        assert!(!line.contains("Basic "), "{line}");
    }
}

#[tokio::test]
async fn a_pull_cut_short_is_logged_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--log-format", "json"]);
    let http = client();
    let blob = vec![7u8; 8 << 20];
    let d = push_blob(&http, &server.url(""), "big", &blob).await;

    // Read the headers and a little of the body, then hang up.
    let mut r = http
        .get(server.url(&format!("/v2/big/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap();
    drop(r);
    drop(http);

    let (access, _) = logged(&server, 2).await;
    let pull = &access[1];
    assert_eq!(pull["method"], "GET");
    assert_eq!(pull["complete"], false, "{pull}");
    assert!(pull["bytes_out"].as_u64().unwrap() < blob.len() as u64);
}
