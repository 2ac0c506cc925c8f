//! The few file operations every write goes through, so that the crash-safety
//! rules live in one place:
//!
//! 1. new content is written to a fresh file that nobody reads (in `tmp/` or an
//!    upload folder), then `fsync`ed;
//! 2. it becomes visible by `rename` onto its final path, which is atomic: a reader
//!    (or a process restarted after a crash) sees the old file or the new one;
//! 3. the folder holding the new name is `fsync`ed, so the rename itself survives a
//!    power loss, and so is the parent of every folder we had to create.
//!
//! A file that exists but cannot be parsed is never taken as empty content: the
//! callers treat it as absent (distribution #4489 served zero-byte links). The
//! one kind of file whose content nobody reads is a repository's link to a blob:
//! it is named by the digest, so it is created empty in place ([`create_name`])
//! and only its folder is fsynced.
//!
//! In tests, each operation is also recorded (`record!`, `journal.rs`), so that
//! the order of a store's writes can be checked; a file fsync or rename made
//! anywhere else in the store would escape those checks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[cfg(test)]
use super::journal::Op;

/// Records a durable operation just made in the journal of a test (see
/// `journal.rs`). Outside tests it expands to nothing, arguments included.
macro_rules! record {
    ($op:expr) => {
        #[cfg(test)]
        $crate::storage::journal::record($op);
    };
}
pub(super) use record;

/// `fsync` a folder, making the names created or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    record!(Op::FsyncDir(dir.to_owned()));
    Ok(())
}

/// `fsync` a file, making its content durable (before it is renamed into place).
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()?;
    record!(Op::Fsync(path.to_owned()));
    Ok(())
}

/// Folders whose new entries are not durable yet. Names made together (a blob,
/// the folder it needed, its repository link) are made durable together by
/// [`Pending::sync`]: the first folder fsync usually commits them all (ext4 and
/// xfs commit every pending change of the file system's journal), so the others
/// only wait for the disk to flush its cache (0.2–0.3 ms each on this virtual
/// disk, by strace), where syncing after each step would commit each time.
/// (fsyncing the folders side by side on threads did not pay: no faster.)
#[derive(Default)]
#[must_use = "the names are not durable until `sync`"]
pub struct Pending(Vec<PathBuf>);

impl Pending {
    /// Adds the folder `dir` to sync.
    pub fn add(&mut self, dir: &Path) {
        if !self.0.iter().any(|d| d == dir) {
            self.0.push(dir.to_path_buf());
        }
    }

    /// fsyncs every folder added.
    pub fn sync(self) -> io::Result<()> {
        self.0.iter().try_for_each(|dir| sync_dir(dir))
    }
}

/// Creates `dir` and any missing parents, syncing the parent of each created one.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    ensure_dirs([dir])
}

/// [`ensure_dir`] for many folders, syncing each changed parent once.
pub fn ensure_dirs<P: AsRef<Path>>(dirs: impl IntoIterator<Item = P>) -> io::Result<()> {
    let mut pending = Pending::default();
    for dir in dirs {
        create_dirs(dir.as_ref(), &mut pending)?;
    }
    pending.sync()
}

/// Creates `dir` and any missing parents; the parent of each one created goes
/// to `pending`.
fn create_dirs(dir: &Path, pending: &mut Pending) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        // A relative name's parent is the empty path: the working folder.
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        create_dirs(parent, pending)?;
        match fs::create_dir(dir) {
            Ok(()) => {
                record!(Op::CreateDir(dir.to_owned()));
                pending.add(parent);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Renames a complete, synced file onto `to` and makes the new name durable.
pub fn publish(from: &Path, to: &Path) -> io::Result<()> {
    let parent = to.parent().expect("store paths always have a parent");
    ensure_dir(parent)?;
    fs::rename(from, to)?;
    record!(Op::Rename {
        from: from.to_owned(),
        to: to.to_owned()
    });
    sync_dir(parent)
}

/// [`publish`] for content-addressed files: never replaces an existing `to`
/// (whose content is the same), and says whether `from` became `to`; if not,
/// `from` is removed. This keeps the count of stored blobs exact when two
/// uploads of one digest finish together. Either way `to` is durable on return.
pub fn publish_new(from: &Path, to: &Path) -> io::Result<bool> {
    let mut pending = Pending::default();
    let renamed = rename_new(from, to, &mut pending)?;
    pending.sync()?;
    Ok(renamed)
}

/// [`publish_new`] whose new names (`to`, and any folder it needed) go to
/// `pending` instead of being synced at once. When `to` was there already, its
/// folder goes to `pending` all the same: whoever renamed it there may not have
/// synced that folder yet.
pub fn rename_new(from: &Path, to: &Path, pending: &mut Pending) -> io::Result<bool> {
    let parent = to.parent().expect("store paths always have a parent");
    create_dirs(parent, pending)?;
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            fs::remove_file(from)?;
            pending.add(parent);
            return Ok(false);
        }
        // A file system without RENAME_NOREPLACE: a plain rename is still correct.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => fs::rename(from, to)?,
        Err(e) => return Err(e.into()),
    }
    record!(Op::Rename {
        from: from.to_owned(),
        to: to.to_owned()
    });
    pending.add(parent);
    Ok(true)
}

/// Creates the empty file `path` if it is not there, and says whether it did.
/// For files whose name is all they say (a repository's link to a blob is named
/// by the digest), so there are no bytes that a power loss could tear and no
/// staging is needed. The new name (and any folder it needed) goes to `pending`.
pub fn create_name(path: &Path, pending: &mut Pending) -> io::Result<bool> {
    let parent = path.parent().expect("store paths always have a parent");
    create_dirs(parent, pending)?;
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => {
            record!(Op::Create(path.to_owned()));
            pending.add(parent);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`write_atomic`] for content-addressed files, with [`publish_new`]'s answer.
pub fn write_atomic_new(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let tmp = stage(tmp_dir, bytes)?;
    let result = publish_new(&tmp, path);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to a new synced file in `tmp_dir`.
fn stage(tmp_dir: &Path, bytes: &[u8]) -> io::Result<std::path::PathBuf> {
    let tmp = tmp_dir.join(Uuid::new_v4().simple().to_string());
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        record!(Op::Write(tmp.clone()));
        file.sync_all()?;
        record!(Op::Fsync(tmp.clone()));
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` atomically and durably, staging them in `tmp_dir`
/// (which must be on the same file system).
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = stage(tmp_dir, bytes)?;
    let result = publish(&tmp, path);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file and syncs its folder; `Ok(false)` if it did not exist.
pub fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            record!(Op::Remove(path.to_owned()));
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to disk,
/// and returns without waiting. Only a head start for the fsync that follows,
/// which is what makes the data durable; so a failure here is ignored.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range takes only integers; the descriptor stays open
        // for the call because `file` is borrowed, and no memory is passed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Reads a small file; `Ok(None)` if it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `e` says that a path is not there (or one of its folders is a file).
pub fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::super::journal::Journal;
    use super::*;

    #[test]
    fn pending_reports_a_failure_of_any_of_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let mut all = Pending::default();
        for d in [&a, &b, &c] {
            fs::create_dir(d).unwrap();
            all.add(d);
        }
        all.add(&a); // once only
        assert_eq!(all.0.len(), 3);
        all.sync().unwrap();
        let gone = dir.path().join("gone");
        for order in [[&a, &gone, &b], [&gone, &a, &b], [&a, &b, &gone]] {
            let mut pending = Pending::default();
            order.into_iter().for_each(|d| pending.add(d));
            let err = pending.sync().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        }
    }

    #[test]
    fn write_atomic_creates_parents_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let target = dir.path().join("a/b/c");
        write_atomic(&tmp, &target, b"one").unwrap();
        write_atomic(&tmp, &target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "temp files left behind"
        );
        assert!(remove(&target).unwrap());
        assert!(!remove(&target).unwrap());
        assert_eq!(read_optional(&target).unwrap(), None);
    }

    #[test]
    fn write_atomic_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let tmp = root.join("tmp");
        fs::create_dir(&tmp).unwrap();
        let target = root.join("x/blob");
        assert!(write_atomic_new(&tmp, &target, b"first").unwrap());
        // The name was there, put by someone who may not have synced its
        // folder yet: the folder is synced anyway before the answer.
        let journal = Journal::start(&root);
        assert!(!write_atomic_new(&tmp, &target, b"second").unwrap());
        assert_eq!(fs::read(&target).unwrap(), b"first");
        journal
            .take()
            .index(&Op::FsyncDir(target.parent().unwrap().to_owned()));
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "temp files left behind"
        );
    }

    #[test]
    fn create_name_makes_an_empty_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("repo/_blobs/sha256/abc");
        let mut pending = Pending::default();
        assert!(create_name(&name, &mut pending).unwrap());
        assert!(!create_name(&name, &mut pending).unwrap());
        assert_eq!(fs::read(&name).unwrap(), b"");
        // The new folders' parents and the name's own folder, each once.
        let pending_dirs = pending.0.clone();
        pending.sync().unwrap();
        assert_eq!(pending_dirs.len(), 4, "{pending_dirs:?}");
        assert_eq!(pending_dirs.last().unwrap(), name.parent().unwrap());
    }
}
