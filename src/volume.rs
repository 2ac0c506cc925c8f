//! `berth prepare-volume`: what the registry pod's init container runs before the
//! registry starts. It gives the data folder to the registry's user, so that
//! `berth serve` runs as non-root on volumes that the kubelet does not chown for
//! the pod's `fsGroup`: hostPath volumes and several local provisioners hand
//! the pod a folder owned by root with mode 0755, which the registry cannot write.
//!
//! The rule is the one of `fsGroupChangePolicy: OnRootMismatch`:
//! - the top folder already belongs to `UID:GID`: nothing is done (one `stat`,
//!   so a restart of a large registry costs nothing);
//! - otherwise every entry on the volume that does not belong to `UID:GID` is
//!   given to it, the top folder last. On a fresh volume that is the top folder
//!   alone; on a volume written by another user (an older install under another
//!   uid, files copied in by root) it is what lets the registry write its blobs,
//!   tags and upload sessions there. A crash half-way leaves the top folder
//!   foreign, so the next start walks again.
//!
//! The walk never follows a symbolic link (it changes the link itself) and
//! never leaves the volume's filesystem, so a link or a mount inside the volume
//! cannot make it chown anything else. It only needs CAP_CHOWN: it changes no
//! mode, and it reads folders through their "other" bits, which every folder
//! the registry makes has (a folder it cannot read is an error naming it).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct PrepareVolumeArgs {
    /// The volume's folder, as mounted in the pod
    #[arg(long, value_name = "DIR")]
    pub path: PathBuf,
    /// The user and group that must own it, as numbers
    #[arg(long, value_name = "UID:GID", value_parser = parse_owner)]
    pub owner: Owner,
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// Parses `UID:GID` (numbers only: the berth image has no /etc/passwd).
pub fn parse_owner(text: &str) -> Result<Owner, VolumeError> {
    let bad = || VolumeError::Owner(text.to_string());
    let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
    Ok(Owner {
        uid: uid.parse().map_err(|_| bad())?,
        gid: gid.parse().map_err(|_| bad())?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0:?} is not an owner: UID:GID, two numbers")]
    Owner(String),
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error(
        "cannot give {0} to {1}: {2} (the init container runs as root with CAP_CHOWN; without them, set spec.storage.prepareVolume: false and use a volume that honours fsGroup)"
    )]
    Chown(PathBuf, Owner, #[source] std::io::Error),
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The top folder already belonged to the owner: nothing was walked.
    AlreadyOwned,
    /// This many entries (the top folder included) were given to the owner.
    Changed(u64),
}

impl std::fmt::Display for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prepared::AlreadyOwned => write!(f, "already owned, nothing changed"),
            Prepared::Changed(1) => write!(f, "1 entry given to its user"),
            Prepared::Changed(n) => write!(f, "{n} entries given to their user"),
        }
    }
}

/// Gives `path` (and, when it is not the owner's yet, what is in it) to `owner`.
pub fn prepare(path: &Path, owner: Owner) -> Result<Prepared, VolumeError> {
    let top = std::fs::metadata(path).map_err(|e| VolumeError::Read(path.into(), e))?;
    if !top.is_dir() {
        return Err(VolumeError::NotAFolder(path.into()));
    }
    if owned_by(&top, owner) {
        return Ok(Prepared::AlreadyOwned);
    }
    let device = top.dev();
    let mut changed = 0;
    // Depth first with an explicit stack: a deep tree cannot overflow ours.
    let mut folders = vec![path.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|e| VolumeError::Read(folder.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| VolumeError::Read(folder.clone(), e))?;
            let entry_path = entry.path();
            // symlink_metadata: a link is looked at (and changed) as itself.
            let meta = std::fs::symlink_metadata(&entry_path)
                .map_err(|e| VolumeError::Read(entry_path.clone(), e))?;
            if meta.dev() != device {
                // Another filesystem mounted inside the volume is not ours to change.
                continue;
            }
            if meta.is_dir() {
                folders.push(entry_path.clone());
            }
            if !owned_by(&meta, owner) {
                chown(&entry_path, owner)?;
                changed += 1;
            }
        }
    }
    // The top folder last: until it is the owner's, the next start walks again.
    chown(path, owner)?;
    Ok(Prepared::Changed(changed + 1))
}

fn owned_by(meta: &std::fs::Metadata, owner: Owner) -> bool {
    meta.uid() == owner.uid && meta.gid() == owner.gid
}

fn chown(path: &Path, owner: Owner) -> Result<(), VolumeError> {
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| VolumeError::Chown(path.into(), owner, e))
}

/// The command: prepares the folder and says what it did (in the pod's log).
pub fn run(args: &PrepareVolumeArgs) -> Result<(), VolumeError> {
    let prepared = prepare(&args.path, args.owner)?;
    tracing::info!(path = %args.path.display(), owner = %args.owner, "volume prepared: {prepared}");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The chown itself needs root (CI runs as root); as another user the tests
    //! check that the refusal is reported, naming the folder.

    use super::*;
    use std::os::unix::fs::symlink;

    fn me(dir: &Path) -> Owner {
        let meta = std::fs::metadata(dir).unwrap();
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }

    fn owner_of(path: &Path) -> Owner {
        let meta = std::fs::symlink_metadata(path).unwrap();
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }

    const REGISTRY: Owner = Owner {
        uid: 65532,
        gid: 65532,
    };

    #[test]
    fn owners_are_two_numbers() {
        assert_eq!(parse_owner("65532:65532").unwrap(), REGISTRY);
        assert_eq!(parse_owner("0:10").unwrap(), Owner { uid: 0, gid: 10 });
        for bad in ["65532", "nonroot:nonroot", "1:", ":1", "-1:1", "1:2:3"] {
            assert!(
                matches!(parse_owner(bad), Err(VolumeError::Owner(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_folder_that_is_already_the_owners_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"x").unwrap();
        let owner = me(dir.path());
        let other = Owner { uid: 1, gid: 1 };
        let root = owner.uid == 0;
        if root {
            // Someone else's file inside is not looked at: the top decides.
            chown(&blob, other).unwrap();
        }
        assert_eq!(prepare(dir.path(), owner).unwrap(), Prepared::AlreadyOwned);
        assert_eq!(owner_of(dir.path()), owner);
        if root {
            assert_eq!(owner_of(&blob), other);
        }
    }

    #[test]
    fn a_foreign_volume_is_given_to_the_owner_but_not_what_links_point_to() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(volume.join("blobs/sha256/ab")).unwrap();
        std::fs::write(volume.join("blobs/sha256/ab/data"), b"layer").unwrap();
        // A link out of the volume: its target must stay as it is.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"not the registry's").unwrap();
        symlink(&outside, volume.join("link")).unwrap();
        let before = owner_of(&outside);

        let result = prepare(&volume, REGISTRY);
        if me(dir.path()).uid != 0 {
            // Not root: the kernel refuses, and the error says which folder.
            let error = result.unwrap_err();
            assert!(matches!(error, VolumeError::Chown(..)), "{error}");
            assert!(error.to_string().contains("65532:65532"), "{error}");
            return;
        }
        // volume, blobs, sha256, ab, data, link.
        assert_eq!(result.unwrap(), Prepared::Changed(6));
        for path in [
            "",
            "blobs",
            "blobs/sha256",
            "blobs/sha256/ab",
            "blobs/sha256/ab/data",
            "link",
        ] {
            assert_eq!(owner_of(&volume.join(path)), REGISTRY, "{path:?}");
        }
        assert_eq!(owner_of(&outside), before, "the link's target was changed");
        // The next start finds the top folder the registry's: nothing to do.
        assert_eq!(prepare(&volume, REGISTRY).unwrap(), Prepared::AlreadyOwned);
    }

    #[test]
    fn a_fresh_root_owned_volume_needs_only_its_top_folder() {
        let dir = tempfile::tempdir().unwrap();
        if me(dir.path()).uid != 0 {
            return; // Covered by the refusal above; making a foreign folder needs root.
        }
        assert_eq!(prepare(dir.path(), REGISTRY).unwrap(), Prepared::Changed(1));
        assert_eq!(owner_of(dir.path()), REGISTRY);
    }

    #[test]
    fn a_file_is_not_a_volume() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            prepare(&file, REGISTRY),
            Err(VolumeError::NotAFolder(_))
        ));
        assert!(matches!(
            prepare(&dir.path().join("missing"), REGISTRY),
            Err(VolumeError::Read(..))
        ));
    }
}
