//! Crash safety: pushers keep pushing while the registry is killed with SIGKILL
//! again and again. Afterwards every push that got its 201 must pull back
//! byte-identical, and no tag may be listed whose manifest or blobs cannot be read.

mod common;

use common::Server;
use common::api::digest;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const PUSHERS: usize = 4;
const KILLS: usize = 8;
const CHUNK: usize = 64 * 1024;

/// Deterministic bytes (xorshift), so failures can be replayed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A push the registry acknowledged with 201.
struct Acked {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn client() -> reqwest::Client {
    common::api::client_with_timeout(Duration::from_secs(10))
}

/// Pushes one blob, monolithically or in chunks, and fails unless it got a 201.
async fn push_blob(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    chunked: bool,
) -> Res<()> {
    let d = digest(data);
    if !chunked {
        let r = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(data.to_vec())
            .send()
            .await?;
        if r.status() != 201 {
            return Err(format!("monolithic push: {}", r.status()).into());
        }
        return Ok(());
    }
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    if r.status() != 202 {
        return Err(format!("start upload: {}", r.status()).into());
    }
    let mut location = r.headers()["location"].to_str()?.to_owned();
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let start = i * CHUNK;
        let r = http
            .patch(format!("{base}{location}"))
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await?;
        if r.status() != 202 {
            return Err(format!("chunk: {}", r.status()).into());
        }
        location = r.headers()["location"].to_str()?.to_owned();
    }
    let r = http
        .put(format!("{base}{location}?digest={d}"))
        .send()
        .await?;
    if r.status() != 201 {
        return Err(format!("finish upload: {}", r.status()).into());
    }
    Ok(())
}

async fn push_image(http: &reqwest::Client, base: &str, pusher: usize, n: u64) -> Res<Acked> {
    let repo = format!("crash/p{pusher}");
    let tag = format!("v{n}");
    let shared = bytes(42, 300 * 1024);
    let unique = bytes(
        (pusher as u64) << 32 | n,
        100 * 1024 + (n as usize % 7) * 50 * 1024,
    );
    let config = format!(r#"{{"pusher":{pusher},"n":{n}}}"#).into_bytes();
    let blobs = vec![
        (digest(&config), config),
        (digest(&shared), shared),
        (digest(&unique), unique),
    ];
    for (i, (_, data)) in blobs.iter().enumerate() {
        push_blob(http, base, &repo, data, (n as usize + i).is_multiple_of(2)).await?;
    }
    let descriptor = |media: &str, (d, data): &(String, Vec<u8>)| {
        format!(
            r#"{{"mediaType":"{media}","digest":"{d}","size":{}}}"#,
            data.len()
        )
    };
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{},{}]}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", &blobs[0]),
        descriptor(layer, &blobs[1]),
        descriptor(layer, &blobs[2]),
    )
    .into_bytes();
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await?;
    if r.status() != 201 {
        return Err(format!("manifest: {}", r.status()).into());
    }
    Ok(Acked {
        repo,
        tag,
        manifest,
        blobs,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_sigkill() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let base = Arc::new(RwLock::new(server.url("")));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut pushers = Vec::new();
    for pusher in 0..PUSHERS {
        let (base, acked, stop) = (base.clone(), acked.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let http = client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = base.read().unwrap().clone();
                match push_image(&http, &url, pusher, n).await {
                    Ok(push) => acked.lock().unwrap().push(push),
                    // The registry was killed under us: try the next image.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(150 + 60 * (kill as u64 % 5))).await;
        server.stop(); // SIGKILL
        server = Server::start(root.path());
        *base.write().unwrap() = server.url("");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.unwrap();
    }

    // One last crash, then check everything from a fresh process.
    server.stop();
    let server = Server::start(root.path());
    let base = server.url("");
    let http = client();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= PUSHERS,
        "too few pushes got through: {}",
        acked.len()
    );
    for push in acked.iter() {
        let r = http
            .get(format!("{base}/v2/{}/manifests/{}", push.repo, push.tag))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "acknowledged {}:{} lost",
            push.repo,
            push.tag
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), push.manifest.as_slice());
        for (d, data) in &push.blobs {
            let r = http
                .get(format!("{base}/v2/{}/blobs/{d}", push.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "blob {d} of {}:{} lost",
                push.repo,
                push.tag
            );
            assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
        }
    }

    // No tag is half-visible: every listed tag resolves, and everything it needs verifies.
    for pusher in 0..PUSHERS {
        let repo = format!("crash/p{pusher}");
        let r = http
            .get(format!("{base}/v2/{repo}/tags/list"))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            continue;
        }
        let list: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        for tag in list["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let r = http
                .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "tag {repo}:{tag} is listed but unreadable");
            let digest_header = r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = r.bytes().await.unwrap();
            assert_eq!(
                digest(&body),
                digest_header,
                "manifest {repo}:{tag} is corrupt"
            );
            let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let layers = manifest["layers"].as_array().unwrap();
            for d in layers.iter().chain([&manifest["config"]]) {
                let d = d["digest"].as_str().unwrap();
                let r = http
                    .get(format!("{base}/v2/{repo}/blobs/{d}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{repo}:{tag} needs {d}, which is gone");
                assert_eq!(digest(&r.bytes().await.unwrap()), d, "blob {d} is corrupt");
            }
        }
    }
    eprintln!(
        "{} acknowledged pushes survived {} SIGKILLs",
        acked.len(),
        KILLS + 1
    );
}
