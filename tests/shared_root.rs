//! Two `berth serve` processes on one data folder, as the old and the new pod of
//! a rolling update overlap on a ReadWriteMany volume: the new one's start-up
//! must not delete what the old one is staging, and must clear what a killed
//! one left.

mod common;

use common::api::*;
use common::{Server, on_disk};
use std::path::Path;

#[tokio::test]
async fn a_second_process_starting_mid_upload_leaves_it_alone() {
    let root = tempfile::tempdir().unwrap();
    let old = Server::start(root.path());
    let http = client();
    // Larger than one batch, so the blob is staged in tmp/ while it streams.
    let data: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let d = digest(&data);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let upload = tokio::spawn(
        http.post(old.url(&format!("/v2/roll/app/blobs/uploads/?digest={d}")))
            .body(reqwest::Body::wrap_stream(tokio_stream_of(rx)))
            .send(),
    );
    let half = data.len() / 2;
    tx.send(Ok(data[..half].to_vec())).await.unwrap();
    // Wait until the old process is staging the bytes.
    let tmp = root.path().join("tmp");
    wait_for_staging(&tmp).await;
    let staged = on_disk::files_under(&tmp);

    let new = Server::start(root.path());
    assert_eq!(
        on_disk::files_under(&tmp),
        staged,
        "the new process's start-up touched the staged upload"
    );
    tx.send(Ok(data[half..].to_vec())).await.unwrap();
    drop(tx);
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), 201);
    for server in [&old, &new] {
        let r = http
            .get(server.url(&format!("/v2/roll/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(digest(&r.bytes().await.unwrap()), d);
    }
}

#[tokio::test]
async fn a_killed_processes_staging_is_cleared_at_the_next_start() {
    let root = tempfile::tempdir().unwrap();
    let mut first = Server::start(root.path());
    let http = client();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let d = digest(b"never finished");
    let upload = tokio::spawn(
        http.post(first.url(&format!("/v2/roll/app/blobs/uploads/?digest={d}")))
            .body(reqwest::Body::wrap_stream(tokio_stream_of(rx)))
            .send(),
    );
    tx.send(Ok(vec![7u8; 3 * 1024 * 1024])).await.unwrap();
    let tmp = root.path().join("tmp");
    wait_for_staging(&tmp).await;
    let dead_folder = on_disk::files_under(&tmp)[0].parent().unwrap().to_owned();
    first.stop();
    let _ = upload.await;

    let _second = Server::start(root.path());
    assert!(!dead_folder.exists(), "{} survived", dead_folder.display());
    assert!(on_disk::files_under(&tmp).is_empty());
}

/// Waits until the server is staging bytes in `tmp`.
async fn wait_for_staging(tmp: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while on_disk::files_under(tmp).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing staged in tmp/"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A body stream fed through a channel, so a test decides when bytes arrive.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
