//! Two requests racing on one upload session, over real HTTP on two connections.
//! Whatever the timing, a digest must name exactly the bytes it hashes to: a
//! PATCH that loses the race to the final PUT is refused with an OCI error, and
//! the committed blob is the bytes the PUT's digest names.

mod common;

use common::api::*;
use common::{Server, TestRegistry};

/// Each trial is one chance for the race; the window is a few hundred
/// microseconds wide, so it takes many to hit it (9 in 300 did before the fix).
const TRIALS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_racing_the_final_put_never_changes_the_blob() {
    let registry = TestRegistry::start();
    race(&registry.base(), &registry.base()).await;
}

/// The same race with the PUT and the PATCH sent to two processes on one
/// data folder, as the old and new pod of a rolling update may get them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_race_across_two_processes_on_one_store_never_changes_the_blob() {
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (Server::start(root.path()), Server::start(root.path()));
    race(&one.url(""), &two.url("")).await;
}

/// Runs [`TRIALS`] races: the upload is opened and filled through `base`, its
/// final PUT sent to `base` and a racing PATCH to `other`.
async fn race(base: &str, other: &str) {
    // Two clients: two connections, so the server really runs both at once.
    let (putter, patcher) = (client(), client());
    let mut outcomes = std::collections::BTreeMap::<(u16, u16), usize>::new();
    for trial in 0..TRIALS {
        let mut first = vec![0u8; 256 * 1024];
        first[..8].copy_from_slice(&(trial as u64).to_be_bytes());
        for (i, byte) in first.iter_mut().enumerate().skip(8) {
            *byte = (i % 251) as u8;
        }
        let more = vec![0x5a; 64 * 1024];
        let d = digest(&first);

        let r = putter
            .post(format!("{base}/v2/race/app/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = header(&r, "location");
        let r = putter
            .patch(format!("{base}{location}"))
            .header("content-range", format!("0-{}", first.len() - 1))
            .body(first.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = header(&r, "location");

        let put = putter.put(format!("{base}{location}?digest={d}")).send();
        let patch = patcher
            .patch(format!("{other}{location}"))
            .header(
                "content-range",
                format!("{}-{}", first.len(), first.len() + more.len() - 1),
            )
            .body(more)
            .send();
        let (put, patch) = tokio::join!(put, patch);
        let (put, patch) = (put.unwrap(), patch.unwrap());
        let statuses = (put.status().as_u16(), patch.status().as_u16());
        *outcomes.entry(statuses).or_default() += 1;
        match statuses {
            // The PUT won: the PATCH found the session closed.
            (201, 404) => assert_eq!(error_code(patch).await, "BLOB_UPLOAD_UNKNOWN"),
            // The PATCH won: the PUT's digest no longer matches the upload.
            (400, 202) => assert_eq!(error_code(put).await, "DIGEST_INVALID"),
            other => panic!("trial {trial}: PUT and PATCH answered {other:?}"),
        }
        if statuses.0 == 201 {
            let r = putter
                .get(format!("{base}/v2/race/app/blobs/{d}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let served = r.bytes().await.unwrap();
            assert_eq!(served.len(), first.len(), "trial {trial}: blob {d} grew");
            assert_eq!(digest(&served), d, "trial {trial}: blob {d} changed");
        }
    }
    eprintln!("(PUT, PATCH) statuses over {TRIALS} trials: {outcomes:?}");
}
