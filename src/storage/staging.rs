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

use super::paths::Paths;
use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Loose files in `tmp/` were staged by versions before per-process folders.
/// One may still run beside us during the upgrade, so its files are removed
/// only once nothing has written them for this long.
const LOOSE_FILE_AGE: Duration = Duration::from_secs(3600);

/// The lock on this process's staging folder, held while the value lives.
pub struct Staging {
    /// Holds the flock; closing it (drop, or the process's death) releases it.
    _lock: File,
}

impl Staging {
    /// Makes and locks the staging folder `paths` names (renaming it should a
    /// sweeper take it first), then removes the other folders in `tmp/` whose
    /// owner is gone.
    pub fn claim(paths: &mut Paths) -> io::Result<Staging> {
        let lock = loop {
            let dir = paths.staging_dir();
            fs::create_dir(&dir)?;
            let lock = File::open(&dir)?;
            lock.lock()?;
            // A sweeping process may have taken the lock between our mkdir and
            // ours, and removed the folder; then it is not ours to use.
            if still_there(&dir, &lock)? {
                break lock;
            }
            paths.renew_owner();
        };
        sweep(&paths.tmp_dir(), &paths.staging_dir())?;
        Ok(Staging { _lock: lock })
    }
}

/// How many other live processes hold a staging folder in `paths`' store.
pub fn live_others(paths: &Paths) -> io::Result<usize> {
    let ours = paths.staging_dir();
    let mut live = 0;
    for entry in fs::read_dir(paths.tmp_dir())? {
        let entry = entry?;
        if entry.path() == ours || !entry.file_type()?.is_dir() {
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
    fn claim(root: &Path) -> (Paths, Staging) {
        let mut paths = Paths::new(root);
        let staging = Staging::claim(&mut paths).unwrap();
        (paths, staging)
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
        let (first, first_lock) = claim(root.path());
        fs::write(first.staging_dir().join("staged"), b"in flight").unwrap();
        // A folder no process holds: what a killed process leaves.
        let dead = tmp.join("0123456789abcdef0123456789abcdef");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("staged"), b"abandoned").unwrap();

        let (second, _second_lock) = claim(root.path());
        assert_ne!(first.staging_dir(), second.staging_dir());
        let staged = fs::read(first.staging_dir().join("staged")).unwrap();
        assert_eq!(staged, b"in flight");
        assert!(!dead.exists());

        assert_eq!(live_others(&second).unwrap(), 1);
        drop(first_lock);
        assert_eq!(live_others(&second).unwrap(), 0);
        let (third, _third_lock) = claim(root.path());
        let mut expected = vec![second.staging_dir(), third.staging_dir()];
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
