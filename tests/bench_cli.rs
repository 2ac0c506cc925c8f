//! `berth bench` end to end, with small sizes: against a real berth every
//! scenario reports sane counts; against fake registries that answer a wrong
//! digest, wrong bytes or a wrong status it fails with a clear message. No
//! timing is asserted: a slow machine passes too.

mod common;

use bytes::Bytes;
use common::TestRegistry;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Sizes small enough for a test; every scenario still runs its full protocol.
const SMALL: &[&str] = &[
    "--blob-size",
    "3MiB",
    "--chunk-size",
    "1MiB",
    "--pulls",
    "2",
    "--connections",
    "4",
    "--duration",
    "300ms",
    "--small-count",
    "12",
    "--small-concurrency",
    "3",
    "--repositories",
    "25",
    "--catalog-requests",
    "3",
];

fn bench(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("bench")
        .arg(url)
        .args(args)
        .output()
        .expect("run berth bench")
}

/// The scenarios of a `--json` run that succeeded.
fn scenarios_of(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["scenarios"].as_array().unwrap().clone()
}

#[test]
fn every_scenario_against_berth() {
    let registry = TestRegistry::start();
    let mut args = SMALL.to_vec();
    args.push("--json");
    let out = bench(&registry.base(), &args);
    let scenarios = scenarios_of(&out);
    let names: Vec<_> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "push",
            "push-chunked",
            "pull",
            "manifest-get",
            "blob-head",
            "small-push",
            "catalog"
        ]
    );
    let by = |name: &str| scenarios.iter().find(|s| s["name"] == name).unwrap();
    let blob = 3 << 20;
    assert_eq!(by("push")["bytes"], blob);
    assert_eq!(by("push")["requests"], 2);
    assert_eq!(by("push-chunked")["bytes"], blob);
    // POST, three PATCHes of 1 MiB, PUT.
    assert_eq!(by("push-chunked")["requests"], 5);
    assert_eq!(by("pull")["bytes"], 2 * blob);
    assert_eq!(by("pull")["requests"], 2);
    // The registry served the pushed blob three times: one untimed read, then
    // the two timed ones.
    let blob_gets = registry
        .server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/push/blobs/sha256:") && r.status == 200)
        .count();
    assert_eq!(blob_gets, 3);
    for name in ["manifest-get", "blob-head"] {
        let s = by(name);
        assert!(s["requests"].as_u64().unwrap() > 0, "{name}: {s}");
        assert_eq!(s["concurrency"], 4);
        let p99 = s["latency"]["p99_ms"].as_f64().unwrap();
        assert!(
            p99 >= s["latency"]["p50_ms"].as_f64().unwrap(),
            "{name}: {s}"
        );
    }
    // berth takes POST ?digest=: one request per small push.
    assert_eq!(by("small-push")["requests"], 12);
    assert!(
        by("small-push")["description"]
            .as_str()
            .unwrap()
            .contains("one POST ?digest= each")
    );
    assert_eq!(by("catalog")["requests"], 3);
    for s in &scenarios {
        assert!(s["seconds"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["requests_per_second"].as_f64().unwrap() > 0.0, "{s}");
    }
}

#[test]
fn the_web_ui_scenarios_time_its_pages_among_many_tags() {
    let registry = TestRegistry::start();
    let mut args = vec!["--json", "--ui-repositories", "12", "--ui-tags", "3"];
    args.extend(["--ui-requests", "2"]);
    let names = [
        "ui-repositories",
        "ui-search",
        "ui-tags",
        "ui-image",
        "ui-overview",
    ];
    for name in names {
        args.extend(["--scenario", name]);
    }
    let out = bench(&registry.base(), &args);
    let scenarios = scenarios_of(&out);
    let ran: Vec<_> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(ran, names);
    for s in &scenarios {
        assert_eq!(s["requests"], 2, "{s}");
        assert!(s["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{s}");
    }
    // Made once for all five: 12 repositories of 3 tags each.
    let pages = registry.server.requests();
    let manifests = pages
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/ui/r") && r.status == 201)
        .count();
    assert_eq!(manifests, 36);
    // The repositories' page, and the search (the log leaves the query out).
    let home = pages
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/")
        .count();
    assert_eq!(home, 4);
}

#[test]
fn the_pull_through_scenarios_pull_through_a_berth_cache() {
    let upstream = TestRegistry::start();
    let cache = TestRegistry::start_with(&["--proxy", &format!("up.test={}", upstream.base())]);
    let out = bench(
        &cache.base(),
        &[
            "--json",
            "--upstream",
            &upstream.base(),
            "--mirror-prefix",
            "up.test/",
            "--proxy-layers",
            "2",
            "--proxy-layer-size",
            "1MiB",
            "--proxy-clients",
            "3",
            "--scenario",
            "pull-through-warm",
            "--scenario",
            "pull-upstream",
            "--scenario",
            "pull-through-cold",
        ],
    );
    let scenarios = scenarios_of(&out);
    let names: Vec<_> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pull-upstream", "pull-through-cold", "pull-through-warm"]
    );
    for s in &scenarios {
        // Three clients, each the manifest, the config and two layers.
        assert_eq!(s["requests"], 12, "{s}");
        assert_eq!(s["concurrency"], 3, "{s}");
        let bytes = s["bytes"].as_u64().unwrap();
        assert!(
            bytes > 3 * (2 << 20) && bytes < 3 * ((2 << 20) + 4096),
            "{s}"
        );
    }
    assert!(
        scenarios[1]["description"]
            .as_str()
            .unwrap()
            .contains("fetches it upstream")
    );
    // Each layer left the upstream five times: the untimed read and the three
    // clients of pull-upstream, then once for the cache however many clients
    // waited on it; the warm pulls never reached it.
    let layer_gets = |registry: &TestRegistry| {
        let mut counts = std::collections::BTreeMap::new();
        for r in registry.server.requests() {
            if r.method == "GET" && r.status == 200 && r.path.contains("/mirrored/blobs/sha256:") {
                let digest = r.path.rsplit('/').next().unwrap().to_owned();
                *counts.entry(digest).or_insert(0) += 1;
            }
        }
        counts
    };
    let upstream_gets = layer_gets(&upstream);
    // The config is a blob too, read the same five times.
    assert_eq!(upstream_gets.len(), 3, "{upstream_gets:?}");
    assert!(upstream_gets.values().all(|&n| n == 5), "{upstream_gets:?}");
    let cache_gets = layer_gets(&cache);
    assert!(cache_gets.values().all(|&n| n == 6), "{cache_gets:?}");
}

#[test]
fn the_table_is_the_default_output() {
    let registry = TestRegistry::start();
    let out = bench(
        &registry.base(),
        &[SMALL, &["--scenario", "blob-head", "--scenario", "catalog"]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[1].starts_with("scenario"), "{table}");
    assert!(
        lines[2].starts_with("blob-head") && lines[2].contains("req/s"),
        "{table}"
    );
    assert!(lines[3].starts_with("catalog"), "{table}");
}

#[tokio::test]
async fn catalog_times_a_page_of_its_own_repositories_among_others() {
    let registry = TestRegistry::start();
    let http = common::api::client();
    // One repository sorting before bench's, one after.
    for repo in ["aaa/first", "zzz/last"] {
        common::api::push_blob(&http, &registry.base(), repo, repo.as_bytes()).await;
    }
    let url = registry.base();
    let out = tokio::task::spawn_blocking(move || {
        bench(
            &url,
            &[SMALL, &["--scenario", "catalog", "--json"]].concat(),
        )
    })
    .await
    .unwrap();
    assert_eq!(scenarios_of(&out)[0]["requests"], 3);
}

#[test]
fn bad_usage_is_refused_with_a_reason() {
    let out = bench("https://127.0.0.1:1", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain HTTP"));
    let out = bench("http://127.0.0.1:1", &["--scenario", "nonsense"]);
    assert!(!out.status.success());
}

/// How a fake registry gets things wrong.
#[derive(Clone, Copy)]
enum Fault {
    /// Answers a finished upload with another digest.
    WrongDigest,
    /// Stores nothing and serves zeros for a blob.
    WrongBytes,
    /// Knows only `/v2/`.
    NotFound,
}

/// A registry that answers just enough of the protocol to get to its fault.
async fn fake(fault: Fault) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pushed = Arc::new(Mutex::new(0u64));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let pushed = pushed.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let pushed = pushed.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let received = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes().len())
                        .unwrap_or(0);
                    let path = parts.uri.path().to_owned();
                    let query = parts.uri.query().unwrap_or("").to_owned();
                    let digest = query.strip_prefix("digest=").unwrap_or("").to_owned();
                    let mut r = Response::builder();
                    let body = match (fault, parts.method.as_str()) {
                        (_, "GET") if path == "/v2/" => Bytes::new(),
                        (Fault::NotFound, _) => {
                            r = r.status(StatusCode::NOT_FOUND);
                            Bytes::from_static(br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#)
                        }
                        (_, "POST") => {
                            r = r
                                .status(StatusCode::ACCEPTED)
                                .header("location", "/v2/x/blobs/uploads/1");
                            Bytes::new()
                        }
                        (_, "PUT") => {
                            *pushed.lock().unwrap() = received as u64;
                            let said = match fault {
                                Fault::WrongDigest => format!("sha256:{}", "0".repeat(64)),
                                _ => digest,
                            };
                            r = r
                                .status(StatusCode::CREATED)
                                .header("docker-content-digest", said);
                            Bytes::new()
                        }
                        (_, "HEAD") => {
                            r = r.header("content-length", *pushed.lock().unwrap());
                            Bytes::new()
                        }
                        (_, "GET") => Bytes::from(vec![0u8; *pushed.lock().unwrap() as usize]),
                        _ => {
                            r = r.status(StatusCode::METHOD_NOT_ALLOWED);
                            Bytes::new()
                        }
                    };
                    Ok::<_, std::convert::Infallible>(r.body(Full::new(body)).unwrap())
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// Runs bench against a fake; it must fail and say `expected` on stderr.
async fn fails_with(fault: Fault, scenario: &str, expected: &str) {
    let url = fake(fault).await;
    let args: Vec<String> = [SMALL, &["--scenario", scenario]]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bench(&url, &args)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "bench passed against a wrong registry"
    );
    assert!(out.stdout.is_empty(), "a failed run printed a report");
    assert!(
        stderr.contains(&format!("scenario {scenario} failed")) && stderr.contains(expected),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_digest_fails_the_run() {
    fails_with(Fault::WrongDigest, "push", "wrong digest").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_bytes_fail_the_run() {
    fails_with(Fault::WrongBytes, "pull", "wrong content").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_status_fails_the_run() {
    fails_with(Fault::NotFound, "manifest-get", "got 404").await;
}
