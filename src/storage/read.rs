//! A stored blob opened for reading, streamed a range at a time: from a file
//! by mapping it, from an object store by ranged GETs.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use memmap2::Advice;
use object_store::{GetOptions, GetRange, ObjectStore, path::Path};
use std::fs::File;
use std::io;
use std::sync::Arc;

/// Bytes of a blob brought into memory and sent at a time.
const READ_CHUNK: usize = 1 << 20;

/// Chunks brought in ahead of the network while it sends the one before.
const READ_AHEAD: usize = 2;

/// A blob's bytes, ready to be streamed.
pub struct BlobContent {
    source: Source,
    size: u64,
}

enum Source {
    File(File),
    Object {
        store: Arc<dyn ObjectStore>,
        path: Path,
    },
}

impl BlobContent {
    pub(super) fn file(file: File, size: u64) -> BlobContent {
        BlobContent {
            source: Source::File(file),
            size,
        }
    }

    pub(super) fn object(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> BlobContent {
        BlobContent {
            source: Source::Object { store, path },
            size,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams `len` bytes from `start`. Content shorter than its size said
    /// ends the stream with an error after what there is, rather than send
    /// less than a Content-Length.
    pub fn stream(
        self,
        start: u64,
        len: u64,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + Sync {
        tokio_stream_of(match self.source {
            Source::File(file) => read_file(file, start, len),
            Source::Object { store, path } => read_object(store, path, start, len),
        })
    }
}

/// Sends `len` bytes of the object at `path` from `start`, from a task that
/// reads one ranged GET a few chunks ahead of the network.
fn read_object(store: Arc<dyn ObjectStore>, path: Path, start: u64, len: u64) -> Chunks {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        if len == 0 {
            return;
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + len)),
            ..GetOptions::default()
        };
        let mut body = match store.get_opts(&path, options).await {
            Ok(got) => got.into_stream(),
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e))).await;
                return;
            }
        };
        let mut sent = 0u64;
        while let Some(item) = body.next().await {
            let item = item.map_err(io::Error::other);
            let failed = item.is_err();
            if let Ok(bytes) = &item {
                sent += bytes.len() as u64;
            }
            // A closed channel is a client that went away: stop reading.
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
        if sent < len {
            let _ = tx.send(Err(io::ErrorKind::UnexpectedEof.into())).await;
        }
    });
    rx
}

/// The chunks of a blob on their way to the network.
type Chunks = tokio::sync::mpsc::Receiver<io::Result<Bytes>>;

/// Sends `len` bytes of `file` from `start`. Each chunk of the body is a
/// mapping of the file, so the only copy of a byte is the kernel's, into the
/// socket (a `read` into a buffer made a second one, a quarter of the CPU of a
/// pull), and is unmapped once sent, so a pull holds a few chunks, not the blob.
/// One blocking task maps each chunk and brings its pages in a few chunks ahead
/// of the network, so the disk is waited for there, not on the async threads.
fn read_file(file: File, start: u64, len: u64) -> Chunks {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            // The file is shorter than its size said: send what there is, then
            // end the body early rather than send less than Content-Length.
            let present = file.metadata()?.len().saturating_sub(start).min(len);
            let mut at = 0;
            while at < present {
                let n = (present - at).min(READ_CHUNK as u64) as usize;
                let chunk = map_chunk(&file, start + at, n)?;
                // A closed channel is a client that went away: stop reading.
                if tx.blocking_send(Ok(chunk)).is_err() {
                    break;
                }
                at += n as u64;
            }
            Ok(present)
        })();
        let failure = match result {
            Ok(sent) if sent < len => std::io::ErrorKind::UnexpectedEof.into(),
            Ok(_) => return,
            Err(e) => e,
        };
        let _ = tx.blocking_send(Err(failure));
    });
    rx
}

/// Maps `len` bytes of `file` from `offset`, which the file holds, and brings
/// them into memory (`MADV_POPULATE_READ`), so that a read error is an error
/// here rather than a `SIGBUS` when the socket copies from the mapping.
fn map_chunk(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    // SAFETY: a mapping is undefined behaviour if the file changes under it. A
    // blob's file never does once committed: it is only replaced by a rename
    // or unlinked, which leave the mapped file whole until the mapping goes.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    match map.advise(Advice::PopulateRead) {
        // EINVAL: a kernel before 5.14; the pages fault in as they are sent.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => Err(e),
        _ => Ok(Bytes::from_owner(map)),
    }
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn collect(file: File, start: u64, len: u64) -> (Vec<u8>, Option<std::io::Error>) {
        let mut stream = std::pin::pin!(tokio_stream_of(read_file(file, start, len)));
        let mut bytes = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(e) => return (bytes, Some(e)),
            }
        }
        (bytes, None)
    }

    fn blob_file(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        (dir, path, content)
    }

    #[tokio::test]
    async fn a_range_from_mid_page_across_chunks_is_sent_exactly() {
        let (_dir, path, content) = blob_file(3 * READ_CHUNK + 5000);
        let (start, len) = (4097, 2 * READ_CHUNK as u64 + 333);
        let (sent, error) = collect(File::open(&path).unwrap(), start, len).await;
        assert!(error.is_none(), "{error:?}");
        assert!(sent == content[start as usize..(start + len) as usize]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_ends_the_body_with_an_error() {
        let (_dir, path, content) = blob_file(READ_CHUNK + 10);
        let (sent, error) = collect(File::open(&path).unwrap(), 0, content.len() as u64 + 50).await;
        assert!(sent == content, "what the file holds is sent");
        assert_eq!(error.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
        // Nothing at all from a start past the end.
        let (sent, error) = collect(File::open(&path).unwrap(), 2 * READ_CHUNK as u64, 10).await;
        assert!(sent.is_empty());
        assert_eq!(error.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
