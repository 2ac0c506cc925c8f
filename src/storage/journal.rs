//! Tests only: a journal of the durable operations a store makes, so that a
//! test can check their order against the promises in the store's doc comment
//! (`mod.rs`). A crash test cannot: SIGKILL keeps the page cache, so it passes
//! with every fsync removed; the journal sees the missing fsync.
//!
//! Every operation that matters goes through `durable.rs` (and the writes of
//! `sink.rs`), which calls [`record`] through its `record!` macro; outside tests
//! that macro expands to nothing, so production pays nothing.
//!
//! The journals are global and keyed by the store's root, not kept per thread:
//! the store does its file work on tokio's blocking pool (and a push writes and
//! hashes on two more threads), so a thread-local would miss most operations,
//! and a per-store recorder would have to be passed through every function of
//! `durable.rs`. Tests that run side by side use roots of their own, so each
//! journal sees only its store's operations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// One durable operation, recorded once it has succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Bytes written to the file.
    Write(PathBuf),
    /// The file's content fsynced.
    Fsync(PathBuf),
    /// An empty file created in place (a repository's link to a blob).
    Create(PathBuf),
    /// A folder created.
    CreateDir(PathBuf),
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    /// A file removed.
    Remove(PathBuf),
    /// The folder fsynced: the names created, renamed or removed in it are durable.
    FsyncDir(PathBuf),
}

impl Op {
    /// The paths the operation touches.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        let (first, second) = match self {
            Op::Rename { from, to } => (from, Some(to)),
            Op::Write(p)
            | Op::Fsync(p)
            | Op::Create(p)
            | Op::CreateDir(p)
            | Op::Remove(p)
            | Op::FsyncDir(p) => (p, None),
        };
        std::iter::once(first.as_path()).chain(second.map(PathBuf::as_path))
    }
}

/// Every journal being kept (a dropped one is skipped and forgotten).
static JOURNALS: Mutex<Vec<Weak<Journal>>> = Mutex::new(Vec::new());

/// Adds `op` to the journal of every store whose root holds one of its paths.
pub fn record(op: Op) {
    let mut journals = JOURNALS.lock().unwrap_or_else(PoisonError::into_inner);
    journals.retain(|j| j.strong_count() > 0);
    for journal in journals.iter().filter_map(Weak::upgrade) {
        if op.paths().any(|p| p.starts_with(&journal.root)) {
            journal.ops().push(op.clone());
        }
    }
}

/// The operations made under one root, in the order they were made.
pub struct Journal {
    root: PathBuf,
    ops: Mutex<Vec<Op>>,
}

impl Journal {
    /// Starts recording what is done under `root`, which must be the path the
    /// store is opened with, in canonical form: the writes of `sink.rs` know only
    /// their file, whose path they read from `/proc/self/fd` (tests run on Linux).
    pub fn start(root: &Path) -> Arc<Journal> {
        assert_eq!(
            root.canonicalize().unwrap(),
            root,
            "a journal's root must be canonical"
        );
        let journal = Arc::new(Journal {
            root: root.to_owned(),
            ops: Mutex::new(Vec::new()),
        });
        let mut journals = JOURNALS.lock().unwrap_or_else(PoisonError::into_inner);
        journals.push(Arc::downgrade(&journal));
        journal
    }

    fn ops(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What was recorded since the last call. Taken right after a store call
    /// returns, it holds exactly what that call did before answering.
    pub fn take(&self) -> Ops {
        Ops {
            root: self.root.clone(),
            ops: std::mem::take(&mut *self.ops()),
        }
    }
}

/// The path of an open file, for recording its writes.
pub fn path_of(file: &std::fs::File) -> PathBuf {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .expect("tests run on Linux, which has /proc/self/fd")
}

/// A recorded stretch of operations, with questions about their order. Each
/// question panics, printing the whole stretch, when the answer is "never".
pub struct Ops {
    root: PathBuf,
    ops: Vec<Op>,
}

impl Ops {
    /// Index of the last rename onto `path`, and the file renamed.
    pub fn renamed(&self, path: &Path) -> (usize, &Path) {
        self.ops
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, op)| match op {
                Op::Rename { from, to } if to == path => Some((i, from.as_path())),
                _ => None,
            })
            .unwrap_or_else(|| self.fail(&format!("nothing renamed onto {}", self.show(path))))
    }

    /// Index of the first `op` at or after `from`.
    pub fn find(&self, op: &Op, from: usize) -> Option<usize> {
        self.ops[from..]
            .iter()
            .position(|o| o == op)
            .map(|i| i + from)
    }

    /// Index of the first `op`.
    pub fn index(&self, op: &Op) -> usize {
        self.find(op, 0)
            .unwrap_or_else(|| self.fail(&format!("never {}", self.show_op(op))))
    }

    /// Index of the first fsync of the folder holding `path` after index `after`:
    /// where what was done to `path` at `after` becomes durable.
    pub fn folder_synced(&self, path: &Path, after: usize) -> usize {
        let folder = path.parent().expect("store paths have a parent");
        self.find(&Op::FsyncDir(folder.to_owned()), after + 1)
            .unwrap_or_else(|| {
                self.fail(&format!(
                    "{} changed at #{after}, its folder never fsynced after",
                    self.show(path)
                ))
            })
    }

    /// Checks that `path` was published the safe way: written in a file of its
    /// own, that file fsynced after its last write, renamed onto `path`, and the
    /// folder of `path` fsynced after the rename. Returns the index of that
    /// folder fsync, from which the new content of `path` is durable.
    pub fn published(&self, path: &Path) -> usize {
        let (rename, from) = self.renamed(path);
        let writes: Vec<usize> = (0..rename)
            .filter(|&i| self.ops[i] == Op::Write(from.to_owned()))
            .collect();
        let Some(&last_write) = writes.last() else {
            self.fail(&format!("{} renamed unwritten", self.show(from)));
        };
        let synced = (last_write..rename).any(|i| self.ops[i] == Op::Fsync(from.to_owned()));
        if !synced {
            self.fail(&format!(
                "{} renamed onto {} without an fsync after its last write (#{last_write})",
                self.show(from),
                self.show(path)
            ));
        }
        self.folder_synced(path, rename)
    }

    /// Checks that the empty file `path` was created and its folder fsynced
    /// after; returns the index of that fsync.
    pub fn created(&self, path: &Path) -> usize {
        let created = self.index(&Op::Create(path.to_owned()));
        self.folder_synced(path, created)
    }

    /// Checks that `path` was removed and its folder fsynced after; returns the
    /// index of that fsync.
    pub fn removed(&self, path: &Path) -> usize {
        let removed = self.index(&Op::Remove(path.to_owned()));
        self.folder_synced(path, removed)
    }

    /// Checks that every folder created was made durable in its parent.
    pub fn new_folders_durable(&self) {
        for (i, op) in self.ops.iter().enumerate() {
            if let Op::CreateDir(dir) = op {
                self.folder_synced(dir, i);
            }
        }
    }

    /// Fails unless `earlier` comes before `later`, each an index with what it means.
    pub fn before(&self, (earlier, what): (usize, &str), (later, then): (usize, &str)) {
        if earlier >= later {
            self.fail(&format!(
                "{what} (#{earlier}) must come before {then} (#{later})"
            ));
        }
    }

    fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn show_op(&self, op: &Op) -> String {
        let s = |p: &PathBuf| self.show(p);
        match op {
            Op::Write(p) => format!("write {}", s(p)),
            Op::Fsync(p) => format!("fsync {}", s(p)),
            Op::Create(p) => format!("create {}", s(p)),
            Op::CreateDir(p) => format!("mkdir {}", s(p)),
            Op::Rename { from, to } => format!("rename {} -> {}", s(from), s(to)),
            Op::Remove(p) => format!("remove {}", s(p)),
            Op::FsyncDir(p) => format!("fsync folder {}", s(p)),
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{why}\n{self}")
    }
}

impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "operations under {}:", self.root.display())?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  #{i:<3} {}", self.show_op(op))?;
        }
        Ok(())
    }
}
