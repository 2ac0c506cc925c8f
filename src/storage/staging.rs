//! Each process's own staging folder under `tmp/`, and the start-up sweep of
//! the folders that no live process owns.
//!
//! Two processes can share a store for a while: during a rolling update the
//! old pod and the new one overlap on a ReadWriteMany volume. If start-up
//! simply emptied `tmp/`, the new process would delete what the old one is
//! staging (single-request uploads, files about to be renamed into place). So
//! a process stages only in `tmp/<its id>/` and holds an exclusive `flock` on
//! that folder for as long as it lives; the kernel drops the lock when the
//! process dies, however it dies. Start-up removes exactly the folders whose
//! lock it can take. (flock works across the clients of NFS and CephFS too,
//! which is what ReadWriteMany volumes usually are.)

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Loose files in `tmp/` were staged by versions before per-process folders.
/// One may still run beside us during the upgrade, so its files are removed
/// only once nothing has written them for this long.
const LOOSE_FILE_AGE: Duration = Duration::from_secs(3600);

/// The lock on this process's staging folder, held while the value lives.
pub struct Staging {
    /// This process's folder, `tmp/<a fresh id>`.
    dir: PathBuf,
    /// Holds the flock; closing it (drop, or the process's death) releases it.
    _lock: File,
}

impl Staging {
    /// Makes and locks a staging folder of a fresh name in `tmp` (another
    /// name should a sweeper take it first), then removes the other folders
    /// in `tmp` whose owner is gone.
    pub fn claim(tmp: &Path) -> io::Result<Staging> {
        let (dir, lock) = loop {
            let dir = tmp.join(Uuid::new_v4().simple().to_string());
            fs::create_dir(&dir)?;
            let lock = File::open(&dir)?;
            lock.lock()?;
            // A sweeping process may have taken the lock between our mkdir and
            // ours, and removed the folder; then it is not ours to use.
            if still_there(&dir, &lock)? {
                break (dir, lock);
            }
        };
        sweep(tmp, &dir)?;
        Ok(Staging { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many other live processes hold a staging folder beside ours.
    pub fn live_others(&self) -> io::Result<usize> {
        let tmp = self.dir.parent().expect("a staging folder is in tmp/");
        let mut live = 0;
        for entry in fs::read_dir(tmp)? {
            let entry = entry?;
            if entry.path() == self.dir || !entry.file_type()?.is_dir() {
                continue;
            }
            let lock = match File::open(entry.path()) {
                Ok(lock) => lock,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match lock.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => live += 1,
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        Ok(live)
    }
}

/// Whether `path` still names the file (or folder) `lock` was opened on.
pub(super) fn still_there(path: &Path, lock: &File) -> io::Result<bool> {
    let held = lock.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the staging folders of dead processes, and loose files left long ago.
fn sweep(tmp: &Path, ours: &Path) -> io::Result<()> {
    for entry in fs::read_dir(tmp)? {
        let entry = entry?;
        let path = entry.path();
        if path == ours {
            continue;
        }
        if entry.file_type()?.is_dir() {
            let lock = match File::open(&path) {
                Ok(lock) => lock,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match lock.try_lock() {
                // Removed while locked, so its owner-to-be (see `claim`) sees it gone.
                Ok(()) => remove_dir_all(&path)?,
                Err(TryLockError::WouldBlock) => {
                    tracing::debug!(folder = %path.display(), "staging folder of a live process kept");
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        } else {
            let idle = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if idle >= LOOSE_FILE_AGE {
                remove_file(&path)?;
            }
        }
    }
    Ok(())
}

fn remove_dir_all(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims a staging folder under `root/tmp` as a new process would.
    fn claim(root: &Path) -> Staging {
        Staging::claim(&root.join("tmp")).unwrap()
    }

    fn folders(tmp: &Path) -> Vec<std::path::PathBuf> {
        let mut left: Vec<_> = fs::read_dir(tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        left
    }

    #[test]
    fn a_live_owners_folder_is_kept_and_a_dead_ones_removed() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let first = claim(root.path());
        let first_dir = first.dir().to_owned();
        fs::write(first_dir.join("staged"), b"in flight").unwrap();
        // A folder no process holds: what a killed process leaves.
        let dead = tmp.join("0123456789abcdef0123456789abcdef");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("staged"), b"abandoned").unwrap();

        let second = claim(root.path());
        assert_ne!(first_dir, second.dir());
        let staged = fs::read(first_dir.join("staged")).unwrap();
        assert_eq!(staged, b"in flight");
        assert!(!dead.exists());

        assert_eq!(second.live_others().unwrap(), 1);
        drop(first);
        assert_eq!(second.live_others().unwrap(), 0);
        let third = claim(root.path());
        let mut expected = vec![second.dir().to_owned(), third.dir().to_owned()];
        expected.sort();
        assert_eq!(folders(&tmp), expected);
    }

    #[test]
    fn loose_files_are_removed_only_when_long_idle() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let fresh = tmp.join("fresh");
        let old = tmp.join("old");
        fs::write(&fresh, b"").unwrap();
        fs::write(&old, b"").unwrap();
        let long_ago = SystemTime::now() - LOOSE_FILE_AGE - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let _claimed = claim(root.path());
        assert!(fresh.exists());
        assert!(!old.exists());
    }
}
