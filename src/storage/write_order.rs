//! The order of writes promised in the store's doc comment (`mod.rs`), checked
//! against a journal of the operations each call makes (`journal.rs`). The
//! ops are taken right after a call returns, so whatever the checks find in
//! them happened before the client's answer (the 201 or 202).

use super::journal::{Journal, Op, Ops};
use super::{Body, Store, paths};
use crate::oci::manifest::OCI_MANIFEST;
use crate::oci::{Digest, Manifest, Reference, RepoName, Tag};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

/// A store on a fresh root, and the journal of what is done there after it opened.
async fn recorded_store() -> (tempfile::TempDir, Store, Arc<Journal>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let store = Store::open(&root, 0).await.unwrap();
    let journal = Journal::start(&root);
    (dir, store, journal)
}

/// A body that arrives in `pieces` pieces.
fn body(bytes: &[u8], pieces: usize) -> Body {
    let size = bytes.len().div_ceil(pieces).max(1);
    let chunks: Vec<_> = bytes
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

fn tag(name: &str) -> Reference {
    Reference::Tag(name.parse().unwrap())
}

/// Checks what a blob commit promises: the data file is fsynced after its
/// last write and before it is renamed to `blobs/…`, the repository's link is
/// created after that rename, and the folders of both names (and of any folder
/// made for them) are fsynced after, before the call returns.
fn check_blob_commit(store: &Store, ops: &Ops, name: &RepoName, digest: &Digest) {
    let blob = store.file(&paths::blob(digest));
    let link = store.file(&paths::blob_link(name, digest));
    ops.published(&blob);
    ops.created(&link);
    ops.before(
        (ops.renamed(&blob).0, "the blob's rename"),
        (ops.index(&Op::Create(link)), "the link's creation"),
    );
    ops.new_folders_durable();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monolithic_blob_is_durable_before_its_201() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    // One batch (verified, written and committed in one go), and one large
    // enough to stream through the writer thread.
    for len in [5_000, 3 << 20] {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256(&bytes);
        store
            .put_blob(&name, &digest, body(&bytes, 7))
            .await
            .unwrap();
        check_blob_commit(&store, &journal.take(), &name, &digest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_blob_is_durable_before_its_201() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    let bytes: Vec<u8> = (0..3 << 20).map(|i| (i % 241) as u8).collect();
    let digest = Digest::sha256(&bytes);
    let (first, rest) = bytes.split_at(1 << 20);
    let (second, last) = rest.split_at(1 << 20);
    let id = store.start_upload(&name).await.unwrap();
    store
        .append_upload(&name, id, Some(0), None, body(first, 3))
        .await
        .unwrap();
    store
        .append_upload(&name, id, Some(1 << 20), None, body(second, 1))
        .await
        .unwrap();
    // Taken only after the PUT, so that the PATCHes' writes are in it too.
    store
        .finish_upload(&name, id, &digest, body(last, 2))
        .await
        .unwrap();
    check_blob_commit(&store, &journal.take(), &name, &digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_pushed_again_syncs_its_folder_and_new_link() {
    let (_dir, store, journal) = recorded_store().await;
    let digest = Digest::sha256(b"layer");
    store
        .put_blob(&repo("team/app"), &digest, body(b"layer", 1))
        .await
        .unwrap();
    journal.take();
    // Into another repository: nothing to rename, but another upload of the
    // same digest may have renamed the blob there without syncing its folder
    // yet (or crashed before it could), so the folder is fsynced all the same.
    let other = repo("team/other");
    store
        .put_blob(&other, &digest, body(b"layer", 1))
        .await
        .unwrap();
    let ops = journal.take();
    let blob = store.file(&paths::blob(&digest));
    ops.index(&Op::FsyncDir(blob.parent().unwrap().to_owned()));
    ops.created(&store.file(&paths::blob_link(&other, &digest)));
    ops.new_folders_durable();
}

/// Pushes a config and a layer into `name` and returns an image manifest of
/// them (with `subject`, if any) and its bytes; `seed` makes it unique.
async fn image(
    store: &Store,
    name: &RepoName,
    seed: &str,
    subject: Option<&Digest>,
) -> (Manifest, Bytes) {
    let mut descriptors = Vec::new();
    for part in ["config", "layer"] {
        let bytes = format!("{part} of {seed}").into_bytes();
        let digest = Digest::sha256(&bytes);
        store
            .put_blob(name, &digest, body(&bytes, 1))
            .await
            .unwrap();
        descriptors.push(serde_json::json!({
            "mediaType": "application/octet-stream",
            "digest": digest.to_string(),
            "size": bytes.len(),
        }));
    }
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptors[0],
        "layers": [descriptors[1]],
    });
    if let Some(subject) = subject {
        doc["subject"] = serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": subject.to_string(),
            "size": 123,
        });
    }
    let bytes = serde_json::to_vec(&doc).unwrap();
    let manifest = Manifest::parse(Some(OCI_MANIFEST), &bytes).unwrap();
    (manifest, Bytes::from(bytes))
}

/// The tag file's content.
fn tag_content(path: &Path) -> String {
    String::from_utf8(std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_is_durable_in_order_before_its_tag() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    let subject = Digest::sha256(b"the image this one is about");
    let (manifest, bytes) = image(&store, &name, "signature", Some(&subject)).await;
    journal.take();
    let digest = store
        .put_manifest(&name, &tag("v1"), manifest, bytes)
        .await
        .unwrap();

    let ops = journal.take();
    let v1: Tag = "v1".parse().unwrap();
    // Each file is staged, fsynced, renamed and its folder fsynced; and each is
    // durable before the next is renamed into place: the bytes (as a blob),
    // the `_manifests` link, the referrers entry, the tag last.
    let steps = [
        (store.file(&paths::blob(&digest)), "the manifest's blob"),
        (
            store.file(&paths::manifest_link(&name, &digest)),
            "its `_manifests` link",
        ),
        (
            store.file(&paths::referrer(&name, &subject, &digest)),
            "its referrers entry",
        ),
        (store.file(&paths::tag(&name, &v1)), "the tag"),
    ];
    for pair in steps.windows(2) {
        let [(earlier, what), (later, then)] = pair else {
            unreachable!()
        };
        ops.before(
            (ops.published(earlier), &format!("{what} made durable")),
            (ops.renamed(later).0, &format!("the rename of {then}")),
        );
    }
    ops.published(&store.file(&paths::tag(&name, &v1)));
    ops.new_folders_durable();
    assert_eq!(
        tag_content(&store.file(&paths::tag(&name, &v1))),
        digest.to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moves_to_another_manifest_only_once_that_one_is_durable() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    let (first, first_bytes) = image(&store, &name, "one", None).await;
    store
        .put_manifest(&name, &tag("latest"), first, first_bytes)
        .await
        .unwrap();
    let (second, second_bytes) = image(&store, &name, "two", None).await;
    journal.take();
    let digest = store
        .put_manifest(&name, &tag("latest"), second, second_bytes)
        .await
        .unwrap();

    let ops = journal.take();
    let latest = store.file(&paths::tag(&name, &"latest".parse().unwrap()));
    // The tag's new content is fsynced before its rename (which replaces the
    // old one in one step), and the tag's folder after.
    let (tag_renamed, _) = ops.renamed(&latest);
    ops.published(&latest);
    ops.before(
        (
            ops.published(&store.file(&paths::blob(&digest))),
            "the new manifest's blob made durable",
        ),
        (tag_renamed, "the tag's rename"),
    );
    ops.before(
        (
            ops.published(&store.file(&paths::manifest_link(&name, &digest))),
            "its `_manifests` link made durable",
        ),
        (tag_renamed, "the tag's rename"),
    );
    assert_eq!(tag_content(&latest), digest.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_removes_tags_and_referrer_durably_before_the_manifest() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    let subject = Digest::sha256(b"the image this one is about");
    let (manifest, bytes) = image(&store, &name, "signature", Some(&subject)).await;
    let digest = store
        .put_manifest(&name, &tag("v1"), manifest.clone(), bytes.clone())
        .await
        .unwrap();
    store
        .put_manifest(&name, &tag("v2"), manifest, bytes)
        .await
        .unwrap();
    journal.take();
    store.delete_manifest(&name, &digest).await.unwrap();

    let ops = journal.take();
    let link = store.file(&paths::manifest_link(&name, &digest));
    // The reverse of a put: nothing may name the manifest once its link is
    // gone, so the tags and the referrers entry are removed, durably, first.
    let link_removed = ops.index(&Op::Remove(link.clone()));
    for tag in ["v1", "v2"] {
        ops.before(
            (
                ops.removed(&store.file(&paths::tag(&name, &tag.parse().unwrap()))),
                &format!("the removal of tag {tag} made durable"),
            ),
            (link_removed, "the removal of the `_manifests` link"),
        );
    }
    ops.before(
        (
            ops.removed(&store.file(&paths::referrer(&name, &subject, &digest))),
            "the removal of the referrers entry made durable",
        ),
        (link_removed, "the removal of the `_manifests` link"),
    );
    ops.removed(&link);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_tag_or_blob_link_is_durably_gone_before_the_202() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    let (manifest, bytes) = image(&store, &name, "one", None).await;
    store
        .put_manifest(&name, &tag("v1"), manifest.clone(), bytes)
        .await
        .unwrap();
    let v1: Tag = "v1".parse().unwrap();
    journal.take();
    store.delete_tag(&name, &v1).await.unwrap();
    journal.take().removed(&store.file(&paths::tag(&name, &v1)));

    let layer = &manifest.blobs[1].digest;
    store.delete_blob(&name, layer).await.unwrap();
    journal
        .take()
        .removed(&store.file(&paths::blob_link(&name, layer)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moved_back_to_a_stored_manifest_waits_for_its_blob_name() {
    let (_dir, store, journal) = recorded_store().await;
    let name = repo("team/app");
    let (first, first_bytes) = image(&store, &name, "one", None).await;
    let (second, second_bytes) = image(&store, &name, "two", None).await;
    let digest = store
        .put_manifest(&name, &tag("latest"), first.clone(), first_bytes.clone())
        .await
        .unwrap();
    store
        .put_manifest(&name, &tag("latest"), second, second_bytes)
        .await
        .unwrap();
    journal.take();
    store
        .put_manifest(&name, &tag("latest"), first, first_bytes)
        .await
        .unwrap();

    // Its bytes are stored already, so nothing is renamed into `blobs/`; but
    // another put of it may have renamed them there and not fsynced the folder
    // yet (or crashed before it could), so the folder is fsynced before the tag
    // names the manifest, as commit_blob does for a blob pushed again.
    let ops = journal.take();
    let latest = store.file(&paths::tag(&name, &"latest".parse().unwrap()));
    let (tag_renamed, _) = ops.renamed(&latest);
    ops.before(
        (
            ops.index(&Op::FsyncDir(
                store
                    .file(&paths::blob(&digest))
                    .parent()
                    .unwrap()
                    .to_owned(),
            )),
            "the fsync of the manifest's blob folder",
        ),
        (tag_renamed, "the tag's rename"),
    );
    ops.published(&latest);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_blob_is_durable_before_its_201() {
    let (_dir, store, journal) = recorded_store().await;
    let digest = Digest::sha256(b"layer");
    let from = repo("team/app");
    store
        .put_blob(&from, &digest, body(b"layer", 1))
        .await
        .unwrap();
    journal.take();
    let name = repo("team/other");
    store
        .mount_blob(&name, &from, &digest)
        .await
        .unwrap()
        .unwrap();
    // As for a blob pushed again: the blob's folder too, for the same reason.
    let ops = journal.take();
    let blob = store.file(&paths::blob(&digest));
    ops.index(&Op::FsyncDir(blob.parent().unwrap().to_owned()));
    ops.created(&store.file(&paths::blob_link(&name, &digest)));
    ops.new_folders_durable();
}
