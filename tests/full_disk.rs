//! A full disk: the data folder lives on a small loop-mounted ext4 file system
//! that the test fills. Refused uploads get 507 STORAGE_FULL, leave no partial
//! files, the reserve keeps manifests and tags writable, /readyz says why it is
//! not ready, what was stored stays intact, and pushes work again once space is
//! freed. Needs root for `mount`; elsewhere it says so and skips.

mod common;

use common::Server;
use common::api::*;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1024 * 1024;

/// A loop-mounted ext4 image, unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    fn new(dir: &Path, size_mib: u64) -> Result<SmallDisk, String> {
        let image = dir.join("disk.img");
        let mount = dir.join("mnt");
        std::fs::create_dir(&mount).unwrap();
        File::create(&image)
            .unwrap()
            .set_len(size_mib * MIB)
            .unwrap();
        run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", image.to_str().unwrap()],
        )?;
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                mount.to_str().unwrap(),
            ],
        )?;
        Ok(SmallDisk { mount })
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(&self.mount).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Writes a filler file so that about `leave` bytes stay free.
    fn fill_until(&self, leave: u64) {
        let mut filler = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.mount.join("filler"))
            .unwrap();
        let chunk = vec![0u8; MIB as usize];
        while self.free() > leave + MIB {
            filler.write_all(&chunk).unwrap();
            filler.sync_all().unwrap();
        }
    }

    fn unfill(&self) {
        std::fs::remove_file(self.mount.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", self.mount.to_str().unwrap()]);
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn random(len: u64, seed: u64) -> Vec<u8> {
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

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_full_disk_refuses_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match SmallDisk::new(dir.path(), 100) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!(
                "SKIPPED a_full_disk_refuses_cleanly_and_recovers: cannot loop-mount a file system here ({e}); CI runs it as root"
            );
            return;
        }
    };
    let root = disk.mount.join("data");
    let http = client();

    // Before the disk fills: an image and a 4 MiB blob, stored for good.
    let mut server = Server::start_with(&root, &["--min-free", "16MiB"]);
    let base = server.url("");
    let image = push_image(&http, &base, "app", "v1", "before").await;
    let big = random(4 * MIB, 1);
    let big_digest = push_blob(&http, &base, "app", &big).await;

    // Below the reserve: uploads get 507, manifests and tags still go through.
    disk.fill_until(8 * MIB);
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    expect_error(r, 507, "STORAGE_FULL").await;
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let why = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
    assert!(why.contains("storage is nearly full"), "{why}");
    put_manifest(&http, &base, "app", "still-taggable", OCI_MANIFEST, &image).await;

    // With no reserve, a body larger than the free space is refused part-way.
    server.stop();
    let server = Server::start_with(&root, &["--min-free", "0B"]);
    let base = server.url("");
    disk.fill_until(2 * MIB);
    let too_big = random(6 * MIB, 2);
    let r = http
        .post(format!(
            "{base}/v2/app/blobs/uploads/?digest={}",
            digest(&too_big)
        ))
        .body(too_big.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 507, "STORAGE_FULL").await;
    assert_eq!(
        entries(&root.join("uploads")),
        0,
        "partial upload left behind"
    );
    // tmp/ holds only the server's own staging folder, and it is empty.
    let staging: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(staging.len(), 1, "{staging:?}");
    assert_eq!(entries(&staging[0]), 0, "partial blob left in {staging:?}");

    // A chunk that does not fit is undone; the session stays where it was.
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let r = http
        .patch(format!("{base}{location}"))
        .body(too_big[..MIB as usize].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .patch(format!("{base}{location}"))
        .body(too_big[MIB as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    let r = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(header(&r, "range"), format!("0-{}", MIB - 1));

    // Everything stored before is intact.
    let r = http
        .get(format!("{base}/v2/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), image.as_slice());
    let r = http
        .get(format!("{base}/v2/app/blobs/{big_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());

    // Space comes back: the same session and new pushes complete.
    disk.unfill();
    let r = http
        .patch(format!("{base}{location}"))
        .body(too_big[MIB as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .put(format!("{base}{location}?digest={}", digest(&too_big)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let again = random(6 * MIB, 3);
    push_blob(&http, &base, "app", &again).await;
    let r = http
        .get(format!("{base}/v2/app/blobs/{}", digest(&too_big)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), too_big.as_slice());
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(server);
}
