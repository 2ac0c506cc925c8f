//! The listener: accepts connections (plain or TLS) and serves each with hyper,
//! with the limits that keep slow or greedy clients from holding the registry: a
//! cap on open connections, a deadline for a request's headers (slowloris) and a
//! header size limit. warp's own `serve` offers none of these knobs, nor TLS, so
//! we run hyper here and give it our routes as a service.

use super::access_log;
use super::leftover;
use super::metrics::Metrics;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use warp::filters::BoxedFilter;
use warp::http::header;
use warp::reply::Response;

/// The peer of a connection, handed to the routes as a request extension.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// What one client may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake, and then to send a
    /// request's headers, on a new or kept-alive connection; slower ones are closed.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 256 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate and key do not fit together: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// A TLS acceptor for PEM files, offering HTTP/2 and HTTP/1.1 through ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets open
/// requests finish.
pub async fn run(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper's read buffer bounds the request head: a larger one gets 431.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: give connections time to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            routes: routes.clone(),
            metrics: metrics.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            peer,
            _permit: permit,
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(stream));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let deadline = limits.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    routes: BoxedFilter<(Response,)>,
    metrics: Arc<Metrics>,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    peer: SocketAddr,
    /// Held while the connection lives: the slot it takes in the connection cap.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (routes, metrics, peer) = (self.routes, self.metrics, self.peer);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let method = request.method().clone();
            let entry = access_log::Entry::new(&method, request.uri().path());
            let endpoint = entry.endpoint();
            let had_credentials = request.headers().contains_key(header::AUTHORIZATION);
            let version = request.version();
            let expect_continue = request
                .headers()
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let (parts, body) = request.into_parts();
            let (body, leftover) = leftover::track(entry.count_in(metrics.count_received(body)));
            let mut request = hyper::Request::from_parts(parts, body);
            request.extensions_mut().insert(ClientAddr(peer));
            request.extensions_mut().insert(entry.user());
            let answer = tower_service::Service::call(&mut warp::service(routes.clone()), request);
            let metrics = metrics.clone();
            async move {
                let response = answer.await?;
                let response = leftover.settle(response, version, expect_continue).await;
                let status = response.status();
                metrics.request(&method, endpoint, status, had_credentials, entry.elapsed());
                let response = response.map(|body| metrics.count_sent(body));
                Ok::<_, std::convert::Infallible>(entry.finish(response))
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        if let Err(e) = self.watcher.watch(connection).await {
            // Clients that hang up or time out end here; that is their business.
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }
}
