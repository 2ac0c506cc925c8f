//! The referrers index: each repository keeps, per subject, the descriptor of
//! every manifest of it whose subject that is (written and removed with the
//! manifest, manifests.rs), so that a listing reads one folder.

use super::driver::Driver;
use super::{Result, Store, paths};
use crate::oci::{Algorithm, Descriptor, Digest, RepoName};

impl Store {
    /// Descriptors of the manifests of `name` whose subject is `subject`, sorted by
    /// digest, optionally only those of one artifact type.
    pub async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<String>,
    ) -> Result<Vec<Descriptor>> {
        let (name, subject) = (name.clone(), subject.clone());
        self.blocking(move |s| {
            let mut found = Vec::new();
            let dir = paths::referrers_dir(&name, &subject);
            for entry in s.driver().list(&dir)? {
                let bytes = s.driver().read(&dir.child(&entry))?;
                let Some(descriptor) =
                    bytes.and_then(|b| serde_json::from_slice::<Descriptor>(&b).ok())
                else {
                    continue;
                };
                if artifact_type
                    .as_ref()
                    .is_none_or(|t| descriptor.artifact_type.as_ref() == Some(t))
                {
                    found.push(descriptor);
                }
            }
            found.sort_by(|a, b| a.digest.cmp(&b.digest));
            Ok(found)
        })
        .await
    }
}

/// Moves the referrers index of `repo` out of the first layout,
/// `_referrers/<alg>/<subject hex>/<alg>-<hex>`, into today's (paths.rs);
/// returns how many entries moved. Each is written in its new place before
/// it leaves the old, so a crash half-way loses none (the next start moves
/// the rest). The emptied folders stay: nothing reads them.
pub(super) fn move_old_referrers(driver: &dyn Driver, repo: &RepoName) -> Result<u64> {
    let mut moved = 0;
    for algorithm in Algorithm::ALL {
        let old = paths::referrers_root(repo).child(algorithm.as_str());
        for subject in driver.list(&old)? {
            let Ok(subject_digest) = format!("{}:{subject}", algorithm.as_str()).parse::<Digest>()
            else {
                continue;
            };
            let dir = old.child(&subject);
            for entry in driver.list(&dir)? {
                let from = dir.child(&entry);
                let referrer = entry
                    .split_once('-')
                    .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok());
                if let (Some(referrer), Some(descriptor)) = (referrer, driver.read(&from)?) {
                    let to = paths::referrer(repo, &subject_digest, &referrer);
                    driver.write(&to, &descriptor)?;
                    moved += 1;
                }
                driver.remove(&from)?;
            }
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Reference;
    use crate::oci::manifest::OCI_MANIFEST;
    use bytes::Bytes;
    use serde_json::json;

    #[tokio::test]
    async fn an_index_in_the_first_layout_is_moved_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let subject = Digest::sha256(b"subject");
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": Digest::sha256(b"{}").to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 7},
        }))
        .unwrap();
        let manifest = crate::oci::Manifest::parse(Some(OCI_MANIFEST), &body).unwrap();
        let digest = Digest::sha256(&body);
        store
            .put_fetched_manifest(
                &name,
                &Reference::Digest(digest.clone()),
                manifest,
                Bytes::from(body),
            )
            .await
            .unwrap();
        let listed = store.referrers(&name, &subject, None).await.unwrap();
        assert_eq!(listed.len(), 1);
        // Where the first berth kept that entry.
        let new = store.file(&paths::referrer(&name, &subject, &digest));
        let old = store.file(&paths::referrers_root(&name)).join(format!(
            "sha256/{}/sha256-{}",
            subject.hex(),
            digest.hex()
        ));
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::rename(&new, &old).unwrap();
        drop(store);

        let store = Store::open(dir.path(), 0).await.unwrap();
        assert!(!old.exists() && new.exists());
        assert_eq!(
            store.referrers(&name, &subject, None).await.unwrap(),
            listed
        );
    }
}
