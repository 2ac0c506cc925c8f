//! The pull-through cache over real HTTP: a berth mirrors another berth (the
//! upstream), which sits behind the harness's front (common/front.rs) that
//! asks for credentials as Docker Hub does, counts what it is sent, and fails
//! on demand. Byte-identical pulls both ways in (`?ns=` and the path prefix),
//! one upstream request per thing however many clients ask, stale serving,
//! cut and corrupt transfers, the tag TTL, and skopeo through the cache.

mod common;

use common::api::*;
use common::daemons::need;
use common::front::{self, Fault, Front, Login};
use common::{TestRegistry, on_disk};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warp::Filter;

/// The upstream's name in the cache.
const UP: &str = "upstream.test";

/// How long the cache trusts a tag in these tests.
const TTL: Duration = Duration::from_secs(2);

/// The cache's admin token (for POST /berth/v1/gc).
const ADMIN_TOKEN: &str = "admin-token-of-the-cache";

/// The upstream registry, its front, and the cache mirroring it.
struct Setup {
    upstream: TestRegistry,
    front: Front,
    cache: TestRegistry,
    config: tempfile::TempDir,
}

fn setup(login: Login) -> Setup {
    setup_with(login, "")
}

/// [`setup`], with more settings of the upstream (YAML lines of its entry).
fn setup_with(login: Login, settings: &str) -> Setup {
    let upstream = TestRegistry::start();
    let front = Front::start(&upstream.base(), login);
    let config = tempfile::tempdir().unwrap();
    let credentials = config.path().join("upstream.yaml");
    std::fs::write(
        &credentials,
        format!("username: {}\npassword: {}\n", front::USER, front::PASSWORD),
    )
    .unwrap();
    let token = config.path().join("admin-token");
    std::fs::write(&token, ADMIN_TOKEN).unwrap();
    let file = config.path().join("berth.yaml");
    std::fs::write(
        &file,
        format!(
            "adminTokenFile: {}\nproxy:\n  - name: {UP}\n    url: {}\n    credentials: {}\n    tagTtl: {}s\n{settings}",
            token.display(),
            front.url(),
            credentials.display(),
            TTL.as_secs()
        ),
    )
    .unwrap();
    let cache = TestRegistry::start_with(&["--config", file.to_str().unwrap()]);
    Setup {
        upstream,
        front,
        cache,
        config,
    }
}

/// An image of `layers` layers of `size` bytes each, pushed to the upstream's
/// `repo:tag`; returns the manifest and every blob by digest.
async fn upstream_image(
    s: &Setup,
    repo: &str,
    tag: &str,
    seed: &str,
    layers: usize,
    size: usize,
) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let (http, base) = s.upstream.client();
    let config = format!(r#"{{"seed":"{seed}"}}"#).into_bytes();
    let layers: Vec<Vec<u8>> = (0..layers)
        .map(|i| {
            let mark = format!("{seed}/{i}:");
            mark.bytes().cycle().take(size).collect()
        })
        .collect();
    let mut blobs = BTreeMap::new();
    for blob in std::iter::once(&config).chain(&layers) {
        blobs.insert(push_blob(&http, &base, repo, blob).await, blob.clone());
    }
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let manifest = image_manifest(&config, &refs);
    put_manifest(&http, &base, repo, tag, OCI_MANIFEST, &manifest).await;
    (manifest, blobs)
}

async fn get(s: &Setup, path: &str) -> reqwest::Response {
    s.cache
        .http
        .get(s.cache.server.url(path))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
}

/// A metric's value in the cache's /metrics (0 when the series is absent).
async fn metric(s: &Setup, series: &str) -> f64 {
    let text = get(s, "/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn pulls_through_both_ways_in_are_byte_identical_and_read_only() {
    let s = setup(Login::Token);
    let (manifest, blobs) = upstream_image(&s, "library/app", "v1", "app", 2, 100_000).await;
    let digest = digest(&manifest);

    // containerd's mirror form, then the path prefix: the same local repository.
    let r = get(&s, &format!("/v2/library/app/manifests/v1?ns={UP}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
    assert_eq!(header(&r, "oci-namespace"), UP);
    assert!(header(&r, "cache-status").contains("fwd=miss"), "{r:?}");
    assert!(r.bytes().await.unwrap() == manifest);
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
    assert_eq!(header(&r, "cache-status"), "berth; hit");
    assert!(r.bytes().await.unwrap() == manifest);
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/{digest}")).await;
    assert!(r.bytes().await.unwrap() == manifest);

    for (i, (d, bytes)) in blobs.iter().enumerate() {
        // Each blob first one way, then the other.
        let (first, second) = (
            format!("/v2/library/app/blobs/{d}?ns={UP}"),
            format!("/v2/{UP}/library/app/blobs/{d}"),
        );
        let (first, second) = if i % 2 == 0 {
            (first, second)
        } else {
            (second, first)
        };
        let r = get(&s, &first).await;
        assert_eq!(r.status(), 200, "{first}");
        assert!(header(&r, "cache-status").contains("miss"));
        assert!(r.bytes().await.unwrap() == bytes.as_slice(), "{first}");
        let r = get(&s, &second).await;
        assert_eq!(header(&r, "cache-status"), "berth; hit");
        assert!(r.bytes().await.unwrap() == bytes.as_slice(), "{second}");
    }
    // Stored under the digests upstream gave, with the bytes it sent.
    let stored = on_disk::blobs(s.cache.root());
    for (d, bytes) in &blobs {
        assert_eq!(stored.get(d), Some(&(bytes.len() as u64)), "{d}");
    }
    assert_eq!(stored.get(&digest), Some(&(manifest.len() as u64)));
    // One challenge (the scheme is remembered), one token for the one scope;
    // the front saw each thing once.
    assert_eq!(s.front.challenges(), 1);
    assert_eq!(s.front.tokens_issued(), 1);
    assert_eq!(s.front.count("GET", "/manifests/v1"), 1);
    for d in blobs.keys() {
        assert_eq!(s.front.count("GET", &format!("/blobs/{d}")), 1, "{d}");
    }
    let catalog = json(get(&s, "/v2/_catalog").await).await;
    assert_eq!(
        catalog["repositories"],
        serde_json::json!([format!("{UP}/library/app")])
    );

    // Read-only: pushes and deletes are refused, whichever way they come.
    let post = |path: String| s.cache.http.post(s.cache.server.url(&path)).send();
    let r = post(format!("/v2/{UP}/library/app/blobs/uploads/"))
        .await
        .unwrap();
    let message = r.text().await.unwrap();
    assert!(
        message.contains("UNSUPPORTED") && message.contains("read-only"),
        "{message}"
    );
    let r = post(format!("/v2/library/app/blobs/uploads/?ns={UP}"))
        .await
        .unwrap();
    expect_error(r, 405, "UNSUPPORTED").await;
    let r = s
        .cache
        .http
        .delete(
            s.cache
                .server
                .url(&format!("/v2/{UP}/library/app/manifests/{digest}")),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "UNSUPPORTED").await;
    // An ns naming no upstream is ignored: the repository is the local one.
    let r = get(&s, "/v2/library/app/manifests/v1?ns=elsewhere.test").await;
    expect_error(r, 404, "NAME_UNKNOWN").await;
    // What upstream does not have is not found, and says where it looked.
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v9")).await;
    let text = r.text().await.unwrap();
    assert!(
        text.contains("MANIFEST_UNKNOWN") && text.contains(UP),
        "{text}"
    );
    let missing = digest_of_nothing();
    let r = get(&s, &format!("/v2/{UP}/library/app/blobs/{missing}")).await;
    expect_error(r, 404, "BLOB_UNKNOWN").await;
    // Tokens live 300 s: no other token was asked for.
    assert_eq!(s.front.tokens_issued(), 1);

    // The access log marks the cache's answers (each line is written once its
    // body is done, so it may come a moment after the response).
    let logged = |mark: &str| {
        let log = s.cache.server.log.lock().unwrap();
        log.iter()
            .any(|l| l.contains("berth::access") && l.contains("/manifests/v1") && l.contains(mark))
    };
    let (miss, hit) = ("cache=\"miss\"", "cache=\"hit\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(logged(miss) && logged(hit)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        logged(miss) && logged(hit),
        "{:?}",
        s.cache.server.log.lock().unwrap()
    );
}

/// Waits until the cache has asked upstream for `n` referrers lists since
/// the log was last cleared (a tag it fetched has its referrers asked for in
/// the background).
async fn referrers_asked(s: &Setup, n: usize) {
    let asked = || {
        let requests = s.front.requests();
        requests
            .iter()
            .filter(|(m, p)| m == "GET" && p.contains("/referrers/"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while asked() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(asked() >= n, "{:?}", s.front.requests());
}

fn digest_of_nothing() -> String {
    digest(b"bytes nobody pushed")
}

#[tokio::test]
async fn changed_credentials_are_read_again_without_a_restart() {
    for login in [Login::Basic, Login::Token] {
        let s = setup(login);
        let (first, _) = upstream_image(&s, "team/one", "v1", "one", 1, 100).await;
        let (second, _) = upstream_image(&s, "team/two", "v1", "two", 1, 100).await;
        let r = get(&s, &format!("/v2/{UP}/team/one/manifests/v1")).await;
        assert!(r.bytes().await.unwrap() == first, "{login:?}");

        // Upstream now takes another password, and the cache's file has it
        // (as the kubelet updates a mounted Secret). A second past the last
        // read, upstream's refusal makes the cache read the file again.
        s.front.set_password("rotated");
        let file = s.config.path().join("upstream.yaml");
        std::fs::write(
            &file,
            format!("username: {}\npassword: rotated\n", front::USER),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = get(&s, &format!("/v2/{UP}/team/two/manifests/v1")).await;
        assert_eq!(r.status(), 200, "{login:?}");
        assert!(r.bytes().await.unwrap() == second, "{login:?}");

        // Credentials upstream refuses are a 403 that says so, not a 502.
        s.front.set_password("rotated-again");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (_, _) = upstream_image(&s, "team/three", "v1", "three", 1, 100).await;
        let r = get(&s, &format!("/v2/{UP}/team/three/manifests/v1")).await;
        expect_error(r, 403, "DENIED").await;
        // And the upstream's state says so, token server included.
        let upstream = status_of_upstream(&s).await;
        assert_eq!(upstream["state"], "Failing", "{login:?} {upstream}");
        assert!(
            upstream["lastError"].as_str().unwrap().contains("401"),
            "{upstream}"
        );
    }
}

#[tokio::test]
async fn credentials_go_only_where_the_upstream_itself_asks() {
    // A host that upstream redirects blobs to, which asks for a login at a
    // token server of its own, and notes every Authorization it is sent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = format!("http://{}", listener.local_addr().unwrap());
    let routes = {
        let (seen, elsewhere) = (seen.clone(), elsewhere.clone());
        warp::any()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("authorization"))
            .map(
                move |path: warp::path::FullPath, authorization: Option<String>| {
                    seen.lock()
                        .unwrap()
                        .push(format!("{} {authorization:?}", path.as_str()));
                    let challenge =
                        format!(r#"Bearer realm="{elsewhere}/token",service="elsewhere""#);
                    warp::reply::with_header(
                        warp::reply::with_status("", warp::http::StatusCode::UNAUTHORIZED),
                        "www-authenticate",
                        challenge,
                    )
                },
            )
    };
    tokio::spawn(warp::serve(routes).incoming(listener).run());

    let s = setup(Login::Token);
    let (manifest, blobs) = upstream_image(&s, "team/app", "v1", "redirected", 1, 1000).await;
    let r = get(&s, &format!("/v2/{UP}/team/app/manifests/v1")).await;
    assert!(r.bytes().await.unwrap() == manifest);
    s.front.redirect_blobs(&elsewhere);
    let layer = blobs.keys().next().unwrap();
    let r = get(&s, &format!("/v2/{UP}/team/app/blobs/{layer}")).await;
    assert_ne!(r.status(), 200);
    // The redirect was followed, without credentials, and its challenge was
    // not taken up: no token was asked of the other host's server.
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the redirect was not followed");
    assert!(
        seen.iter()
            .all(|line| line.ends_with("None") && !line.starts_with("/token")),
        "{seen:?}"
    );
    // And the upstream's own login still works: its scheme was kept.
    let r = get(
        &s,
        &format!("/v2/{UP}/team/app/manifests/{}", digest(&manifest)),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.front.tokens_issued(), 1);
}

#[tokio::test]
async fn basic_and_anonymous_upstreams_are_pulled_from_too() {
    for login in [Login::Basic, Login::Anonymous] {
        let s = setup(login);
        let (manifest, blobs) = upstream_image(&s, "team/tool", "1.0", "tool", 1, 5000).await;
        let r = get(&s, &format!("/v2/team/tool/manifests/1.0?ns={UP}")).await;
        assert_eq!(r.status(), 200, "{login:?}");
        assert!(r.bytes().await.unwrap() == manifest);
        for (d, bytes) in &blobs {
            let r = get(&s, &format!("/v2/{UP}/team/tool/blobs/{d}")).await;
            assert!(r.bytes().await.unwrap() == bytes.as_slice(), "{login:?}");
        }
        assert_eq!(s.front.tokens_issued(), 0);
    }
}

#[tokio::test]
async fn fifty_concurrent_pulls_ask_upstream_once_per_manifest_and_blob() {
    let s = setup(Login::Token);
    let (manifest, blobs) = upstream_image(&s, "library/big", "v1", "big", 3, 2 << 20).await;
    // Slow enough that the pulls overlap, so most of them wait on another's fetch.
    s.front.set_delay(Duration::from_millis(400));
    let pulls = (0..50).map(|i| {
        let http = s.cache.http.clone();
        let base = s.cache.base();
        let blobs = blobs.clone();
        let manifest = manifest.clone();
        async move {
            let path = if i % 2 == 0 {
                format!("{base}/v2/library/big/manifests/v1?ns={UP}")
            } else {
                format!("{base}/v2/{UP}/library/big/manifests/v1")
            };
            let r = http
                .get(path)
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.bytes().await.unwrap() == manifest);
            for (d, bytes) in &blobs {
                let r = http
                    .get(format!("{base}/v2/{UP}/library/big/blobs/{d}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(digest(&r.bytes().await.unwrap()), *d);
                assert_eq!(bytes.len(), bytes.len());
            }
        }
    });
    futures_util::future::join_all(pulls).await;

    assert_eq!(
        s.front.count("GET", "/manifests/v1"),
        1,
        "{:?}",
        s.front.requests()
    );
    for d in blobs.keys() {
        assert_eq!(s.front.count("GET", &format!("/blobs/{d}")), 1, "{d}");
    }
    assert_eq!((s.front.challenges(), s.front.tokens_issued()), (1, 1));
    // The upstream registry's own count agrees: a GET per blob (the config
    // and three layers), one manifest GET.
    let text = s
        .upstream
        .http
        .get(s.upstream.server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |route: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("berth_http_requests_total{") && l.contains("method=\"GET\""))
            .filter(|l| l.contains(&format!("route=\"{route}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        count("/v2/<name>/blobs/<digest>"),
        blobs.len() as f64,
        "{text}"
    );
    assert_eq!(count("/v2/<name>/manifests/<reference>"), 1.0, "{text}");
    // Most pulls waited on a fetch someone else started.
    let coalesced = metric(&s, "berth_proxy_coalesced_total").await;
    assert!(coalesced >= 49.0, "coalesced {coalesced}");
}

#[tokio::test]
async fn cached_content_is_served_stale_while_upstream_fails() {
    let mut s = setup(Login::Token);
    let (manifest, blobs) = upstream_image(&s, "library/app", "v1", "stale", 1, 1000).await;
    upstream_image(&s, "library/app", "v2", "never-pulled", 1, 1000).await;
    let digest = digest(&manifest);
    assert_eq!(
        get(&s, &format!("/v2/{UP}/library/app/manifests/v1"))
            .await
            .status(),
        200
    );
    for d in blobs.keys() {
        assert_eq!(
            get(&s, &format!("/v2/{UP}/library/app/blobs/{d}"))
                .await
                .status(),
            200
        );
    }
    let upstream = status_of_upstream(&s).await;
    assert_eq!(upstream["state"], "Ok", "{upstream}");
    assert!(upstream["lastContact"].is_string() && upstream["lastError"].is_null());

    for (fault, code, error) in [
        (Fault::Status(429), 429, "TOOMANYREQUESTS"),
        (Fault::Status(500), 502, "UNKNOWN"),
    ] {
        s.front.set_fault(fault);
        tokio::time::sleep(TTL + Duration::from_millis(200)).await;
        let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
        assert_eq!(r.status(), 200, "{fault:?}");
        let status = header(&r, "cache-status");
        assert!(
            status.contains("stale") && status.contains(&fault_status(fault)),
            "{status}"
        );
        assert!(r.bytes().await.unwrap() == manifest);
        // What was never cached fails, with upstream's reason.
        let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v2")).await;
        expect_error(r, code, error).await;
        // The admin API (and so the Registry's status) says so.
        let upstream = status_of_upstream(&s).await;
        assert_eq!(upstream["state"], "Failing", "{upstream}");
        let why = upstream["lastError"].as_str().unwrap();
        assert!(why.contains(&fault_status(fault)), "{why}");
    }

    s.front.stop();
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let r = get(&s, &format!("/v2/library/app/manifests/v1?ns={UP}")).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "cache-status").contains("unreachable"));
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/{digest}")).await;
    assert_eq!(
        header(&r, "cache-status"),
        "berth; hit",
        "a digest never goes upstream"
    );
    for (d, bytes) in &blobs {
        let r = get(&s, &format!("/v2/{UP}/library/app/blobs/{d}")).await;
        assert!(r.bytes().await.unwrap() == bytes.as_slice());
    }
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v2")).await;
    let text = r.text().await.unwrap();
    assert!(text.contains("unreachable"), "{text}");
    let stale = metric(
        &s,
        "berth_proxy_served_total{upstream=\"upstream.test\",kind=\"manifest\",result=\"stale\"}",
    )
    .await;
    assert_eq!(stale, 3.0);
    let upstream = status_of_upstream(&s).await;
    assert_eq!(upstream["state"], "Failing", "{upstream}");
    assert!(
        upstream["lastError"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    assert!(
        upstream["lastErrorTime"].as_str().unwrap() >= upstream["lastContact"].as_str().unwrap()
    );
}

/// The one upstream, as `GET /berth/v1/proxy` reports it.
async fn status_of_upstream(s: &Setup) -> serde_json::Value {
    let r = s
        .cache
        .http
        .get(s.cache.server.url("/berth/v1/proxy"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["upstreams"][0]["name"], UP, "{body}");
    assert_eq!(
        body["upstreams"][0]["url"],
        s.front.url().trim_end_matches('/')
    );
    body["upstreams"][0].clone()
}

fn fault_status(fault: Fault) -> String {
    match fault {
        Fault::Status(code) => code.to_string(),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_cut_or_corrupt_transfer_stores_nothing_and_fails_every_waiter() {
    let s = setup(Login::Anonymous);
    let (_, blobs) = upstream_image(&s, "library/app", "v1", "faulty", 1, 3 << 20).await;
    let (layer, bytes) = blobs.iter().max_by_key(|(_, b)| b.len()).unwrap();
    s.front.set_delay(Duration::from_millis(300));
    for fault in [Fault::CutBlobs, Fault::CorruptBlobs, Fault::EmptyBlobs] {
        s.front.set_fault(fault);
        s.front.clear_log();
        let s = &s;
        let waiters = (0..5).map(|i| async move {
            let path = format!("/v2/{UP}/library/app/blobs/{layer}");
            let r = if i == 4 {
                // A range, too, must not arrive whole before the blob is verified.
                let url = s.cache.server.url(&path);
                s.cache
                    .http
                    .get(url)
                    .header("range", "bytes=0-9")
                    .send()
                    .await
                    .unwrap()
            } else {
                get(s, &path).await
            };
            if fault == Fault::EmptyBlobs || i == 4 {
                // Nothing was streamed yet: a plain error says what went wrong.
                expect_error(r, 502, "UNKNOWN").await;
                return;
            }
            // The 200 went out with the first bytes; the body must not end whole.
            assert_eq!(r.status(), 200);
            let body = r.bytes().await;
            assert!(body.is_err(), "{fault:?}: a body ended whole");
        });
        futures_util::future::join_all(waiters).await;
        assert_eq!(
            s.front.count("GET", &format!("/blobs/{layer}")),
            1,
            "{fault:?}"
        );
        assert!(
            !on_disk::blobs(s.cache.root()).contains_key(layer),
            "{fault:?}"
        );
        let staged = on_disk::files_under(&s.cache.root().join("tmp"));
        assert!(staged.is_empty(), "{fault:?}: {staged:?}");
    }
    // Once upstream is sound, the next pull fetches it whole; a HEAD before
    // says its size, and a range is served from the verified blob.
    s.front.set_fault(Fault::None);
    let url = s
        .cache
        .server
        .url(&format!("/v2/{UP}/library/app/blobs/{layer}"));
    let r = s.cache.http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), bytes.len().to_string());
    let r = s
        .cache
        .http
        .get(&url)
        .header("range", "bytes=5-14")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap() == bytes[5..15]);
    let r = get(&s, &format!("/v2/{UP}/library/app/blobs/{layer}")).await;
    assert!(r.bytes().await.unwrap() == bytes.as_slice());
    assert!(on_disk::blobs(s.cache.root()).contains_key(layer));
}

#[tokio::test]
async fn a_moved_tag_is_seen_after_the_ttl_and_digests_never_go_upstream() {
    let s = setup(Login::Token);
    let (first, _) = upstream_image(&s, "library/app", "v1", "first", 1, 100).await;
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
    assert!(r.bytes().await.unwrap() == first);
    referrers_asked(&s, 1).await;
    let (second, _) = upstream_image(&s, "library/app", "v1", "second", 1, 100).await;
    s.front.clear_log();

    // Within the TTL: the cached tag, and upstream is not asked.
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
    assert!(r.bytes().await.unwrap() == first);
    assert!(s.front.requests().is_empty(), "{:?}", s.front.requests());

    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
    assert!(header(&r, "cache-status").contains("miss"));
    assert!(r.bytes().await.unwrap() == second);
    assert_eq!(s.front.count("HEAD", "/manifests/v1"), 1);
    assert_eq!(s.front.count("GET", "/manifests/v1"), 1);
    // The new digest's referrers, asked in the background.
    referrers_asked(&s, 1).await;

    // Past the TTL again with nothing moved: one HEAD, no GET.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    s.front.clear_log();
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
    assert_eq!(header(&r, "cache-status"), "berth; hit");
    assert_eq!(s.front.requests().len(), 1, "{:?}", s.front.requests());
    assert_eq!(s.front.count("HEAD", "/manifests/v1"), 1);

    // Both digests are cached: asking for them goes nowhere.
    s.front.clear_log();
    for manifest in [&first, &second] {
        let r = get(
            &s,
            &format!("/v2/{UP}/library/app/manifests/{}", digest(manifest)),
        )
        .await;
        assert!(r.bytes().await.unwrap() == manifest.as_slice());
    }
    assert!(s.front.requests().is_empty(), "{:?}", s.front.requests());
}

#[test]
fn skopeo_copies_an_image_through_the_cache() {
    if !need("skopeo_copies_an_image_through_the_cache", &["skopeo"]) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s = setup(Login::Token);
    let (manifest, blobs) =
        runtime.block_on(upstream_image(&s, "library/app", "v1", "skopeo", 2, 50_000));
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("image");
    let status = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!(
            "docker://{}/{UP}/library/app:v1",
            s.cache.server.addr()
        ))
        .arg(format!("dir:{}", target.display()))
        .status()
        .unwrap();
    assert!(status.success());
    // skopeo's dir: holds the manifest as pulled and each blob under its hex.
    assert!(std::fs::read(target.join("manifest.json")).unwrap() == manifest);
    for (d, bytes) in &blobs {
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(std::fs::read(target.join(hex)).unwrap() == *bytes, "{d}");
    }
    drop(runtime);
}

#[tokio::test]
async fn referrers_are_cached_and_listed_when_upstream_is_gone() {
    let mut s = setup(Login::Token);
    let (manifest, _) = upstream_image(&s, "library/app", "v1", "signed", 1, 1000).await;
    let subject = digest(&manifest);
    // A signature upstream: an artifact whose subject is the image.
    let (http, base) = s.upstream.client();
    let empty = b"{}";
    let signature = b"a signature of the image";
    push_blob(&http, &base, "library/app", empty).await;
    push_blob(&http, &base, "library/app", signature).await;
    let artifact = "application/vnd.example.signature";
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact,
        "config": descriptor("application/vnd.oci.empty.v1+json", empty),
        "layers": [descriptor("application/octet-stream", signature)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": manifest.len()},
    }))
    .unwrap();
    let referrer_digest = digest(&referrer);
    put_manifest(
        &http,
        &base,
        "library/app",
        &referrer_digest,
        OCI_MANIFEST,
        &referrer,
    )
    .await;

    // Pulled by tag, the image brings its referrers: asked in the background.
    let r = get(&s, &format!("/v2/{UP}/library/app/manifests/v1")).await;
    assert!(r.bytes().await.unwrap() == manifest);
    referrers_asked(&s, 1).await;
    // (Each referrer manifest is fetched before the list is done with.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let fetched = || {
        s.front
            .count("GET", &format!("/manifests/{referrer_digest}"))
            == 1
    };
    while !fetched() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fetched(), "{:?}", s.front.requests());
    // The signature is cached with it: pulled by digest, upstream is not asked;
    // and so is the list.
    s.front.clear_log();
    let r = get(
        &s,
        &format!("/v2/{UP}/library/app/manifests/{referrer_digest}"),
    )
    .await;
    assert_eq!(header(&r, "cache-status"), "berth; hit");
    assert!(r.bytes().await.unwrap() == referrer);
    let list = |query: &str| format!("/v2/{UP}/library/app/referrers/{subject}{query}");
    let r = get(&s, &list("")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-status"), "berth; hit");
    let index = json(r).await;
    assert_eq!(
        index["manifests"][0]["digest"],
        referrer_digest.as_str(),
        "{index}"
    );
    assert_eq!(index["manifests"][0]["artifactType"], artifact);
    // Within the TTL the list is the cache's, filters included.
    let r = get(&s, &list("?artifactType=application/vnd.example.signature")).await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    assert_eq!(json(r).await["manifests"].as_array().unwrap().len(), 1);
    assert!(s.front.requests().is_empty(), "{:?}", s.front.requests());

    // Past the TTL, twenty clients at once: upstream is asked once, and
    // every one gets the list.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    s.front.set_delay(Duration::from_millis(300));
    let lists = (0..20).map(|_| async {
        let r = get(&s, &list("")).await;
        assert_eq!(r.status(), 200);
        json(r).await["manifests"][0]["digest"].clone()
    });
    for listed in futures_util::future::join_all(lists).await {
        assert_eq!(listed, referrer_digest.as_str());
    }
    assert_eq!(s.front.count("GET", &format!("/referrers/{subject}")), 1);
    s.front.set_delay(Duration::ZERO);

    s.front.stop();
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let r = get(&s, &list("")).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "cache-status").contains("stale"));
    assert_eq!(
        json(r).await["manifests"][0]["digest"],
        referrer_digest.as_str()
    );
}

/// Pulls `repo:v1` through the cache, manifest and every blob, as a client does.
async fn pull(s: &Setup, repo: &str, blobs: &BTreeMap<String, Vec<u8>>) {
    let r = get(s, &format!("/v2/{UP}/{repo}/manifests/v1")).await;
    assert_eq!(r.status(), 200, "{repo}");
    for (d, bytes) in blobs {
        let r = get(s, &format!("/v2/{UP}/{repo}/blobs/{d}")).await;
        assert!(r.bytes().await.unwrap() == bytes.as_slice(), "{repo} {d}");
    }
}

/// Whether the cache still holds `repo:v1` (asked of the tags list, which
/// is served from the store and never goes upstream).
async fn cached(s: &Setup, repo: &str) -> bool {
    let r = get(s, &format!("/v2/{UP}/{repo}/tags/list")).await;
    r.status() == 200 && json(r).await["tags"] == serde_json::json!(["v1"])
}

#[tokio::test]
async fn a_capped_cache_evicts_the_least_recently_pulled_and_never_a_protected_image() {
    // Room for two images of ~100 kB; one pulled within 3 s is protected.
    let keep = Duration::from_secs(3);
    let s = setup_with(
        Login::Token,
        &format!("    maxSize: 250000\n    keepPulled: {}s\n", keep.as_secs()),
    );
    let mut images = BTreeMap::new();
    for name in ["a", "b", "c", "d"] {
        let repo = format!("team/{name}");
        let (_, blobs) = upstream_image(&s, &repo, "v1", name, 1, 100_000).await;
        images.insert(name, (repo, blobs));
    }
    let layer = |name: &str| {
        let blobs = &images[name].1;
        blobs
            .iter()
            .find(|(_, b)| b.len() == 100_000)
            .unwrap()
            .0
            .clone()
    };
    let collect = || async {
        let r = s
            .cache
            .http
            .post(s.cache.server.url("/berth/v1/gc?grace=0s"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        json(r).await
    };

    pull(&s, &images["a"].0, &images["a"].1).await;
    pull(&s, &images["b"].0, &images["b"].1).await;
    tokio::time::sleep(keep + Duration::from_millis(800)).await;
    // a pulled again: b is now the least recently pulled, and the only one
    // out of the protected window once c comes.
    pull(&s, &images["a"].0, &images["a"].1).await;
    pull(&s, &images["c"].0, &images["c"].1).await;
    let report = collect().await;
    let cache = &report["caches"][0];
    assert_eq!(cache["upstream"], UP, "{report}");
    assert_eq!(cache["imagesEvicted"], 1, "{report}");
    assert!(
        cache["bytesEvicted"].as_u64().unwrap() > 100_000,
        "{report}"
    );
    assert!(cache["bytes"].as_u64().unwrap() <= 250_000, "{report}");
    assert!(!cached(&s, "team/b").await);
    assert!(cached(&s, "team/a").await && cached(&s, "team/c").await);
    // Its blobs are swept with it (grace 0s); the others' stay.
    let stored = on_disk::blobs(s.cache.root());
    assert!(!stored.contains_key(&layer("b")));
    assert!(stored.contains_key(&layer("a")) && stored.contains_key(&layer("c")));

    // Over the cap again with d, but everything was pulled within the window:
    // nothing goes, whatever the cap says.
    pull(&s, &images["d"].0, &images["d"].1).await;
    let report = collect().await;
    let cache = &report["caches"][0];
    assert_eq!(cache["imagesEvicted"], 0, "{report}");
    assert!(cache["bytes"].as_u64().unwrap() > 250_000, "{report}");
    for name in ["a", "c", "d"] {
        assert!(cached(&s, &format!("team/{name}")).await, "{name}");
    }

    // Once the window has passed, the registry evicts by itself (the
    // fetches since its last run woke it): a, the least recently pulled.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cached(&s, "team/a").await && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!cached(&s, "team/a").await, "nothing was evicted by itself");
    assert!(cached(&s, "team/c").await && cached(&s, "team/d").await);
    assert_eq!(
        metric(&s, "berth_proxy_evicted_images_total").await,
        2.0,
        "{}",
        get(&s, "/metrics").await.text().await.unwrap()
    );
    assert!(metric(&s, "berth_proxy_cache_bytes").await <= 250_000.0);
    let upstream = status_of_upstream(&s).await;
    assert_eq!(upstream["maxSize"], 250_000, "{upstream}");
    assert!(
        upstream["cacheBytes"].as_u64().unwrap() <= 250_000,
        "{upstream}"
    );

    // An evicted image is fetched again when pulled.
    s.front.clear_log();
    pull(&s, &images["b"].0, &images["b"].1).await;
    assert_eq!(s.front.count("GET", "/manifests/v1"), 1);
    assert_eq!(s.front.count("GET", &format!("/blobs/{}", layer("b"))), 1);
}
