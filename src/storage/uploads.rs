//! Upload sessions: chunked and monolithic blob uploads, resumable across restarts.
//!
//! A chunk is all-or-nothing: if its body fails half-way (client gone, wrong
//! length), the chunk is taken back out of the session (`Chunk::undo`) and the
//! hash state restored, so the session stays usable and its offset is always a
//! chunk boundary the client was told about.

use super::driver::{Chunk, Claim, Claimed, Source};
use super::fs::FileChunk;
use super::sink::write_chunks;
use super::{Result, Store, StoreError, durable, paths};
use crate::oci::{Algorithm, Digest, Hasher, RepoName};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// A request body as the store consumes it.
pub type Body = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Bytes gathered from the body before one blocking write-and-hash.
const BATCH: usize = 1 << 20;

/// Batches queued for the writer while it writes and hashes the one before.
const QUEUE: usize = 4;

/// What `info.json` records of a session.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    name: String,
    started_at: u64,
}

/// A session's place in memory: its repository, and its state behind an async
/// lock so that two requests on one session take turns.
pub(super) struct Session {
    name: RepoName,
    state: tokio::sync::Mutex<State>,
}

struct State {
    size: u64,
    /// sha256 of the session's bytes so far; `None` after a restart until it
    /// is rebuilt.
    hasher: Option<Hasher>,
    /// Set once finished or cancelled, for requests that waited on the lock.
    closed: bool,
}

impl Store {
    /// Opens a session for `name`.
    pub async fn start_upload(&self, name: &RepoName) -> Result<Uuid> {
        let name = name.clone();
        self.blocking(move |s| {
            s.check_space(0)?;
            let id = Uuid::new_v4();
            let info = Info {
                name: name.to_string(),
                started_at: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            let info = serde_json::to_vec(&info).map_err(io::Error::other)?;
            s.driver().upload_start(&id, &info)?;
            s.inner.usage.upload_opened();
            let session = Arc::new(Session {
                name,
                state: tokio::sync::Mutex::new(State {
                    size: 0,
                    hasher: Some(Algorithm::Sha256.hasher()),
                    closed: false,
                }),
            });
            s.sessions().insert(id, session);
            Ok(id)
        })
        .await
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uuid, Arc<Session>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Finds session `id` of repository `name`, in memory or, after a restart, on disk.
    ///
    /// There is never more than one `Session` for an id, because its lock is
    /// what keeps two requests from writing one upload at once: a session
    /// stays in the map, closed, until its folder is gone (see
    /// [`Store::close_session`]), and loads from disk take turns under
    /// `session_loads`, so none can read a folder that a closing session is
    /// about to remove and hand out a second, open copy.
    async fn session(&self, name: &RepoName, id: Uuid) -> Result<Arc<Session>> {
        let cached = self.sessions().get(&id).cloned();
        let session = match cached {
            Some(session) => session,
            None => {
                let _loading = self.inner.session_loads.lock().await;
                let cached = self.sessions().get(&id).cloned();
                match cached {
                    Some(session) => session,
                    None => {
                        let loaded = self.blocking(move |s| s.load_session(id)).await?;
                        self.sessions().insert(id, loaded.clone());
                        loaded
                    }
                }
            }
        };
        if session.name != *name {
            return Err(StoreError::UploadUnknown);
        }
        Ok(session)
    }

    fn load_session(&self, id: Uuid) -> Result<Arc<Session>> {
        let info = self
            .driver()
            .read(&paths::upload_info(&id))?
            .and_then(|bytes| serde_json::from_slice::<Info>(&bytes).ok())
            .ok_or(StoreError::UploadUnknown)?;
        let name = info.name.parse().map_err(|_| StoreError::UploadUnknown)?;
        let size = self
            .driver()
            .upload_size(&id)?
            .ok_or(StoreError::UploadUnknown)?;
        Ok(Arc::new(Session {
            name,
            state: tokio::sync::Mutex::new(State {
                size,
                hasher: None,
                closed: false,
            }),
        }))
    }

    /// Bytes received so far by session `id`.
    pub async fn upload_size(&self, name: &RepoName, id: Uuid) -> Result<u64> {
        let session = self.session(name, id).await?;
        let mut state = session.state.lock().await;
        let _claim = self.claim(id, &mut state).await?;
        Ok(state.size)
    }

    /// Appends a chunk. `start` (from Content-Range) must equal the current size;
    /// `length`, when declared, must match the bytes received. Returns the new size.
    pub async fn append_upload(
        &self,
        name: &RepoName,
        id: Uuid,
        start: Option<u64>,
        length: Option<u64>,
        body: Body,
    ) -> Result<u64> {
        let session = self.session(name, id).await?;
        let mut state = session.state.lock().await;
        let _claim = self.claim(id, &mut state).await?;
        self.append_claimed(id, &mut state, start, length, body)
            .await?;
        Ok(state.size)
    }

    /// Claims session `id` against other processes (waiting while another
    /// holds it) and brings `state` up to date with the store, where another
    /// process may have appended to the session or ended it. Called with the
    /// session's async lock held, so at most one request of this process
    /// waits here.
    async fn claim(&self, id: Uuid, state: &mut State) -> Result<Claim> {
        if state.closed {
            return Err(StoreError::UploadUnknown);
        }
        let claimed = self
            .blocking(move |s| Ok(s.driver().upload_claim(&id, true)?))
            .await?;
        let (claim, size) = match claimed {
            Claimed::Held(claim, size) => (claim, size),
            Claimed::Busy | Claimed::Gone => {
                state.closed = true;
                self.sessions().remove(&id);
                return Err(StoreError::UploadUnknown);
            }
        };
        if size != state.size {
            // Another process appended: our hash state no longer fits the data.
            state.size = size;
            state.hasher = None;
        }
        Ok(claim)
    }

    /// Appends a chunk to a session this request has claimed.
    async fn append_claimed(
        &self,
        id: Uuid,
        state: &mut State,
        start: Option<u64>,
        length: Option<u64>,
        body: Body,
    ) -> Result<()> {
        if let Some(start) = start
            && start != state.size
        {
            return Err(StoreError::RangeMismatch {
                start,
                size: state.size,
            });
        }
        let hasher = match state.hasher.clone() {
            Some(h) => h,
            None => {
                let size = state.size;
                let h = self
                    .blocking(move |s| hash_upload(s, id, size, Algorithm::Sha256))
                    .await?;
                state.hasher = Some(h.clone());
                h
            }
        };
        let offset = state.size;
        let chunk = self
            .blocking(move |s| Ok(s.driver().upload_chunk(&id, offset)?))
            .await?;
        let (written, hasher) = write_body(self, chunk, offset, hasher, length, body).await?;
        state.size += written;
        state.hasher = Some(hasher);
        Ok(())
    }

    /// Finishes session `id` with an optional last chunk: verifies `digest`, makes
    /// the blob visible in `name`, and removes the session. A wrong digest removes
    /// the session and stores nothing.
    pub async fn finish_upload(
        &self,
        name: &RepoName,
        id: Uuid,
        digest: &Digest,
        body: Body,
    ) -> Result<u64> {
        let session = self.session(name, id).await?;
        let mut state = session.state.lock().await;
        // Held until the folder is gone, so another process waiting for it
        // then finds the session ended.
        let _claim = self.claim(id, &mut state).await?;
        self.append_claimed(id, &mut state, None, None, body)
            .await?;
        // From here the session is over whatever happens: a request waiting
        // for the lock finds it closed, and none can reopen it from disk while
        // its data becomes the blob (see `session`).
        state.closed = true;
        let hasher = state.hasher.take();
        let (name, digest, size) = (name.clone(), digest.clone(), state.size);
        self.blocking(move |s| {
            let computed = match hasher {
                Some(h) if h.algorithm() == digest.algorithm() => Ok(h.finish()),
                _ => hash_upload(s, id, size, digest.algorithm()).map(Hasher::finish),
            };
            let result = computed.and_then(|computed| {
                if computed == digest {
                    s.commit_blob(&name, &digest, &Source::Upload(id, size))
                } else {
                    Err(StoreError::DigestMismatch {
                        expected: digest,
                        computed,
                    })
                }
            });
            s.close_session(id)?;
            result.map(|()| size)
        })
        .await
    }

    /// Cancels session `id`, deleting what it received.
    pub async fn cancel_upload(&self, name: &RepoName, id: Uuid) -> Result<()> {
        let session = self.session(name, id).await?;
        let mut state = session.state.lock().await;
        let _claim = self.claim(id, &mut state).await?;
        state.closed = true;
        self.blocking(move |s| s.close_session(id)).await
    }

    /// A whole blob in one request (`POST ?digest=`), staged in `tmp/` (no
    /// session folder to create, sync and remove) and committed. A body that
    /// fits in one batch, as config blobs and small layers do, is verified
    /// before anything is written, then written, fsynced and committed in a
    /// single call to the blocking pool; a larger one streams like any upload.
    pub async fn put_blob(&self, name: &RepoName, digest: &Digest, mut body: Body) -> Result<u64> {
        let mut head: Vec<Bytes> = Vec::new();
        let mut head_len = 0usize;
        let mut whole = false;
        while head_len < BATCH {
            match body.next().await {
                Some(Ok(bytes)) => {
                    head_len += bytes.len();
                    head.push(bytes);
                }
                Some(Err(e)) => return Err(StoreError::Body(e)),
                None => {
                    whole = true;
                    break;
                }
            }
        }
        let data = self.staged_path();
        let (name, digest) = (name.clone(), digest.clone());
        if whole {
            return self
                .blocking(move |s| {
                    let result = (|| {
                        s.check_space(head_len as u64)?;
                        let mut hasher = digest.algorithm().hasher();
                        for chunk in &head {
                            hasher.update(chunk);
                        }
                        let computed = hasher.finish();
                        if computed != digest {
                            return Err(StoreError::DigestMismatch {
                                expected: digest.clone(),
                                computed,
                            });
                        }
                        let mut file = OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&data)?;
                        write_chunks(&mut file, &head)?;
                        drop(file);
                        s.commit_blob(&name, &digest, &Source::File(&data))
                    })();
                    remove_staged(&data)?;
                    result.map(|()| head_len as u64)
                })
                .await;
        }
        let created = data.clone();
        let chunk = self
            .blocking(move |_| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&created)?;
                let chunk: Box<dyn Chunk> = Box::new(FileChunk::open(created, 0)?);
                Ok(chunk)
            })
            .await?;
        let body: Body = Box::pin(futures_util::stream::iter(head.into_iter().map(Ok)).chain(body));
        let written = write_body(self, chunk, 0, digest.algorithm().hasher(), None, body).await;
        self.blocking(move |s| {
            let result = written.and_then(|(size, hasher)| {
                let computed = hasher.finish();
                if computed != digest {
                    return Err(StoreError::DigestMismatch {
                        expected: digest,
                        computed,
                    });
                }
                s.commit_blob(&name, &digest, &Source::File(&data))
                    .map(|()| size)
            });
            remove_staged(&data)?;
            result
        })
        .await
    }

    /// A fresh name in the staging folder, for a file that becomes a blob.
    pub(super) fn staged_path(&self) -> PathBuf {
        self.driver()
            .staging_dir()
            .join(format!("blob-{}", Uuid::new_v4().simple()))
    }

    /// Makes verified upload data the blob `digest` and links it into `name`.
    pub(super) fn commit_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        data: &Source,
    ) -> Result<()> {
        let driver = self.driver();
        let target = paths::blob(digest);
        // The slow fsync comes before the commit lock, so a collection waits for
        // the rename and link, not for the data to reach the disk.
        let fresh = self.blob_size(digest)?.is_none();
        if fresh {
            driver.prepare(data)?;
        }
        let _commit = self.commit_guard();
        // The new names (the blob, the link, any folder they needed) are synced
        // together at the end, so only the first folder fsync waits for a journal
        // commit and the others for a cache flush. Should a power loss
        // keep the link but not the blob, readers find no blob (every read checks
        // both) and the client, which got no 201, pushes again. The blob's folder
        // is synced even when another upload of the same digest renamed it there,
        // as that upload may not have synced it yet (a no-op fsync is cheap).
        let mut pending = durable::Pending::default();
        if self.blob_size(digest)?.is_none() {
            if !fresh {
                // Swept since we looked: our data is now the only copy.
                driver.prepare(data)?;
            }
            let size = match data {
                Source::File(path) => std::fs::metadata(path)?.len(),
                Source::Upload(_, size) => *size,
            };
            if driver.publish(data, &target, &mut pending)? {
                self.inner.usage.blob_added(size);
            }
        } else {
            // Pushed again: a fresh time puts it back under the GC's grace period.
            self.touch_blob(digest)?;
        }
        self.driver().settle(&target, &mut pending);
        self.link_blob_pending(name, digest, &mut pending)?;
        self.driver().sync(pending)?;
        self.remember_repository(name)?;
        Ok(())
    }

    /// Removes the folder of a session already marked closed, then its entry
    /// in the map. In that order: while the folder exists, the closed entry is
    /// what turns away requests that would otherwise load it from disk.
    /// Should the removal fail, the entry stays (closed) and the folder is left
    /// for the collection's purge.
    fn close_session(&self, id: Uuid) -> Result<()> {
        self.driver().upload_remove(&id)?;
        self.inner.usage.upload_closed();
        self.sessions().remove(&id);
        Ok(())
    }

    /// Closes session `id` for the collection's purge, unless a request of
    /// this process or another is using it (it is not idle, then: `Ok(false)`).
    /// Runs on the blocking pool, like the whole collection.
    pub(super) fn purge_session(&self, id: Uuid) -> Result<bool> {
        // Held so that no request loads the session while it is removed.
        let _loading = self.inner.session_loads.blocking_lock();
        let cached = self.sessions().get(&id).cloned();
        let mut state = match &cached {
            Some(session) => match session.state.try_lock() {
                Ok(state) => Some(state),
                Err(_) => return Ok(false),
            },
            None => None,
        };
        // A folder without info.json is no session anyone can use: gone.
        let _claim = match self.driver().upload_claim(&id, false)? {
            Claimed::Busy => return Ok(false),
            Claimed::Held(claim, _) => Some(claim),
            Claimed::Gone => None,
        };
        if let Some(state) = state.as_mut() {
            state.closed = true;
        }
        self.close_session(id)?;
        Ok(true)
    }
}

/// Streams `body` into `chunk`, hashing as it goes. Two tasks on the blocking
/// pool take each batch through short queues, one writing it and one hashing
/// it (sha256 is the largest cost of a push; on its own thread it overlaps the
/// write and the network read of the next batch). The writer checks the store
/// keeps its reserve before each batch. Returns the bytes written and the
/// updated hasher, and only once both tasks are done; a body that fails, or
/// whose length is not the `length` declared, takes the chunk back out.
async fn write_body(
    store: &Store,
    chunk: Box<dyn Chunk>,
    offset: u64,
    hasher: Hasher,
    length: Option<u64>,
    mut body: Body,
) -> Result<(u64, Hasher)> {
    let (to_writer, mut writer_rx) = tokio::sync::mpsc::channel::<(Vec<Bytes>, usize)>(QUEUE);
    let (to_hasher, mut hasher_rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUE);
    let writer_store = store.clone();
    let writer = tokio::task::spawn_blocking(move || -> (Box<dyn Chunk>, Result<()>) {
        let mut chunk = chunk;
        let mut write = || -> Result<()> {
            while let Some((chunks, len)) = writer_rx.blocking_recv() {
                writer_store.check_space(len as u64)?;
                chunk.write(&chunks)?;
            }
            Ok(())
        };
        let result = write();
        (chunk, result)
    });
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        while let Some(chunks) = hasher_rx.blocking_recv() {
            for chunk in &chunks {
                hasher.update(chunk);
            }
        }
        hasher
    });
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut body_error = None;
    loop {
        let end = match body.next().await {
            Some(Ok(bytes)) => {
                batch_len += bytes.len();
                batch.push(bytes);
                false
            }
            Some(Err(e)) => {
                body_error = Some(e);
                break;
            }
            None => true,
        };
        if (end || batch_len >= BATCH) && !batch.is_empty() {
            // Clones of `Bytes` share the buffers: the batch is not copied.
            let batch = std::mem::take(&mut batch);
            if to_writer.send((batch.clone(), batch_len)).await.is_err()
                || to_hasher.send(batch).await.is_err()
            {
                // The writer stopped on an error, which it returns below.
                break;
            }
            batch_len = 0;
        }
        if end {
            break;
        }
    }
    drop((to_writer, to_hasher));
    let joined = |e: tokio::task::JoinError| StoreError::Io(io::Error::other(e));
    let (chunk, written) = writer.await.map_err(joined)?;
    let hasher = hashing.await.map_err(joined)?;
    // What the writer did not take (it stopped on an error) is left to the
    // connection, which reads and drops it so the client gets our answer.
    tokio::task::spawn_blocking(move || {
        let mut chunk = chunk;
        // The length is checked before the chunk is finished: once finished,
        // a chunk is part of the session for good (object.rs).
        let taken = match body_error {
            Some(e) => Err(StoreError::Body(e)),
            None => written.and_then(|()| match length {
                Some(declared) if declared != chunk.written() => Err(StoreError::ChunkLength {
                    declared,
                    received: chunk.written(),
                }),
                _ => Ok(()),
            }),
        };
        let finished = taken.and_then(|()| {
            chunk.finish().map_err(|e| match e.kind() {
                // Another request appended at this offset first (object.rs).
                io::ErrorKind::AlreadyExists => StoreError::ChunkInProgress(offset),
                _ => e.into(),
            })
        });
        match finished {
            Ok(written) => Ok((written, hasher)),
            Err(e) => {
                chunk.undo()?;
                Err(e)
            }
        }
    })
    .await
    .map_err(joined)?
}

/// Removes a staged upload that was not committed (a committed one was renamed away).
fn remove_staged(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Hashes the first `size` bytes of session `id` (rebuilding its state);
/// fewer there is an error, never a hash of less.
fn hash_upload(store: &Store, id: Uuid, size: u64, algorithm: Algorithm) -> Result<Hasher> {
    let mut hasher = algorithm.hasher();
    let mut data = store.driver().upload_read(&id)?.take(size);
    let mut buf = vec![0u8; BATCH];
    let mut read = 0u64;
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read < size {
        return Err(StoreError::Io(io::Error::other(format!(
            "upload {id} holds {read} bytes, not the {size} it had"
        ))));
    }
    Ok(hasher)
}
