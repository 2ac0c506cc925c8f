//! The object-store driver: each key is an object of a bucket (S3 and the
//! stores that speak it, Azure Blob, GCS: the object_store crate), under an
//! optional prefix. The store's logic calls it from the blocking pool, as it
//! does every driver, and each call waits there for its requests.
//!
//! * Every write is one PUT, which an object store makes visible whole and
//!   durable before it answers: nothing is ever left in a [`Pending`].
//! * `write_new` and `create` are conditional PUTs (`If-None-Match: *`), so
//!   two replicas writing one content-addressed key store it once.
//! * A blob's modification time cannot change without rewriting it, so
//!   touching a blob (a mount, a push of a blob already stored) writes an
//!   empty marker `touched/<its key>`, and a blob's `stat` takes the later
//!   of the two times.
//! * Upload sessions live in the bucket, so that a chunked upload may move
//!   between replicas: `uploads/<id>/info.json`, and one object per chunk,
//!   `uploads/<id>/chunks/<offset, 20 digits>`, streamed in as a multipart
//!   upload once it passes [`PART`]. A session holds the chunks that follow
//!   each other from offset 0. Finishing copies a single chunk to the blob's
//!   key inside the store, or streams several into one multipart upload.
//! * Collections move a blob to `trash/` before they purge it, and any read
//!   of a blob puts it back from there (shared_gc.rs).
//! * Files staged by this process (single-request uploads, blobs fetched
//!   from upstream) stay on local disk in a staging folder (staging.rs),
//!   and are uploaded when committed.

use super::driver::{Chunk, Claim, Claimed, Driver, Meta, Source};
use super::durable::Pending;
use super::paths::{self, Key};
use super::read::BlobContent;
use super::staging::Staging;
use super::{Result, StoreError};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::signer::{Method, Signer};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;
use uuid::Uuid;

/// Bytes gathered before a write becomes a multipart upload, and the size of
/// its parts (S3 refuses parts under 5 MiB but the last).
pub const PART: usize = 8 << 20;

/// Parts of one multipart upload sent at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Copies inside the store work up to this size (S3's CopyObject limit).
pub const COPY_LIMIT: u64 = 5 << 30;

pub struct ObjectDriver {
    store: Arc<dyn ObjectStore>,
    runtime: Handle,
    /// This process's staging folder, on local disk.
    staging: Staging,
    /// With `--storage-redirect`: what signs URLs of the bucket, and the
    /// prefix its keys get first.
    signing: Option<(Arc<dyn Signer>, String)>,
    /// The part each offset claim of a session names, as read so far. A
    /// claim never changes once made (see [`ObjectChunk`]), so what was read
    /// stays true; without this, each append read every earlier claim again
    /// (quadratic in the chunks of an upload).
    claims: std::sync::Mutex<HashMap<(Uuid, u64), String>>,
}

/// Claims remembered at most; past it the memory starts again (sessions that
/// other replicas purged leave theirs behind).
const CLAIMS_KEPT: usize = 100_000;

impl ObjectDriver {
    /// A driver on `store`, staging in a fresh folder under `scratch` (whose
    /// dead neighbours it clears). Called on the runtime it will wait on.
    pub fn new(store: Arc<dyn ObjectStore>, scratch: &Path) -> io::Result<ObjectDriver> {
        super::durable::ensure_dir(scratch)?;
        Ok(ObjectDriver {
            store,
            runtime: Handle::current(),
            staging: Staging::claim(scratch)?,
            signing: None,
            claims: std::sync::Mutex::default(),
        })
    }

    /// Hands out signed URLs of objects (see [`ObjectDriver::signed_get`]).
    pub fn with_signer(mut self, signer: Arc<dyn Signer>, prefix: String) -> ObjectDriver {
        self.signing = Some((signer, prefix));
        self
    }

    /// Whether this driver hands out signed URLs.
    pub fn signs(&self) -> bool {
        self.signing.is_some()
    }

    /// A URL anyone may GET `key` at for `life`. Called on the runtime:
    /// signing may send requests (a refresh of credentials that expire, a
    /// user delegation key on Azure, GCS's signBlob without a private key).
    pub async fn signed_get(&self, key: &Key, life: Duration) -> io::Result<String> {
        let Some((signer, prefix)) = &self.signing else {
            return Err(io::Error::other("this store does not sign URLs"));
        };
        let location = match prefix.as_str() {
            "" => path(key),
            prefix => ObjectPath::from(format!("{prefix}/{}", key.as_str())),
        };
        let url = signer
            .signed_url(Method::GET, &location, life)
            .await
            .map_err(io::Error::other)?;
        Ok(url.into())
    }

    /// Waits for `future` on the runtime; called from the blocking pool only.
    fn wait<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// What the store says of `key`. A blob a collection moved to `trash/`
    /// is put back first (shared_gc.rs): whoever looks for it needs it.
    fn head(&self, key: &Key) -> io::Result<Option<object_store::ObjectMeta>> {
        match self.wait(self.store.head(&path(key))) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) if self.restore(key)? => self
                .wait(self.store.head(&path(key)))
                .map(Some)
                .map_err(io_error),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    fn delete(&self, object: &ObjectPath) -> io::Result<()> {
        gone(self.wait(self.store.delete(object)))
    }

    /// Copies a blob back from `trash/`; says whether it was there.
    fn restore(&self, key: &Key) -> io::Result<bool> {
        let Some(trashed) = trashed(key) else {
            return Ok(false);
        };
        match self.wait(self.store.copy(&trashed, &path(key))) {
            Ok(()) => {
                tracing::info!(blob = %key, "a blob a collection had moved aside is wanted: put back");
                Ok(true)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Moves the blob `key` to `trash/`; `false` if it is not there.
    pub fn trash(&self, key: &Key) -> io::Result<bool> {
        let trashed = trashed(key).expect("only blobs go to trash/");
        match self.wait(self.store.copy(&path(key), &trashed)) {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(io_error(e)),
        }
        self.delete(&path(key))?;
        Ok(true)
    }

    /// Puts a blob moved to `trash/` back; says whether it was there.
    pub fn untrash(&self, key: &Key) -> io::Result<bool> {
        let restored = self.restore(key)?;
        if restored {
            self.delete(&trashed(key).expect("only blobs go to trash/"))?;
        } else {
            tracing::error!(blob = %key, "a blob to put back was not in trash/");
        }
        Ok(restored)
    }

    /// Removes for good a blob moved to `trash/`, and its touch marker.
    pub fn purge(&self, key: &Key) -> io::Result<()> {
        for object in [trashed(key), touched(key)].into_iter().flatten() {
            self.delete(&object)?;
        }
        Ok(())
    }

    /// When the blob `key` was last pushed again or mounted, if ever.
    pub fn touched_at(&self, key: &Key) -> io::Result<Option<SystemTime>> {
        let Some(marker) = touched(key) else {
            return Ok(None);
        };
        match self.wait(self.store.head(&marker)) {
            Ok(m) => Ok(Some(meta(&m).modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    /// The blobs left in `trash/` (by a collection that stopped half-way).
    pub fn trashed_blobs(&self) -> io::Result<Vec<Key>> {
        let mut keys = Vec::new();
        let mut stream = self.store.list(Some(&ObjectPath::from("trash/blobs")));
        while let Some(object) = self.wait(stream.next()) {
            let object = object.map_err(io_error)?;
            if let Some(rest) = object.location.as_ref().strip_prefix("trash/blobs/") {
                keys.push(paths::blobs_dir().child(rest));
            }
        }
        Ok(keys)
    }

    /// Creates `key` unless it exists; its ETag, or `None` if it existed.
    pub fn create_versioned(&self, key: &Key, bytes: &[u8]) -> io::Result<Option<String>> {
        self.put_versioned(key, bytes, PutMode::Create)
    }

    /// Replaces `key` if its ETag is still `e_tag`; the new ETag, or `None`.
    pub fn replace_versioned(
        &self,
        key: &Key,
        bytes: &[u8],
        e_tag: &str,
    ) -> io::Result<Option<String>> {
        let version = object_store::UpdateVersion {
            e_tag: Some(e_tag.to_owned()),
            version: None,
        };
        self.put_versioned(key, bytes, PutMode::Update(version))
    }

    fn put_versioned(&self, key: &Key, bytes: &[u8], mode: PutMode) -> io::Result<Option<String>> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self.wait(self.store.put_opts(&path(key), payload, options)) {
            Ok(done) => Ok(Some(done.e_tag.unwrap_or_default())),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    /// The bytes of `key` and their ETag; `None` if absent.
    pub fn read_versioned(&self, key: &Key) -> io::Result<Option<(Vec<u8>, String)>> {
        let got = match self.wait(self.store.get(&path(key))) {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let e_tag = got.meta.e_tag.clone().unwrap_or_default();
        let bytes = self.wait(got.bytes()).map_err(io_error)?;
        Ok(Some((bytes.to_vec(), e_tag)))
    }

    /// The chunks of session `id` that follow each other from offset 0:
    /// their objects and sizes. A chunk is the data object its offset's
    /// claim names (see [`ObjectChunk`]); data no claim names (a request cut
    /// off, or refused) is not part of the session.
    fn chunks(&self, id: &Uuid) -> io::Result<Vec<(ObjectPath, u64)>> {
        let dir = paths::upload_dir(id);
        let mut data = HashMap::new();
        let mut stream = self.store.list(Some(&path(&dir.child("chunks"))));
        while let Some(meta) = self.wait(stream.next()) {
            let meta = meta.map_err(io_error)?;
            if let Some(name) = meta.location.filename() {
                data.insert(name.to_owned(), (meta.location.clone(), meta.size));
            }
        }
        let mut claimed = Vec::new();
        let mut stream = self.store.list(Some(&path(&dir.child("offsets"))));
        while let Some(meta) = self.wait(stream.next()) {
            let meta = meta.map_err(io_error)?;
            if let Some(offset) = meta.location.filename().and_then(|n| n.parse::<u64>().ok()) {
                claimed.push(offset);
            }
        }
        claimed.sort_unstable();
        let mut chunks = Vec::new();
        let mut end = 0;
        for offset in claimed {
            if offset != end {
                break;
            }
            let Some(part) = self.claimed_part(id, offset)? else {
                break;
            };
            let name = format!("{offset:020}-{part}");
            let Some((location, size)) = data.remove(&name) else {
                break;
            };
            end += size;
            chunks.push((location, size));
        }
        Ok(chunks)
    }

    /// The part the claim on `offset` of session `id` names, if it is made.
    fn claimed_part(&self, id: &Uuid, offset: u64) -> io::Result<Option<String>> {
        let claims = || self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(part) = claims().get(&(*id, offset)) {
            return Ok(Some(part.clone()));
        }
        let Some(part) = self.read(&claim_key(id, offset))? else {
            return Ok(None);
        };
        let part = String::from_utf8_lossy(&part).into_owned();
        let mut claims = claims();
        if claims.len() >= CLAIMS_KEPT {
            claims.clear();
        }
        claims.insert((*id, offset), part.clone());
        Ok(Some(part))
    }

    /// Streams `parts` (each an object, or a local file) into the object at
    /// `to`: one PUT when they are small, else a multipart upload.
    fn upload(
        &self,
        to: &ObjectPath,
        mut parts: impl Iterator<Item = io::Result<Bytes>>,
        size: u64,
    ) -> io::Result<()> {
        if size <= PART as u64 {
            let mut payload = Vec::with_capacity(size as usize);
            for part in parts {
                payload.extend_from_slice(&part?);
            }
            self.wait(self.store.put(to, PutPayload::from(payload)))
                .map_err(io_error)?;
            return Ok(());
        }
        let upload = self.wait(self.store.put_multipart(to)).map_err(io_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let sent = parts.try_for_each(|part| {
            writer.put(part?);
            self.wait(writer.wait_for_capacity(PARTS_IN_FLIGHT))
                .map_err(io_error)
        });
        match sent {
            Ok(()) => {
                self.wait(writer.finish()).map_err(io_error)?;
                Ok(())
            }
            Err(e) => {
                let _ = self.wait(writer.abort());
                Err(e)
            }
        }
    }

    /// The bytes of the objects `sources`, one after the other.
    fn read_objects(&self, sources: Vec<ObjectPath>) -> ObjectsReader<'_> {
        ObjectsReader {
            driver: self,
            sources: sources.into_iter(),
            current: None,
            buffer: Bytes::new(),
        }
    }
}

/// The object of `key`.
fn path(key: &Key) -> ObjectPath {
    ObjectPath::from(key.as_str())
}

/// The claim on `offset` of session `id` (see [`ObjectChunk`]).
fn claim_key(id: &Uuid, offset: u64) -> Key {
    paths::upload_dir(id)
        .child("offsets")
        .child(&format!("{offset:020}"))
}

/// Where a collection moves the blob `key` before it decides (shared_gc.rs).
fn trashed(key: &Key) -> Option<ObjectPath> {
    key.as_str()
        .starts_with("blobs/")
        .then(|| ObjectPath::from(format!("trash/{key}")))
}

/// The marker whose time says when the blob `key` was last touched.
fn touched(key: &Key) -> Option<ObjectPath> {
    key.as_str()
        .starts_with("blobs/")
        .then(|| ObjectPath::from(format!("touched/{key}")))
}

/// A delete's answer: an object already gone is fine (GCS and Azure say
/// NotFound where S3 says nothing).
fn gone(deleted: object_store::Result<()>) -> io::Result<()> {
    match deleted {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

fn io_error(e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            io::ErrorKind::AlreadyExists
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn meta(m: &object_store::ObjectMeta) -> Meta {
    Meta {
        size: m.size,
        modified: SystemTime::from(m.last_modified),
    }
}

impl Driver for ObjectDriver {
    fn read(&self, key: &Key) -> io::Result<Option<Vec<u8>>> {
        let got = match self.wait(self.store.get(&path(key))) {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) if self.restore(key)? => {
                self.wait(self.store.get(&path(key))).map_err(io_error)?
            }
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        Ok(Some(self.wait(got.bytes()).map_err(io_error)?.to_vec()))
    }

    fn write(&self, key: &Key, bytes: &[u8]) -> io::Result<()> {
        let payload = PutPayload::from(bytes.to_vec());
        self.wait(self.store.put(&path(key), payload))
            .map_err(io_error)?;
        Ok(())
    }

    fn write_new(&self, key: &Key, bytes: &[u8]) -> io::Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self.wait(self.store.put_opts(&path(key), payload, options)) {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    fn create(&self, key: &Key, _pending: &mut Pending) -> io::Result<bool> {
        self.write_new(key, b"")
    }

    fn settle(&self, _key: &Key, _pending: &mut Pending) {}

    fn sync(&self, _pending: Pending) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, key: &Key) -> io::Result<bool> {
        if self.head(key)?.is_none() {
            return Ok(false);
        }
        self.delete(&path(key))?;
        if let Some(marker) = touched(key) {
            self.delete(&marker)?;
        }
        Ok(true)
    }

    fn stat(&self, key: &Key) -> io::Result<Option<Meta>> {
        let Some(object) = self.head(key)? else {
            return Ok(None);
        };
        let mut found = meta(&object);
        if let Some(marker) = touched(key) {
            match self.wait(self.store.head(&marker)) {
                Ok(m) => found.modified = found.modified.max(meta(&m).modified),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(Some(found))
    }

    fn size(&self, key: &Key) -> io::Result<Option<u64>> {
        Ok(self.head(key)?.map(|m| m.size))
    }

    fn exists(&self, key: &Key) -> io::Result<bool> {
        Ok(self.head(key)?.is_some())
    }

    fn touch(&self, key: &Key) -> io::Result<()> {
        // Only pull records are touched other than blobs, and they are empty.
        let target = touched(key).unwrap_or_else(|| path(key));
        self.wait(self.store.put(&target, PutPayload::default()))
            .map_err(io_error)?;
        Ok(())
    }

    fn list(&self, dir: &Key) -> io::Result<Vec<String>> {
        let listed = self
            .wait(self.store.list_with_delimiter(Some(&path(dir))))
            .map_err(io_error)?;
        let names = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|o| &o.location))
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        Ok(names)
    }

    fn walk(&self, dir: &Key, visit: &mut dyn FnMut(Key, Meta) -> Result<()>) -> Result<()> {
        let prefix = format!("{dir}/");
        let mut stream = self.store.list(Some(&path(dir)));
        while let Some(object) = self.wait(stream.next()) {
            let object = object.map_err(|e| StoreError::Io(io_error(e)))?;
            if let Some(rest) = object.location.as_ref().strip_prefix(&prefix) {
                visit(dir.child(rest), meta(&object))?;
            }
        }
        Ok(())
    }

    fn open(&self, key: &Key) -> io::Result<Option<BlobContent>> {
        Ok(self
            .head(key)?
            .map(|m| BlobContent::object(self.store.clone(), path(key), m.size)))
    }

    /// A bucket has no end that berth could see.
    fn available(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn probe(&self) -> io::Result<()> {
        let key = paths::probe(&Uuid::new_v4());
        self.write(&key, b"ok")?;
        self.delete(&path(&key))
    }

    fn staging_dir(&self) -> &Path {
        self.staging.dir()
    }

    fn upload_start(&self, id: &Uuid, info: &[u8]) -> io::Result<()> {
        self.write_new(&paths::upload_info(id), info)?;
        Ok(())
    }

    fn upload_size(&self, id: &Uuid) -> io::Result<Option<u64>> {
        if !self.exists(&paths::upload_info(id))? {
            return Ok(None);
        }
        Ok(Some(self.chunks(id)?.iter().map(|(_, size)| size).sum()))
    }

    /// Replicas do not lock a session: each chunk claims its offset
    /// (see [`ObjectChunk`]), so of two requests appending at one offset the
    /// second is refused, and a chunk once written never changes.
    fn upload_claim(&self, id: &Uuid, _wait: bool) -> io::Result<Claimed> {
        Ok(match self.upload_size(id)? {
            Some(size) => Claimed::Held(Claim::unlocked(), size),
            None => Claimed::Gone,
        })
    }

    fn upload_chunk(&self, id: &Uuid, offset: u64) -> io::Result<Box<dyn Chunk>> {
        let part = Uuid::new_v4().simple().to_string();
        let data = paths::upload_dir(id)
            .child("chunks")
            .child(&format!("{offset:020}-{part}"));
        Ok(Box::new(ObjectChunk {
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            path: path(&data),
            part,
            claim: path(&claim_key(id, offset)),
            buffer: Vec::new(),
            buffered: 0,
            upload: None,
            written: 0,
            state: ChunkState::Open,
        }))
    }

    fn upload_read(&self, id: &Uuid) -> io::Result<Box<dyn Read + Send + '_>> {
        let sources = self.chunks(id)?.into_iter().map(|(p, _)| p).collect();
        Ok(Box::new(self.read_objects(sources)))
    }

    /// A session that ends (finished or cancelled) keeps its claims, so
    /// that a request still streaming into it can claim nothing, and a
    /// finish still assembling it finds its chunks gone rather than others
    /// in their place; the upload purge removes them with the session's
    /// folder (here, once its `info.json` is gone).
    fn upload_remove(&self, id: &Uuid) -> io::Result<()> {
        let ended = !self.exists(&paths::upload_info(id))?;
        if ended {
            self.claims
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(session, _), _| session != id);
        }
        let claims = format!("{}/", paths::upload_dir(id).child("offsets"));
        let mut stream = self.store.list(Some(&path(&paths::upload_dir(id))));
        while let Some(object) = self.wait(stream.next()) {
            let location = object.map_err(io_error)?.location;
            if ended || !location.as_ref().starts_with(&claims) {
                self.delete(&location)?;
            }
        }
        Ok(())
    }

    /// Nothing to do: the bytes are stored once uploaded.
    fn prepare(&self, _source: &Source) -> io::Result<()> {
        Ok(())
    }

    fn publish(&self, source: &Source, key: &Key, _pending: &mut Pending) -> io::Result<bool> {
        let to = path(key);
        let exists = self.exists(key)?;
        match source {
            Source::File(file) => {
                if !exists {
                    let size = std::fs::metadata(file)?.len();
                    let pieces = ReadPieces(std::fs::File::open(file)?);
                    self.upload(&to, pieces, size)?;
                }
                // As a rename would: the staged file is gone either way.
                match std::fs::remove_file(file) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Source::Upload(_, _) if exists => {}
            Source::Upload(id, size) => {
                let chunks = self.chunks(id)?;
                if chunks.iter().map(|(_, s)| s).sum::<u64>() != *size {
                    return Err(io::Error::other(
                        "the upload's chunks changed before its commit",
                    ));
                }
                match chunks.as_slice() {
                    [(only, _)] if *size <= COPY_LIMIT => {
                        self.wait(self.store.copy(only, &to)).map_err(io_error)?;
                    }
                    _ => {
                        let sources = chunks.into_iter().map(|(p, _)| p).collect();
                        let pieces = ReadPieces(self.read_objects(sources));
                        self.upload(&to, pieces, *size)?;
                    }
                }
            }
        }
        Ok(!exists)
    }
}

/// A chunk of an upload session on its way to its object: held in memory up
/// to [`PART`], then streamed as a multipart upload, to a name of its own
/// (`chunks/<offset>-<part>`). Once its data is stored, it claims its
/// offset with a conditional PUT (`offsets/<offset>`, naming the part): of
/// two requests appending at one offset, the second to finish is refused
/// (416) and its data removed, and a chunk once claimed never changes, so a
/// replica's hash of the chunks it wrote stays true of what the bucket
/// holds. A request cut off leaves no claim, and the offset stays free for
/// the client to resume at, through any replica.
struct ObjectChunk {
    store: Arc<dyn ObjectStore>,
    runtime: Handle,
    path: ObjectPath,
    part: String,
    claim: ObjectPath,
    buffer: Vec<Bytes>,
    buffered: usize,
    upload: Option<WriteMultipart>,
    written: u64,
    state: ChunkState,
}

#[derive(PartialEq)]
enum ChunkState {
    Open,
    /// Its data is stored and its offset claimed (or it had none).
    Finished,
    Undone,
}

impl ObjectChunk {
    fn wait<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn delete(&self, object: &ObjectPath) -> io::Result<()> {
        gone(self.wait(self.store.delete(object)))
    }

    /// Whether the claim on this chunk's offset names it; `None` if there
    /// is no claim.
    fn claimed(&self) -> io::Result<Option<bool>> {
        match self.wait(self.store.get(&self.claim)) {
            Ok(got) => {
                let part = self.wait(got.bytes()).map_err(io_error)?;
                Ok(Some(part.as_ref() == self.part.as_bytes()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }
}

impl Chunk for ObjectChunk {
    fn written(&self) -> u64 {
        self.written
    }

    fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        for chunk in chunks {
            self.written += chunk.len() as u64;
            match &mut self.upload {
                Some(upload) => upload.put(chunk.clone()),
                None => {
                    self.buffered += chunk.len();
                    self.buffer.push(chunk.clone());
                }
            }
        }
        if self.upload.is_none() && self.buffered >= PART {
            let upload = self
                .wait(self.store.put_multipart(&self.path))
                .map_err(io_error)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            for bytes in self.buffer.drain(..) {
                writer.put(bytes);
            }
            self.upload = Some(writer);
        }
        if let Some(mut upload) = self.upload.take() {
            let waited = self.wait(upload.wait_for_capacity(PARTS_IN_FLIGHT));
            self.upload = Some(upload);
            waited.map_err(io_error)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<u64> {
        match self.upload.take() {
            Some(upload) => {
                self.wait(upload.finish()).map_err(io_error)?;
            }
            // Nothing to add (a PUT that only ends the upload): no object.
            None if self.written == 0 => {
                self.state = ChunkState::Finished;
                return Ok(0);
            }
            None => {
                let payload = PutPayload::from_iter(std::mem::take(&mut self.buffer));
                self.wait(self.store.put(&self.path, payload))
                    .map_err(io_error)?;
            }
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let claim = PutPayload::from(self.part.clone().into_bytes());
        match self.wait(self.store.put_opts(&self.claim, claim, options)) {
            Ok(_) => {}
            // Refused: another request's, or ours (a retried PUT whose
            // first try went through): the claim says.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) if self.claimed()? != Some(true) => {
                let data = self.path.clone();
                self.delete(&data)?;
                self.state = ChunkState::Undone;
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "another request appended at this offset first",
                ));
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {}
            Err(e) => return Err(io_error(e)),
        }
        self.state = ChunkState::Finished;
        Ok(self.written)
    }

    /// An unfinished chunk's data goes, unless its claim was made after all
    /// (a finish whose answer was lost): a claim, once seen, stays.
    fn undo(mut self: Box<Self>) -> io::Result<()> {
        if let Some(upload) = self.upload.take() {
            self.wait(upload.abort()).map_err(io_error)?;
        }
        if self.state != ChunkState::Open || self.written == 0 {
            return Ok(());
        }
        if self.claimed()? == Some(true) {
            tracing::warn!(chunk = %self.path, "a chunk whose finish failed was claimed: it stays");
            return Ok(());
        }
        let data = self.path.clone();
        self.delete(&data)?;
        self.state = ChunkState::Undone;
        Ok(())
    }
}

impl Drop for ObjectChunk {
    /// A chunk dropped half-way (its writer panicked): its parts go. It
    /// holds no claim yet.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            self.runtime.spawn(upload.abort());
        }
    }
}

/// Reads objects one after the other, each streamed.
struct ObjectsReader<'a> {
    driver: &'a ObjectDriver,
    sources: std::vec::IntoIter<ObjectPath>,
    current: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    buffer: Bytes,
}

impl ObjectsReader<'_> {
    /// The next bytes, or `None` at the end of the last object.
    fn next_bytes(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(stream) = &mut self.current {
                match self.driver.wait(stream.next()) {
                    Some(bytes) => return Ok(Some(bytes.map_err(io_error)?)),
                    None => self.current = None,
                }
                continue;
            }
            let Some(source) = self.sources.next() else {
                return Ok(None);
            };
            let got = self
                .driver
                .wait(self.driver.store.get(&source))
                .map_err(io_error)?;
            self.current = Some(got.into_stream());
        }
    }
}

impl Read for ObjectsReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buffer.is_empty() {
            match self.next_bytes()? {
                Some(bytes) => self.buffer = bytes,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buffer.len());
        out[..n].copy_from_slice(&self.buffer.split_to(n));
        Ok(n)
    }
}

/// The bytes of a reader (a local file, objects) in pieces of [`PART`].
struct ReadPieces<R>(R);

impl<R: Read> Iterator for ReadPieces<R> {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<io::Result<Bytes>> {
        let mut piece = Vec::with_capacity(PART);
        match (&mut self.0).take(PART as u64).read_to_end(&mut piece) {
            Ok(0) => None,
            Ok(_) => Some(Ok(Bytes::from(piece))),
            Err(e) => Some(Err(e)),
        }
    }
}
