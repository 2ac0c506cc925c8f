//! Blobs of mirrored repositories that the store does not have yet: one
//! upstream GET per blob however many clients ask at once (a "flight"), whose
//! bytes go to a staged file as they arrive. Every client asking, the first
//! and those who come while it runs, follows that file, so none waits for the
//! whole blob before its first byte. The blob is committed only once all of
//! it hashed to its digest; a cut transfer or a mismatch stores nothing and
//! ends every follower's body with an error (the only way to tell a client,
//! once its 200 is sent, that the bytes are not to be trusted). A follower
//! is sent the last byte only once the blob is verified, so a body that ends
//! whole is always one of the right bytes.

use super::metrics::Kind;
use super::upstream::Upstream;
use super::{CacheStatus, Proxy, ProxyError, Route};
use crate::oci::{Digest, RepoName};
use crate::storage::{IncomingBlob, Store, StoreError};
use bytes::Bytes;
use futures_util::Stream;
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Bytes a follower reads from the staged file at a time.
const READ_CHUNK: u64 = 1 << 20;

/// Upstream chunks queued for the writer while it writes the one before.
const QUEUE: usize = 16;

/// Where a flight is.
#[derive(Clone)]
enum Progress {
    /// Asking upstream.
    Starting,
    /// Bytes arriving in `file`; `size` is upstream's Content-Length.
    Open {
        file: Arc<File>,
        size: Option<u64>,
        written: u64,
    },
    /// All of it is here, verified and committed.
    Done {
        file: Arc<File>,
        size: u64,
    },
    /// The store had it already (another flight just committed it).
    Local,
    Failed(Arc<ProxyError>),
}

type Running = HashMap<(RepoName, Digest), watch::Receiver<Progress>>;

/// The flights under way, by repository and digest.
#[derive(Default)]
pub struct Flights {
    running: Arc<Mutex<Running>>,
}

/// What a blob GET of a mirrored repository is served from.
pub enum BlobFetch {
    /// The store: read it there.
    Local,
    /// A flight: `size` if upstream said it.
    Flight {
        size: Option<u64>,
        follower: Follower,
    },
}

/// One client's view of a flight.
pub struct Follower {
    progress: watch::Receiver<Progress>,
}

impl Proxy {
    /// Joins the flight of `digest` into `local`, starting it if none runs,
    /// and waits until upstream has answered.
    pub async fn blob(
        &self,
        store: &Store,
        route: &Route,
        local: &RepoName,
        digest: &Digest,
    ) -> Result<BlobFetch, Arc<ProxyError>> {
        let mut progress = self.join(store, route, local, digest);
        loop {
            let now = progress.borrow_and_update().clone();
            match now {
                Progress::Starting => {}
                // Nothing to stream: a 200 with no body could not be taken
                // back if those (no) bytes fail their digest, so wait.
                Progress::Open { size: Some(0), .. } => {}
                Progress::Open { size, .. } => {
                    return Ok(BlobFetch::Flight {
                        size,
                        follower: Follower { progress },
                    });
                }
                Progress::Done { size, .. } => {
                    return Ok(BlobFetch::Flight {
                        size: Some(size),
                        follower: Follower { progress },
                    });
                }
                Progress::Local => return Ok(BlobFetch::Local),
                Progress::Failed(e) => return Err(e),
            }
            if progress.changed().await.is_err() && matches!(*progress.borrow(), Progress::Starting)
            {
                return Err(Arc::new(ProxyError::Store(StoreError::Io(
                    io::Error::other("the fetch from upstream ended without an answer"),
                ))));
            }
        }
    }

    /// The size of `digest` in the mirrored `local`: from its flight, else
    /// from an upstream HEAD (a HEAD fetches and stores nothing).
    pub async fn blob_size(
        &self,
        route: &Route,
        local: &RepoName,
        digest: &Digest,
    ) -> Result<u64, Arc<ProxyError>> {
        let running = self
            .blobs
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(local.clone(), digest.clone()))
            .map(|p| p.borrow().clone());
        if let Some(
            Progress::Open {
                size: Some(size), ..
            }
            | Progress::Done { size, .. },
        ) = running
        {
            return Ok(size);
        }
        let upstream = &route.upstream;
        let path = format!("blobs/{digest}");
        let response = upstream
            .send(Method::HEAD, &route.remote, &path, None)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        if response.status() != StatusCode::OK {
            return Err(Arc::new(
                upstream
                    .status_error(response.status(), format!("HEAD {}/{path}", route.remote))
                    .into(),
            ));
        }
        content_length(&response).ok_or_else(|| {
            Arc::new(
                upstream
                    .protocol_error(format!(
                        "HEAD {}/{path} gave no Content-Length",
                        route.remote
                    ))
                    .into(),
            )
        })
    }

    fn join(
        &self,
        store: &Store,
        route: &Route,
        local: &RepoName,
        digest: &Digest,
    ) -> watch::Receiver<Progress> {
        let key = (local.clone(), digest.clone());
        let mut running = self.blobs.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(progress) = running.get(&key) {
            self.metrics.coalesced(route.upstream(), Kind::Blob);
            return progress.clone();
        }
        self.metrics
            .served(route.upstream(), Kind::Blob, &CacheStatus::Miss);
        let (tx, rx) = watch::channel(Progress::Starting);
        running.insert(key.clone(), rx.clone());
        let flight = Flight {
            upstream: route.upstream.clone(),
            remote: route.remote.clone(),
            store: store.clone(),
            local: local.clone(),
            digest: digest.clone(),
            progress: Arc::new(tx),
        };
        let leave = Leave {
            map: self.blobs.running.clone(),
            key: Some(key),
        };
        // A task of its own: the blob is fetched to its end (and cached) even
        // if every client that asked for it goes away.
        tokio::spawn(async move {
            let progress = flight.progress.clone();
            // Gone from the map however the task ends, a panic included, and
            // before the last sender (`progress`, dropped after it): no new
            // request can join a flight whose channel has closed.
            let _leave = leave;
            if let Err(e) = flight.run().await {
                tracing::warn!(error = %e, "fetching a blob from upstream failed");
                progress.send_replace(Progress::Failed(Arc::new(e)));
            }
        });
        rx
    }
}

/// The Content-Length header. (reqwest's `content_length` is the body's size
/// hint, which is 0 for any HEAD.)
fn content_length(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Removes a finished fetch's entry from its map when dropped, so that even a
/// fetch that panicked leaves no dead entry for later requests to wait on.
pub(super) struct Leave<K: std::hash::Hash + Eq, V> {
    pub map: Arc<Mutex<HashMap<K, V>>>,
    pub key: Option<K>,
}

impl<K: std::hash::Hash + Eq, V> Drop for Leave<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
    }
}

struct Flight {
    upstream: Arc<Upstream>,
    remote: String,
    store: Store,
    local: RepoName,
    digest: Digest,
    progress: Arc<watch::Sender<Progress>>,
}

impl Flight {
    async fn run(self) -> Result<(), ProxyError> {
        // Committed between the client's look and our start: serve that.
        if self
            .store
            .stat_blob(&self.local, &self.digest)
            .await
            .is_ok()
        {
            self.progress.send_replace(Progress::Local);
            return Ok(());
        }
        let upstream = &self.upstream;
        let path = format!("blobs/{}", self.digest);
        let mut response = upstream
            .send(Method::GET, &self.remote, &path, None)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(upstream
                .status_error(response.status(), format!("GET {}/{path}", self.remote))
                .into());
        }
        let size = content_length(&response);
        let incoming = {
            let (store, local, digest) =
                (self.store.clone(), self.local.clone(), self.digest.clone());
            tokio::task::spawn_blocking(move || store.incoming_blob(&local, &digest, size))
                .await
                .map_err(io::Error::other)
                .map_err(StoreError::Io)??
        };
        let file = incoming.file();
        self.progress.send_replace(Progress::Open {
            file: file.clone(),
            size,
            written: 0,
        });

        // The writer appends and hashes on the blocking pool while the next
        // chunks arrive; each append is published to the followers.
        let (chunks, mut queue) = mpsc::channel::<Bytes>(QUEUE);
        let progress = self.progress.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<IncomingBlob, StoreError> {
            let mut incoming = incoming;
            while let Some(chunk) = queue.blocking_recv() {
                incoming.append(&chunk)?;
                let now = incoming.written();
                progress.send_modify(|p| {
                    if let Progress::Open { written, .. } = p {
                        *written = now;
                    }
                });
            }
            Ok(incoming)
        });
        let received = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    upstream
                        .metrics
                        .received(&upstream.name, chunk.len() as u64);
                    // A closed queue is a writer that failed: its error says why.
                    if chunks.send(chunk).await.is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(upstream.cut(&e)),
            }
        };
        drop(chunks);
        let incoming = writer
            .await
            .map_err(io::Error::other)
            .map_err(StoreError::Io)??;
        received?;
        let written = incoming.written();
        if size.is_some_and(|size| size != written) {
            return Err(upstream
                .protocol_error(format!(
                    "GET {}/{path} ended after {written} of {} bytes; nothing was stored",
                    self.remote,
                    size.unwrap_or_default()
                ))
                .into());
        }
        let committed = tokio::task::spawn_blocking(move || incoming.commit())
            .await
            .map_err(io::Error::other)
            .map_err(StoreError::Io)?;
        match committed {
            Ok(size) => {
                if let Some(cap) = &upstream.cap {
                    cap.stored(size);
                }
                self.progress.send_replace(Progress::Done { file, size });
                Ok(())
            }
            Err(StoreError::DigestMismatch { expected, computed }) => Err(upstream
                .protocol_error(format!(
                    "the bytes sent for {}/{path} hash to {computed}, not {expected}; nothing was stored",
                    self.remote
                ))
                .into()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Follower {
    /// Waits until the flight's blob is verified and stored, or has failed.
    pub async fn verified(mut self) -> Result<(), Arc<ProxyError>> {
        loop {
            let now = self.progress.borrow_and_update().clone();
            match now {
                Progress::Done { .. } | Progress::Local => return Ok(()),
                Progress::Failed(e) => return Err(e),
                Progress::Starting | Progress::Open { .. } => {}
            }
            if self.progress.changed().await.is_err() {
                let last = self.progress.borrow().clone();
                return match last {
                    Progress::Done { .. } | Progress::Local => Ok(()),
                    Progress::Failed(e) => Err(e),
                    _ => Err(Arc::new(ProxyError::Store(StoreError::Io(
                        io::Error::other("the fetch from upstream ended early"),
                    )))),
                };
            }
        }
    }

    /// The blob's bytes as they arrive, `size` of them when upstream said;
    /// an error ends the stream if the flight fails.
    pub fn stream(self, size: Option<u64>) -> impl Stream<Item = io::Result<Bytes>> {
        let end = size;
        futures_util::stream::unfold(
            (self.progress, 0, false),
            move |(mut progress, at, finished)| async move {
                if finished {
                    return None;
                }
                let mut closed = false;
                loop {
                    let now = progress.borrow_and_update().clone();
                    let (file, available, complete) = match now {
                        // The last byte waits for the verdict, so that no client
                        // gets a whole body of bytes that fail their digest.
                        Progress::Open { file, written, .. } => {
                            (Some(file), written.saturating_sub(1), false)
                        }
                        Progress::Done { file, size } => (Some(file), size, true),
                        Progress::Failed(e) => {
                            return Some((
                                Err(io::Error::other(e.to_string())),
                                (progress, at, true),
                            ));
                        }
                        Progress::Starting | Progress::Local => (None, 0, false),
                    };
                    // Even a body that is all sent (or empty) ends only once
                    // the blob is verified, or with the flight's error.
                    let stop = end.map_or(available, |end| end.min(available));
                    if let Some(file) = file
                        && stop > at
                    {
                        let want = (stop - at).min(READ_CHUNK);
                        let read = tokio::task::spawn_blocking(move || {
                            let mut buf = vec![0; want as usize];
                            file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
                        })
                        .await
                        .unwrap_or_else(|e| Err(io::Error::other(e)));
                        return Some(match read {
                            Ok(bytes) => (Ok(bytes), (progress, at + want, false)),
                            Err(e) => (Err(e), (progress, at, true)),
                        });
                    }
                    if complete {
                        return None;
                    }
                    if closed {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the fetch from upstream ended early",
                        );
                        return Some((Err(e), (progress, at, true)));
                    }
                    closed = progress.changed().await.is_err();
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fetch_task_that_panics_leaves_no_entry_behind() {
        let map: Arc<Mutex<HashMap<&str, u32>>> = Arc::default();
        map.lock().unwrap().insert("in flight", 1);
        let leave = Leave {
            map: map.clone(),
            key: Some("in flight"),
        };
        let task = tokio::spawn(async move {
            let _leave = leave;
            panic!("a fetch that panics");
        });
        assert!(task.await.unwrap_err().is_panic());
        // Later requests start a fetch of their own instead of waiting on a dead one.
        assert!(map.lock().unwrap().is_empty());
    }
}
