//! The web UI in a real browser (headless chromium through chromedriver):
//! pages show what was pushed, the search filters, each user sees and may
//! delete only what their rights allow, a delete asks first and then
//! deletes, and pages fit a phone and answer the keyboard. Screenshots of
//! each page go under the CI's artifacts folder (common/browser.rs).

mod common;

use common::Server;
use common::api::*;
use common::browser::{self, Browser};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::json;
use std::time::{Duration, Instant};

/// alice may do anything anywhere; bob may only pull from team/*.
const ACCESS: &str = r#"
access:
  - repository: "*"
    users: [alice]
    rights: [pull, push, delete]
  - repository: "team/*"
    users: [bob]
    rights: [pull]
"#;

const ADMIN_TOKEN: &str = "admin-s3cret";

fn bcrypt_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_result(password, 4).unwrap();
    format!(
        "{user}:{}\n",
        hash.format_for_version(bcrypt::Version::TwoY)
    )
}

/// A registry with users and rights, holding a few images, and what was pushed.
struct Registry {
    server: Server,
    dir: tempfile::TempDir,
    /// Digests of team/app:v1, team/app:v2 and team/multi:latest.
    v1: String,
    v2: String,
    multi: String,
    /// The certificate to trust (PEM), when it serves HTTPS.
    ca: Option<Vec<u8>>,
}

impl Registry {
    /// `http://user:password@127.0.0.1:PORT` + `path`: the browser keeps the
    /// credentials for the rest of the session, as after a login prompt.
    fn url_as(&self, user: &str, path: &str) -> String {
        self.server
            .url(path)
            .replacen("://", &format!("://{user}:{user}-pw@"), 1)
    }

    fn client_as(&self, user: &str) -> reqwest::Client {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Basic {token}").parse().unwrap());
        let builder = match &self.ca {
            Some(pem) => trusting(pem),
            None => builder(),
        };
        builder.default_headers(headers).build().unwrap()
    }

    async fn start() -> Registry {
        Registry::start_with(|_| Vec::new()).await
    }

    /// With more `berth serve` arguments, made in the test's folder.
    async fn start_with(extra: impl FnOnce(&std::path::Path) -> Vec<String>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let users = bcrypt_line("alice", "alice-pw") + &bcrypt_line("bob", "bob-pw");
        std::fs::write(dir.path().join("htpasswd"), users).unwrap();
        std::fs::write(dir.path().join("access.yaml"), ACCESS).unwrap();
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let mut args = vec![
            "--htpasswd".to_owned(),
            path("htpasswd"),
            "--access".to_owned(),
            path("access.yaml"),
            "--pull-name".to_owned(),
            "registry.example:5000".to_owned(),
            "--admin-token-file".to_owned(),
            path("admin-token"),
        ];
        args.extend(extra(dir.path()));
        let ca = args
            .iter()
            .position(|a| a == "--tls-cert")
            .map(|i| std::fs::read(&args[i + 1]).unwrap());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_with(&dir.path().join("data"), &args);
        let mut registry = Registry {
            server,
            dir,
            v1: String::new(),
            v2: String::new(),
            multi: String::new(),
            ca,
        };
        registry.seed().await;
        registry
    }

    /// Pushes an image whose config says how it runs; returns its manifest's digest.
    async fn push(&self, repo: &str, reference: &str, arch: &str, layers: &[&str]) -> String {
        let (http, base) = (self.client_as("alice"), self.server.url(""));
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "created": "2026-11-30T10:00:00Z",
            "config": {
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve", repo],
                "Env": ["PATH=/usr/bin", "APP_MODE=production"],
                "Labels": { "org.opencontainers.image.source": "https://example.com/app" },
                "WorkingDir": "/srv"
            },
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [{ "created_by": "COPY app /bin/app" }]
        }))
        .unwrap();
        push_blob(&http, &base, repo, &config).await;
        let mut blobs = Vec::new();
        for layer in layers {
            let bytes = layer.repeat(1000).into_bytes();
            push_blob(&http, &base, repo, &bytes).await;
            blobs.push(bytes);
        }
        let layers: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let manifest = image_manifest(&config, &layers);
        put_manifest(&http, &base, repo, reference, OCI_MANIFEST, &manifest).await;
        digest(&manifest)
    }

    /// The API's answer to alice's GET of the manifest `repo:reference`.
    async fn manifest(&self, repo: &str, reference: &str) -> reqwest::Response {
        self.client_as("alice")
            .get(
                self.server
                    .url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap()
    }

    /// The size of the config of `repo:tag`.
    async fn config_size(&self, repo: &str, tag: &str) -> u64 {
        let manifest = json(self.manifest(repo, tag).await).await;
        manifest["config"]["size"].as_u64().unwrap()
    }

    async fn seed(&mut self) {
        let (http, base) = (self.client_as("alice"), self.server.url(""));
        self.v1 = self.push("team/app", "v1", "amd64", &["one", "two"]).await;
        self.v2 = self
            .push("team/app", "v2", "amd64", &["one", "three"])
            .await;
        self.push("other/secret", "v1", "amd64", &["secret"]).await;
        let amd64 = self.push("team/multi", "amd64", "amd64", &["m1"]).await;
        let arm64 = self.push("team/multi", "arm64", "arm64", &["m2"]).await;
        let entry = |digest: &str, arch: &str| {
            json!({ "mediaType": OCI_MANIFEST, "digest": digest, "size": 400,
                    "platform": { "os": "linux", "architecture": arch } })
        };
        // Sizes in an index must be the children's; read them back.
        let mut entries = Vec::new();
        for (digest, arch) in [(&amd64, "amd64"), (&arm64, "arm64")] {
            let r = self.manifest("team/multi", digest).await;
            let size = r.bytes().await.unwrap().len();
            let mut e = entry(digest, arch);
            e["size"] = json!(size);
            entries.push(e);
        }
        let index = serde_json::to_vec(
            &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries }),
        )
        .unwrap();
        put_manifest(&http, &base, "team/multi", "latest", OCI_INDEX, &index).await;
        self.multi = digest(&index);
        // A signature of team/app:v1, as cosign or notation push one.
        let empty = b"{}";
        push_blob(&http, &base, "team/app", empty).await;
        let signature = b"signature bytes".to_vec();
        push_blob(&http, &base, "team/app", &signature).await;
        let v1_size = self
            .manifest("team/app", "v1")
            .await
            .bytes()
            .await
            .unwrap()
            .len();
        let referrer = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature.v1",
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(empty), "size": 2 },
            "layers": [descriptor("application/vnd.example.signature.v1", &signature)],
            "subject": { "mediaType": OCI_MANIFEST, "digest": self.v1, "size": v1_size },
            "annotations": { "org.opencontainers.image.created": "2026-11-30T11:00:00Z" }
        }))
        .unwrap();
        put_manifest(
            &http,
            &base,
            "team/app",
            &digest(&referrer),
            OCI_MANIFEST,
            &referrer,
        )
        .await;
    }
}

/// A client that trusts only the certificate `pem` (berth's builder brings
/// its own TLS configuration, which takes no extra roots).
fn trusting(pem: &[u8]) -> reqwest::ClientBuilder {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
}

/// Every text of the page whose colour and background contrast less than
/// WCAG's AA ratio of 4.5:1, as the browser computed them.
async fn low_contrast(client: &Client) -> serde_json::Value {
    script(
        client,
        r#"
        const channels = c => c.match(/[\d.]+/g).map(Number);
        const luminance = c => {
            const [r, g, b] = channels(c).slice(0, 3).map(v => v / 255)
                .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
            return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const background = e => {
            for (; e; e = e.parentElement) {
                const c = getComputedStyle(e).backgroundColor;
                const a = channels(c);
                if (a.length < 4 || a[3] > 0.5) return c;
            }
            return "rgb(255, 255, 255)";
        };
        const low = [];
        for (const e of document.querySelectorAll("body *")) {
            const text = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
            if (!text || !e.getClientRects().length) continue;
            const [a, b] = [luminance(getComputedStyle(e).color), luminance(background(e))];
            const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
            if (ratio < 4.5) low.push(`${e.tagName} "${e.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
        }
        return low;
        "#,
    )
    .await
}

/// The body of a GET of `url`, as served (no script has run on it).
async fn body_of(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The texts of every element `css` finds, read in one script (the live
/// search may swap the elements between two WebDriver calls).
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let found = client
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim())",
            vec![json!(css)],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Clicks what `locator` finds and waits for the page it leads to: a click
/// that submits a form returns before the browser has left the page.
async fn follow(client: &Client, locator: Locator<'_>) {
    script(client, "window.berthOldPage = true; return null").await;
    client.find(locator).await.unwrap().click().await.unwrap();
    let started = Instant::now();
    while script(
        client,
        "return !window.berthOldPage && document.readyState === 'complete'",
    )
    .await
        != json!(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the click led nowhere"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until `check` holds of the texts `css` finds (the live search
/// answers after a pause and a fetch).
async fn wait_for_texts(client: &Client, css: &str, check: impl Fn(&[String]) -> bool) {
    let started = Instant::now();
    loop {
        let found = texts(client, css).await;
        if check(&found) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{css}: still {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn script(client: &Client, code: &str) -> serde_json::Value {
    client.execute(code, vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_show_what_is_stored() {
    let Some(chrome) = Browser::start("pages_show_what_is_stored") else {
        return;
    };
    // Two days of history, as the registry writes it; it adds a sample as
    // it starts (and none for ten minutes after).
    let registry = Registry::start_with(|dir| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let history = json!([
            { "at": now - 2 * 86400, "bytes": 1024, "blobs": 1 },
            { "at": now - 86400, "bytes": 5120, "blobs": 3 },
        ]);
        std::fs::create_dir_all(dir.join("data/_stats")).unwrap();
        std::fs::write(dir.join("data/_stats/usage.json"), history.to_string()).unwrap();
        Vec::new()
    })
    .await;
    let browser = chrome.session(1280, 900).await;

    browser.goto(&registry.url_as("alice", "/")).await.unwrap();
    assert_eq!(
        texts(&browser, "tbody th a").await,
        ["other/secret", "team/app", "team/multi"]
    );
    let app_row = texts(&browser, "tbody tr:nth-child(2) td").await;
    assert_eq!(app_row[0], "2", "team/app has two tags: {app_row:?}");
    // v1 and v2 share their config and the layer "one": each counts once.
    let config = registry.config_size("team/app", "v1").await;
    let layers = 3 * 1000 + 3 * 1000 + 5 * 1000;
    let size = browser
        .find(Locator::Css(
            "tbody tr:nth-child(2) td[data-label=Size] span",
        ))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap();
    assert_eq!(size, Some(format!("{} bytes", config + layers)));
    browser::screenshot(&browser, "repositories").await;

    follow(&browser, Locator::LinkText("team/multi")).await;
    assert_eq!(text(&browser, "h1").await, "team/multi");
    // The index's row lists its images' platforms (tags sort: amd64, arm64, latest).
    assert_eq!(
        texts(&browser, "tbody tr:nth-child(3) th").await,
        ["latest"]
    );
    assert_eq!(
        texts(
            &browser,
            "tbody tr:nth-child(3) td[data-label=Platforms] li"
        )
        .await,
        ["linux/amd64", "linux/arm64"]
    );
    browser::screenshot(&browser, "tags").await;

    browser
        .goto(&registry.server.url("/r/team/app"))
        .await
        .unwrap();
    assert_eq!(texts(&browser, "tbody th a").await, ["v1", "v2"]);
    let title = browser
        .find(Locator::Css(
            "tbody tr:first-child td[data-label=Digest] code",
        ))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap();
    assert_eq!(title.as_deref(), Some(registry.v1.as_str()));

    follow(&browser, Locator::LinkText("v1")).await;
    assert_eq!(text(&browser, "h1").await, "team/app:v1");
    let facts = text(&browser, "#config + dl").await;
    for expected in ["/bin/app", "--serve team/app", "/srv", "linux/amd64"] {
        assert!(facts.contains(expected), "{expected} in {facts}");
    }
    let env = texts(&browser, "#env tbody tr").await;
    assert!(env.iter().any(|r| r == "APP_MODE\tproduction"), "{env:?}");
    assert_eq!(text(&browser, "#layers").await, "Layers (2)");
    let referrers = texts(
        &browser,
        "#referrers + table tbody td, #referrers + table tbody th",
    )
    .await;
    assert!(
        referrers
            .iter()
            .any(|t| t == "application/vnd.example.signature.v1"),
        "{referrers:?}"
    );
    let commands = texts(&browser, "ul.commands code").await;
    let host = registry.server.addr();
    for expected in [
        "docker pull registry.example:5000/team/app:v1".to_owned(),
        format!("docker pull {host}/team/app:v1"),
        format!("docker pull {host}/team/app@{}", registry.v1),
    ] {
        assert!(commands.contains(&expected), "{expected} in {commands:?}");
    }
    // The script shows the copy buttons, which copy (or, without a
    // clipboard, select) their command.
    let copy = browser.find(Locator::Css("button.copy")).await.unwrap();
    assert!(copy.is_displayed().await.unwrap());
    copy.click().await.unwrap();
    wait_for_texts(&browser, "button.copy", |said| {
        said.first()
            .is_some_and(|s| s == "Copied" || s == "Selected")
    })
    .await;
    browser::screenshot(&browser, "image").await;

    browser
        .goto(&registry.server.url("/r/team/multi/-/latest"))
        .await
        .unwrap();
    assert_eq!(
        texts(&browser, "#platforms + table tbody th").await,
        ["linux/amd64", "linux/arm64"]
    );

    // A collection that frees one unreferenced blob.
    let content = registry.server.content(&registry.dir.path().join("data"));
    let alice = registry.client_as("alice");
    push_blob(
        &alice,
        &registry.server.url(""),
        "team/app",
        &b"orphan".repeat(100),
    )
    .await;
    let r = client()
        .post(registry.server.url("/berth/v1/gc?grace=0s"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    browser
        .goto(&registry.server.url("/overview"))
        .await
        .unwrap();
    assert_eq!(text(&browser, "#repositories").await, "3");
    let stored = common::on_disk::blobs(&content);
    assert_eq!(text(&browser, "#blobs").await, stored.len().to_string());
    let points = browser
        .find(Locator::Css("#chart polyline"))
        .await
        .unwrap()
        .attr("points")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        points.split(' ').count(),
        4,
        "two samples, the one at start-up, and now: {points}"
    );
    let words = script(
        &browser,
        "return document.getElementById('chart-words').textContent",
    )
    .await;
    let words = words.as_str().unwrap();
    assert!(
        words.starts_with("Storage used went from 1.0 KiB on"),
        "{words}"
    );
    let freed = browser
        .find(Locator::Css("#runs tbody tr td[data-label=Freed] span"))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap();
    assert_eq!(freed.as_deref(), Some("600 bytes"));
    browser::screenshot(&browser, "overview").await;
    browser.close().await.unwrap();

    // The same pages, as served: all there without any script.
    let alice = registry.client_as("alice");
    let html = body_of(&alice, registry.server.url("/r/team/multi")).await;
    assert!(html.contains("linux/arm64") && html.contains(&registry.multi[..19]));
    let found = body_of(&alice, registry.server.url("/?q=multi")).await;
    assert!(found.contains("/r/team/multi") && !found.contains("/r/team/app"));
}

#[tokio::test(flavor = "multi_thread")]
async fn search_filters_as_one_types() {
    let Some(chrome) = Browser::start("search_filters_as_one_types") else {
        return;
    };
    let registry = Registry::start().await;
    let browser = chrome.session(1280, 900).await;
    browser.goto(&registry.url_as("alice", "/")).await.unwrap();
    let search = browser.find(Locator::Id("q")).await.unwrap();
    search.send_keys("mul").await.unwrap();
    wait_for_texts(&browser, "tbody th a", |found| found == ["team/multi"]).await;
    let address = browser.current_url().await.unwrap();
    assert_eq!(
        address.query(),
        Some("q=mul"),
        "the address keeps the search"
    );
    browser::screenshot(&browser, "search").await;
    search.send_keys("zzz").await.unwrap();
    wait_for_texts(&browser, "p.count", |found| {
        found
            .first()
            .is_some_and(|t| t.starts_with("0 repositories of 3"))
    })
    .await;
    search.clear().await.unwrap();
    search.send_keys("team").await.unwrap();
    wait_for_texts(&browser, "tbody th a", |found| {
        found == ["team/app", "team/multi"]
    })
    .await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_sees_and_deletes_only_what_they_may() {
    let Some(chrome) = Browser::start("each_user_sees_and_deletes_only_what_they_may") else {
        return;
    };
    let registry = Registry::start().await;
    let browser = chrome.session(1280, 900).await;
    browser.goto(&registry.url_as("bob", "/")).await.unwrap();
    assert_eq!(
        texts(&browser, "tbody th a").await,
        ["team/app", "team/multi"]
    );
    assert_eq!(text(&browser, ".who").await, "Signed in as bob");
    browser
        .goto(&registry.server.url("/r/team/app/-/v1"))
        .await
        .unwrap();
    assert_eq!(text(&browser, "h1").await, "team/app:v1");
    assert!(
        browser.find(Locator::Css("section.danger")).await.is_err(),
        "bob may not delete: no delete buttons"
    );
    browser
        .goto(&registry.server.url("/r/other/secret"))
        .await
        .unwrap();
    assert_eq!(text(&browser, "h1").await, "Forbidden");
    browser::screenshot(&browser, "forbidden").await;
    browser.close().await.unwrap();

    let url = |path: &str| registry.server.url(path);
    let origin = url("");
    let bob = registry.client_as("bob");
    for path in [
        "/r/other/secret",
        "/r/other/secret/-/v1",
        "/r/team/app/-/v1/delete",
    ] {
        assert_eq!(
            bob.get(url(path)).send().await.unwrap().status(),
            403,
            "{path}"
        );
    }
    let r = bob
        .post(url("/r/team/app/-/v1/delete"))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("You may not delete in team/app"),
        "refused for the right, not the origin"
    );
    // The overview counts only what bob may pull.
    let overview = body_of(&bob, url("/overview")).await;
    assert!(
        overview.contains(r#"<dd id="repositories">2</dd>"#),
        "{overview}"
    );

    // Without credentials: the browser is asked for them.
    let r = client().get(url("/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"berth\"");
    assert!(r.text().await.unwrap().contains("Log in"));

    // alice may delete, but not from a page of another site, nor from no page.
    let alice = registry.client_as("alice");
    for origin in [Some("http://evil.example"), None] {
        let mut request = alice.post(url("/r/team/app/-/v1/delete"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        assert_eq!(request.send().await.unwrap().status(), 403, "{origin:?}");
    }
    let r = registry.manifest("team/app", "v1").await;
    assert_eq!(r.status(), 200, "none of the refused deletes deleted");

    // The API's writes refuse another site's page as well (a form posted
    // there carries the credentials the browser remembers), and only that.
    let start = url("/v2/team/app/blobs/uploads/");
    for (header, value, status) in [
        ("origin", "http://evil.example", 403),
        ("sec-fetch-site", "cross-site", 403),
        ("origin", origin.as_str(), 202),
        ("sec-fetch-site", "same-origin", 202),
    ] {
        let r = alice
            .post(&start)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{header}: {value}");
    }
    assert_eq!(alice.post(&start).send().await.unwrap().status(), 202);
    assert_eq!(
        alice
            .get(url("/v2/team/app/tags/list"))
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "reads are not refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_asks_then_deletes() {
    let Some(chrome) = Browser::start("a_delete_asks_then_deletes") else {
        return;
    };
    let registry = Registry::start().await;
    let status = |reference: String| {
        let registry = &registry;
        async move {
            registry
                .manifest("team/app", &reference)
                .await
                .status()
                .as_u16()
        }
    };
    let browser = chrome.session(1280, 900).await;
    browser.goto(&registry.url_as("alice", "/")).await.unwrap();
    assert_eq!(
        texts(&browser, "tbody tr:nth-child(2) td[data-label=Tags]").await,
        ["2"]
    );
    browser
        .goto(&registry.server.url("/r/team/app/-/v2"))
        .await
        .unwrap();
    follow(
        &browser,
        Locator::XPath("//a[starts-with(., 'Delete tag v2')]"),
    )
    .await;
    assert_eq!(text(&browser, "h1").await, "Delete tag v2 of team/app?");
    assert_eq!(status("v2".into()).await, 200, "asking deletes nothing");
    browser::screenshot(&browser, "delete-confirm").await;
    // Cancel goes back and deletes nothing.
    follow(&browser, Locator::LinkText("Cancel")).await;
    assert_eq!(text(&browser, "h1").await, "team/app:v2");
    assert_eq!(status("v2".into()).await, 200);

    follow(
        &browser,
        Locator::XPath("//a[starts-with(., 'Delete tag v2')]"),
    )
    .await;
    follow(&browser, Locator::Css("button.danger")).await;
    assert_eq!(text(&browser, "p.notice").await, "Deleted v2.");
    assert_eq!(texts(&browser, "tbody th a").await, ["v1"]);
    assert_eq!(status("v2".into()).await, 404, "the tag is gone");
    assert_eq!(
        status(registry.v2.clone()).await,
        200,
        "its manifest stays, by digest"
    );
    // The list of repositories, which keeps its rows, says so at once.
    browser.goto(&registry.server.url("/")).await.unwrap();
    assert_eq!(
        texts(&browser, "tbody tr:nth-child(2) td[data-label=Tags]").await,
        ["1"]
    );

    // A manifest goes with every tag that names it.
    browser
        .goto(&registry.server.url("/r/team/app/-/v1"))
        .await
        .unwrap();
    follow(
        &browser,
        Locator::XPath("//a[starts-with(., 'Delete manifest')]"),
    )
    .await;
    assert!(
        text(&browser, "main")
            .await
            .contains("These tags name it and go with it: v1.")
    );
    follow(&browser, Locator::Css("button.danger")).await;
    assert!(
        text(&browser, "p.notice")
            .await
            .starts_with("Deleted sha256:")
    );
    assert_eq!(status(registry.v1.clone()).await, 404);
    assert_eq!(status("v1".into()).await, 404);
    browser.close().await.unwrap();
}

/// Over HTTPS a browser speaks HTTP/2, whose requests carry the host as
/// `:authority` and no Host header: pull commands and deletes still work.
#[tokio::test(flavor = "multi_thread")]
async fn over_https_and_http2_too() {
    let Some(chrome) = Browser::start("over_https_and_http2_too") else {
        return;
    };
    let mut tls = None;
    let registry = Registry::start_with(|dir| {
        tls = common::self_signed(dir, "over_https_and_http2_too");
        match &tls {
            Some((cert, key)) => [
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            None => Vec::new(),
        }
    })
    .await;
    if tls.is_none() {
        return;
    }
    let browser = chrome.session(1280, 900).await;
    browser
        .goto(&registry.url_as("alice", "/r/team/app/-/v2"))
        .await
        .unwrap();
    let protocol = script(
        &browser,
        "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
    )
    .await;
    assert_eq!(protocol, json!("h2"));
    let commands = texts(&browser, "ul.commands code").await;
    let by_browser = format!("docker pull {}/team/app:v2", registry.server.addr());
    assert!(
        commands.contains(&by_browser),
        "{by_browser} in {commands:?}"
    );
    follow(
        &browser,
        Locator::XPath("//a[starts-with(., 'Delete tag v2')]"),
    )
    .await;
    follow(&browser, Locator::Css("button.danger")).await;
    assert_eq!(text(&browser, "p.notice").await, "Deleted v2.");
    assert_eq!(texts(&browser, "tbody th a").await, ["v1"]);
    browser.close().await.unwrap();

    // A browser that sends no Sec-Fetch-Site is told by its Origin, which
    // must name the host: over HTTP/2, the request's authority.
    let alice = registry.client_as("alice");
    let delete = registry.server.url("/r/team/app/-/v1/delete");
    let r = alice
        .post(&delete)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 403)
    );
    let r = alice
        .post(&delete)
        .header("origin", registry.server.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 303)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_fit_a_phone_and_answer_the_keyboard() {
    let Some(chrome) = Browser::start("pages_fit_a_phone_and_answer_the_keyboard") else {
        return;
    };
    let registry = Registry::start().await;
    let browser = chrome.session(390, 844).await;
    browser.goto(&registry.url_as("alice", "/")).await.unwrap();
    let width = script(&browser, "return window.innerWidth").await;
    assert!(width.as_u64().unwrap() <= 420, "a phone's width: {width}");
    let pages = [
        ("phone-repositories", "/".to_owned()),
        ("phone-tags", "/r/team/multi".to_owned()),
        ("phone-image", "/r/team/app/-/v1".to_owned()),
        ("phone-index", format!("/r/team/multi/-/{}", registry.multi)),
        ("phone-overview", "/overview".to_owned()),
    ];
    for (name, path) in &pages {
        browser.goto(&registry.server.url(path)).await.unwrap();
        let overflow = script(
            &browser,
            "return document.documentElement.scrollWidth - window.innerWidth",
        )
        .await;
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} is wider than the screen by {overflow}px"
        );
        // Every field and button says what it is; one heading tops the page.
        let unnamed = script(
            &browser,
            "return [...document.querySelectorAll('input, button, a')].filter(e => \
               !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()\
             ).map(e => e.outerHTML)",
        )
        .await;
        assert_eq!(unnamed, json!([]), "{path}: controls without a name");
        assert_eq!(
            script(&browser, "return document.querySelectorAll('h1').length").await,
            json!(1),
            "{path}"
        );
        assert_eq!(
            script(&browser, "return document.documentElement.lang").await,
            json!("en")
        );
        assert_eq!(low_contrast(&browser).await, json!([]), "{path}");
        browser::screenshot(&browser, name).await;
    }

    // From the top of a page, Tab reaches the skip link first, shown
    // when focused; Enter on it moves to the content.
    browser.goto(&registry.server.url("/")).await.unwrap();
    let press = |key: Key| {
        let key: char = key.into();
        KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key })
    };
    // The key goes to the page once its window has the focus, which with
    // several browsers starting at once may come late: then a fresh load
    // and another Tab.
    let mut focused = Vec::new();
    for _ in 0..5 {
        script(&browser, "window.focus(); return null").await;
        browser.perform_actions(press(Key::Tab)).await.unwrap();
        focused = texts(&browser, ":focus").await;
        if !focused.is_empty() {
            break;
        }
        browser.refresh().await.unwrap();
    }
    assert_eq!(focused, ["Skip to content"]);
    let left = script(
        &browser,
        "return document.activeElement.getBoundingClientRect().left",
    )
    .await;
    assert!(left.as_f64().unwrap() >= 0.0, "the focused skip link shows");
    browser.perform_actions(press(Key::Enter)).await.unwrap();
    assert_eq!(
        script(&browser, "return document.activeElement.id").await,
        json!("main")
    );
    browser.close().await.unwrap();

    // In a dark scheme, every page keeps its contrast.
    let dark = chrome.session_with(1280, 900, &["--force-dark-mode"]).await;
    dark.goto(&registry.url_as("alice", "/")).await.unwrap();
    assert_eq!(
        script(
            &dark,
            "return matchMedia('(prefers-color-scheme: dark)').matches"
        )
        .await,
        json!(true)
    );
    for (name, path) in &pages {
        dark.goto(&registry.server.url(path)).await.unwrap();
        assert_eq!(low_contrast(&dark).await, json!([]), "{path}, dark");
        let name = name.replace("phone-", "dark-");
        browser::screenshot(&dark, &name).await;
    }
    dark.close().await.unwrap();
}
