//! The one layer of the berth image: the binary at `/berth` and the few files a
//! static binary running as a non-root user needs, and nothing else.
//!
//! - `/etc/passwd` and `/etc/group` name the user 65532 (`nonroot`, as in
//!   distroless), so tools that look the user up find it;
//! - `/tmp` (mode 1777), so the user can write scratch files and a `--root` there;
//! - `/home/nonroot` (the working directory) and `/var/lib/registry` (the
//!   default data folder, `BERTH_ROOT`), both owned by the user.
//!
//! The tar is reproducible: entries in a fixed order, every mtime 0, no user or
//! group names, and a gzip header without a time or a file name, so the same
//! binary always gives the same digests.

use flate2::{Compression, GzBuilder};
use std::io::Write;

/// The user (and group) the image runs as.
pub const USER: u64 = 65532;
pub const BINARY_PATH: &str = "berth";
pub const HOME: &str = "/home/nonroot";
pub const DATA_DIR: &str = "/var/lib/registry";

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

/// The layer in both forms: the tar (its digest is the config's diff_id) and
/// its gzip (the blob that travels).
pub struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
}

enum Entry<'a> {
    Dir { mode: u32, owner: u64 },
    File { mode: u32, data: &'a [u8] },
}

/// Builds the layer around the binary's bytes.
pub fn build(binary: &[u8]) -> std::io::Result<Layer> {
    // In tar order: a folder before what it holds.
    let entries: [(&str, Entry); 10] = [
        (
            BINARY_PATH,
            Entry::File {
                mode: 0o755,
                data: binary,
            },
        ),
        (
            "etc/",
            Entry::Dir {
                mode: 0o755,
                owner: 0,
            },
        ),
        (
            "etc/group",
            Entry::File {
                mode: 0o644,
                data: GROUP.as_bytes(),
            },
        ),
        (
            "etc/passwd",
            Entry::File {
                mode: 0o644,
                data: PASSWD.as_bytes(),
            },
        ),
        (
            "home/",
            Entry::Dir {
                mode: 0o755,
                owner: 0,
            },
        ),
        (
            "home/nonroot/",
            Entry::Dir {
                mode: 0o700,
                owner: USER,
            },
        ),
        (
            "tmp/",
            Entry::Dir {
                mode: 0o1777,
                owner: 0,
            },
        ),
        (
            "var/",
            Entry::Dir {
                mode: 0o755,
                owner: 0,
            },
        ),
        (
            "var/lib/",
            Entry::Dir {
                mode: 0o755,
                owner: 0,
            },
        ),
        (
            "var/lib/registry/",
            Entry::Dir {
                mode: 0o755,
                owner: USER,
            },
        ),
    ];
    let mut tar = tar::Builder::new(Vec::with_capacity(binary.len() + 16 * 1024));
    for (path, entry) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        match entry {
            Entry::Dir { mode, owner } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(mode);
                header.set_uid(owner);
                header.set_gid(owner);
                header.set_size(0);
                tar.append_data(&mut header, path, std::io::empty())?;
            }
            Entry::File { mode, data } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(mode);
                header.set_uid(0);
                header.set_gid(0);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data)?;
            }
        }
    }
    let tar = tar.into_inner()?;
    let mut gzip = GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(tar.len() / 2), Compression::default());
    gzip.write_all(&tar)?;
    let gzip = gzip.finish()?;
    Ok(Layer { tar, gzip })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_layer_holds_the_binary_and_the_user() {
        let layer = build(b"\x7fELF binary").unwrap();
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&layer.gzip[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, layer.tar);

        let mut archive = tar::Archive::new(&layer.tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().display().to_string();
            assert_eq!(header.mtime().unwrap(), 0, "{path}");
            let mut content = String::new();
            if header.entry_type().is_file() {
                entry.read_to_string(&mut content).unwrap_or_default();
            }
            seen.push((path, header.mode().unwrap(), header.uid().unwrap(), content));
        }
        let find = |p: &str| {
            seen.iter()
                .find(|s| s.0 == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(find("berth").1, 0o755);
        assert_eq!(find("tmp/").1, 0o1777);
        assert_eq!(find("var/lib/registry/").2, USER);
        assert_eq!(find("home/nonroot/").2, USER);
        assert!(find("etc/passwd").3.contains("nonroot:x:65532:65532:"));
        assert!(find("etc/group").3.contains("nonroot:x:65532:"));
    }

    #[test]
    fn the_same_binary_gives_the_same_bytes() {
        let a = build(b"same").unwrap();
        let b = build(b"same").unwrap();
        assert_eq!(a.gzip, b.gzip);
        assert_ne!(build(b"other").unwrap().gzip, a.gzip);
    }
}
