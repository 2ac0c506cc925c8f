//! Every repository holding anything, so that `/v2/_catalog` never walks the
//! store (distribution #3678: minutes on large stores).
//!
//! On a file system one process serves the store: the index is built by one
//! walk when it opens and kept in memory. In a bucket that several replicas
//! share, a repository another replica created must show at once, so each
//! repository also has an empty marker object, `_catalog/<name>` (paths.rs),
//! written when it first gets content, and the catalog lists them: one
//! request per thousand repositories. Repositories never leave the catalog,
//! so what a replica once saw stays true, and it remembers it.

use super::Result;
use super::driver::Driver;
use super::paths;
use crate::oci::RepoName;
use std::collections::BTreeSet;
use std::sync::RwLock;

pub(super) struct Catalog {
    /// Repositories known to hold something.
    known: RwLock<BTreeSet<RepoName>>,
    /// Whether the markers in the store are the truth (a shared bucket).
    shared: bool,
}

impl Catalog {
    /// The index of a store that one process serves.
    pub fn local(known: BTreeSet<RepoName>) -> Catalog {
        Catalog {
            known: RwLock::new(known),
            shared: false,
        }
    }

    /// The index of a store that replicas share, from its markers. A store
    /// written before the markers is walked once, and gets them.
    pub fn shared(driver: &dyn Driver) -> Result<Catalog> {
        let catalog = Catalog {
            known: RwLock::new(BTreeSet::new()),
            shared: true,
        };
        let marked = catalog.all(driver)?;
        if marked.is_empty() {
            let mut found = BTreeSet::new();
            super::index_repositories(driver, &paths::repositories_dir(), "", &mut found)?;
            for name in &found {
                catalog.remember(driver, name)?;
            }
        }
        Ok(catalog)
    }

    fn known(&self, name: &RepoName) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    fn note(&self, name: &RepoName) {
        if !self.known(name) {
            let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
            known.insert(name.clone());
        }
    }

    /// Records that `name` holds something (after its content is stored).
    pub fn remember(&self, driver: &dyn Driver, name: &RepoName) -> Result<()> {
        if self.known(name) {
            return Ok(());
        }
        if self.shared {
            driver.write_new(&paths::catalog_entry(name), b"")?;
        }
        self.note(name);
        Ok(())
    }

    pub fn contains(&self, driver: &dyn Driver, name: &RepoName) -> Result<bool> {
        if self.known(name) {
            return Ok(true);
        }
        if self.shared && driver.exists(&paths::catalog_entry(name))? {
            self.note(name);
            return Ok(true);
        }
        Ok(false)
    }

    /// Every repository, in lexical order.
    pub fn all(&self, driver: &dyn Driver) -> Result<Vec<RepoName>> {
        if !self.shared {
            let known = self.known.read().unwrap_or_else(|e| e.into_inner());
            return Ok(known.iter().cloned().collect());
        }
        let mut names = BTreeSet::new();
        for entry in driver.list(&paths::catalog_dir())? {
            // Names of other shapes are none that berth wrote.
            if let Some(name) = paths::catalog_name(&entry) {
                names.insert(name);
            }
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.extend(names.iter().cloned());
        Ok(names.into_iter().collect())
    }
}
