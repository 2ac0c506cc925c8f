//! Access control over real HTTP: the matrix of endpoints × callers × anonymous
//! pull, hot reload of the htpasswd file, the failed-login brake, a bad htpasswd
//! file at start-up, and TLS with HTTP/2.

mod common;

use common::Server;
use common::api::*;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

fn bcrypt_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_result(password, 4).unwrap();
    format!(
        "{user}:{}\n",
        hash.format_for_version(bcrypt::Version::TwoY)
    )
}

/// Replaces a file the way editors and Kubernetes do: a new file renamed over it.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const ACCESS: &str = r#"
access:
  - repository: "repo"
    users: [reader, writer, admin]
    rights: [pull]
  - repository: "repo"
    users: [writer, admin]
    rights: [push]
  - repository: "repo"
    users: [admin]
    rights: [delete]
  - repository: "elsewhere/*"
    users: [stranger]
    rights: [pull, push, delete]
"#;

/// Each wrong-password request comes from its own loopback address, so that the
/// matrix does not trip the failed-login brake.
static NEXT_ADDRESS: AtomicU8 = AtomicU8::new(10);

fn client_from_fresh_address() -> reqwest::Client {
    let last = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
    builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, last)))
        .build()
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Need {
    Login,
    Pull,
    Push,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Nobody,
    WrongPassword,
    WithoutRight,
    WithRight,
}

#[tokio::test]
async fn every_endpoint_refuses_whom_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let users: String = ["reader", "writer", "admin", "stranger"]
        .iter()
        .map(|u| bcrypt_line(u, &format!("{u}-pw")))
        .collect();
    std::fs::write(dir.path().join("htpasswd"), users).unwrap();
    std::fs::write(dir.path().join("access.yaml"), ACCESS).unwrap();

    for anonymous_pull in [false, true] {
        let root = dir.path().join(format!("data-{anonymous_pull}"));
        let htpasswd = dir.path().join("htpasswd");
        let access = dir.path().join("access.yaml");
        let mut args = vec![
            "--htpasswd",
            htpasswd.to_str().unwrap(),
            "--access",
            access.to_str().unwrap(),
        ];
        if anonymous_pull {
            args.push("--anonymous-pull");
        }
        let server = Server::start_with(&root, &args);
        let http = client();
        // Something to read: an image pushed by a user who may.
        let config = b"{}";
        let d = digest(config);
        let r = http
            .post(server.url(&format!("/v2/repo/blobs/uploads/?digest={d}")))
            .basic_auth("writer", Some("writer-pw"))
            .body(config.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let manifest = image_manifest(config, &[]);
        let r = http
            .put(server.url("/v2/repo/manifests/v1"))
            .basic_auth("writer", Some("writer-pw"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let session = "/v2/repo/blobs/uploads/00000000-0000-4000-8000-000000000000";

        let endpoints: Vec<(&str, String, Need)> = vec![
            ("GET", "/v2/".into(), Need::Login),
            ("GET", "/v2/_catalog".into(), Need::Login),
            ("GET", "/v2/repo/manifests/v1".into(), Need::Pull),
            ("HEAD", "/v2/repo/manifests/v1".into(), Need::Pull),
            ("GET", format!("/v2/repo/blobs/{d}"), Need::Pull),
            ("HEAD", format!("/v2/repo/blobs/{d}"), Need::Pull),
            ("GET", "/v2/repo/tags/list".into(), Need::Pull),
            ("GET", format!("/v2/repo/referrers/{d}"), Need::Pull),
            ("PUT", "/v2/repo/manifests/v2".into(), Need::Push),
            ("POST", "/v2/repo/blobs/uploads/".into(), Need::Push),
            ("GET", session.into(), Need::Push),
            ("PATCH", session.into(), Need::Push),
            ("PUT", format!("{session}?digest={d}"), Need::Push),
            ("DELETE", session.into(), Need::Push),
            ("DELETE", "/v2/repo/manifests/nope".into(), Need::Delete),
            (
                "DELETE",
                format!("/v2/repo/blobs/{}", digest(b"nope")),
                Need::Delete,
            ),
        ];
        for (method, path, need) in &endpoints {
            for caller in [
                Caller::Nobody,
                Caller::WrongPassword,
                Caller::WithoutRight,
                Caller::WithRight,
            ] {
                let (user, password) = match (caller, need) {
                    (Caller::Nobody, _) => ("", ""),
                    (Caller::WrongPassword, _) => ("admin", "not-the-password"),
                    (Caller::WithoutRight, Need::Login | Need::Pull) => ("stranger", "stranger-pw"),
                    (Caller::WithoutRight, Need::Push) => ("reader", "reader-pw"),
                    (Caller::WithoutRight, Need::Delete) => ("writer", "writer-pw"),
                    (Caller::WithRight, Need::Login | Need::Pull) => ("reader", "reader-pw"),
                    (Caller::WithRight, Need::Push) => ("writer", "writer-pw"),
                    (Caller::WithRight, Need::Delete) => ("admin", "admin-pw"),
                };
                let http = if caller == Caller::WrongPassword {
                    client_from_fresh_address()
                } else {
                    client()
                };
                let mut request = http.request(method.parse().unwrap(), server.url(path));
                if caller != Caller::Nobody {
                    request = request.basic_auth(user, Some(password));
                }
                if *method == "PUT" && path.contains("/manifests/") {
                    request = request
                        .header("content-type", OCI_MANIFEST)
                        .body(manifest.clone());
                }
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let anonymous_allowed = anonymous_pull && matches!(need, Need::Pull | Need::Login);
                let expected_refusal = match caller {
                    Caller::Nobody if anonymous_allowed => None,
                    Caller::Nobody | Caller::WrongPassword => Some(401),
                    // Logging in needs no right; the catalog just lists less.
                    Caller::WithoutRight if matches!(need, Need::Login) => None,
                    Caller::WithoutRight => Some(403),
                    Caller::WithRight => None,
                };
                let case = format!(
                    "anonymous pull {anonymous_pull}, {caller:?} ({user}): {method} {path}"
                );
                match expected_refusal {
                    Some(401) => {
                        assert_eq!(status, 401, "{case}");
                        assert_eq!(
                            header(&r, "www-authenticate"),
                            "Basic realm=\"berth\"",
                            "{case}"
                        );
                        if *method != "HEAD" {
                            assert_eq!(error_code(r).await, "UNAUTHORIZED", "{case}");
                        }
                    }
                    Some(_) => {
                        assert_eq!(status, 403, "{case}");
                        if *method != "HEAD" {
                            assert_eq!(error_code(r).await, "DENIED", "{case}");
                        }
                    }
                    None => assert!(
                        !matches!(status, 401 | 403 | 429 | 500..),
                        "{case}: got {status}"
                    ),
                }
            }
        }

        // The catalog shows only what the caller may pull.
        let listed = |user: &'static str| {
            let http = client();
            let url = server.url("/v2/_catalog");
            async move {
                let r = http
                    .get(url)
                    .basic_auth(user, Some(format!("{user}-pw")))
                    .send()
                    .await
                    .unwrap();
                json(r).await["repositories"].clone()
            }
        };
        assert_eq!(listed("reader").await, serde_json::json!(["repo"]));
        assert_eq!(listed("stranger").await, serde_json::json!([]));
    }
}

#[tokio::test]
async fn htpasswd_changes_apply_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, bcrypt_line("alice", "one")).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--htpasswd", file.to_str().unwrap()],
    );
    let status = |user: &'static str, password: &'static str| {
        let url = server.url("/v2/");
        async move {
            client_from_fresh_address()
                .get(url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("alice", "one").await, 200);
    assert_eq!(status("bob", "two").await, 401);

    replace(
        &file,
        &(bcrypt_line("alice", "one") + &bcrypt_line("bob", "two")),
    );
    assert_eq!(status("bob", "two").await, 200, "a new user works at once");

    replace(
        &file,
        &(bcrypt_line("alice", "changed") + &bcrypt_line("bob", "two")),
    );
    assert_eq!(
        status("alice", "one").await,
        401,
        "the old password was remembered"
    );
    assert_eq!(status("alice", "changed").await, 200);

    replace(&file, &bcrypt_line("alice", "changed"));
    assert_eq!(
        status("bob", "two").await,
        401,
        "a removed user still gets in"
    );

    // A broken edit keeps the last good users rather than locking everyone out.
    replace(&file, "alice:$apr1$not$bcrypt\n");
    assert_eq!(status("alice", "changed").await, 200);
}

#[tokio::test]
async fn repeated_failures_are_slowed_down() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, bcrypt_line("alice", "right")).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--htpasswd", file.to_str().unwrap()],
    );
    let http = client();
    for _ in 0..10 {
        let r = http
            .get(server.url("/v2/"))
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http
        .get(server.url("/v2/"))
        .basic_auth("alice", Some("right"))
        .send()
        .await
        .unwrap();
    expect_error(r, 429, "TOOMANYREQUESTS").await;
    // Another address is not held back.
    let r = client_from_fresh_address()
        .get(server.url("/v2/"))
        .basic_auth("alice", Some("right"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_non_bcrypt_htpasswd_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, bcrypt_line("alice", "x") + "bob:$apr1$abc$def\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--htpasswd",
            file.to_str().unwrap(),
            "--root",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("bob") && err.contains("htpasswd -B"),
        "{err}"
    );
}

#[test]
fn tls_offers_http2() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = common::self_signed(dir.path(), "tls_offers_http2") else {
        return;
    };
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = server.url("/v2/");
    assert!(url.starts_with("https://"));
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                "--cacert",
                cert.to_str().unwrap(),
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        curl(&[]),
        "2 200",
        "a client that trusts the certificate gets HTTP/2"
    );
    assert_eq!(curl(&["--http1.1"]), "1.1 200");
    // Plain HTTP on the TLS port gets nowhere.
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(url.replace("https", "http"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8(plain.stdout).unwrap(), "200");
}
