//! Listeners, TLS, slow-client timeouts and graceful shutdown.
//!
//! Each listener runs its own accept loop over `hyper-util`'s connection builder rather than
//! `axum::serve`, for two things axum does not expose:
//! - **header read timeout** (`timeouts.header_read`): a connection that has not sent a complete
//!   request head in time is closed by hyper (slowloris); so are idle keep-alive connections and
//!   connections that send nothing at all;
//! - **TLS** (rustls, optional mTLS) with a handshake timeout.
//!
//! The protocol is never sniffed from the first bytes (a sniffing connection has no timeout yet
//! and would let silent clients hold sockets forever): plain listeners speak HTTP/1.1; TLS
//! listeners speak h2 when ALPN chose it and HTTP/1.1 otherwise. hyper's HTTP/2 server has no
//! header read timeout, and waits for a client's preface for ever: an h2 connection that has
//! not sent its 24-byte preface within `timeouts.header_read` is closed here
//! ([`HeardFrom`]). An h2 connection idle after its preface stays open, as h2 clients keep
//! them; keep-alive pings find dead peers.
//!
//! Shutdown ([`Server::run`]'s future resolves, or SIGTERM/SIGINT in [`serve`]): the accept
//! loops stop (no new connections), streaming requests stop reading new records, in-flight
//! requests get `timeouts.drain` to finish (keep-alive connections are closed after their
//! current request), then `Engine::shutdown` gets what is left of `timeouts.shutdown`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};
use crate::engine::Engine;
use crate::metrics::metrics_app;
use crate::router::app;
use crate::state::AppState;

/// Why the gateway could not start (or stopped). Not recoverable without a config change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// A bound gateway: both listeners are open, nothing is served until [`Server::run`].
pub struct Server {
    state: AppState,
    api: TcpListener,
    metrics: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Binds the API and metrics listeners and loads TLS material.
    pub async fn bind(config: Config, engine: Arc<dyn Engine>) -> Result<Self, ServeError> {
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let api = bind(config.http.listen).await?;
        let metrics = bind(config.http.metrics_listen).await?;
        Ok(Self {
            state: AppState::new(engine, config),
            api,
            metrics,
            tls,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains and shuts the engine down (see the module
    /// docs); returns within `timeouts.shutdown` of `shutdown` resolving.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let Server {
            state,
            api,
            metrics,
            tls,
        } = self;
        let timeouts = state.config().timeouts.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let api_loop = tokio::spawn(accept_loop(
            api,
            app(state.clone()),
            tls,
            timeouts.clone(),
            graceful.clone(),
            stop_rx.clone(),
        ));
        let metrics_loop = tokio::spawn(accept_loop(
            metrics,
            metrics_app(state.clone()),
            None,
            timeouts.clone(),
            graceful.clone(),
            stop_rx,
        ));
        tracing::info!(api = %state.config().http.listen, metrics = %state.config().http.metrics_listen, "gateway serving");
        shutdown.await;
        let started = Instant::now();
        tracing::info!("shutting down: no new connections; draining in-flight requests");
        stop_tx.send_replace(true);
        state.begin_shutdown();
        let _ = tokio::join!(api_loop, metrics_loop);
        // The accept loops held the only other references; connections hold watchers.
        let graceful = Arc::into_inner(graceful).expect("accept loops have ended");
        if tokio::time::timeout(timeouts.drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(drain = ?timeouts.drain, "requests still in flight after the drain timeout; cutting them");
        }
        let left = timeouts.shutdown.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, state.engine().shutdown(left))
            .await
            .is_err()
        {
            tracing::warn!("engine did not shut down within the deadline");
        }
        tracing::info!(elapsed = ?started.elapsed(), "gateway stopped");
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("api", &self.api)
            .field("metrics", &self.metrics)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Binds, serves, and on SIGTERM or SIGINT shuts down gracefully. What `spillway run` calls.
pub async fn serve(config: Config, engine: Arc<dyn Engine>) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let server = Server::bind(config, engine).await?;
    server
        .run(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        })
        .await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    timeouts: crate::config::TimeoutsConfig,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::state::until_true(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        match &tls {
            None => serve_connection(
                builder.clone().http1_only(),
                TokioIo::new(stream),
                service,
                graceful.watcher(),
                None,
            ),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake = timeouts.tls_handshake;
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let (io, heard) = HeardFrom::new(tls);
                            let (builder, preface) = if h2 {
                                let preface = Some((timeouts.header_read, heard));
                                (builder.http2_only(), preface)
                            } else {
                                (builder.http1_only(), None)
                            };
                            serve_connection(builder, TokioIo::new(io), service, watcher, preface);
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serves one connection; with `preface`, the connection is dropped (closed) if fewer than
/// [`H2_PREFACE_LEN`] bytes came in within the given time.
fn serve_connection<I>(
    builder: auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    service: TowerToHyperService<Router>,
    watcher: Watcher,
    preface: Option<(Duration, Arc<AtomicU64>)>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(io, service).into_owned();
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        if let Some((limit, heard)) = preface {
            tokio::select! {
                ended = conn.as_mut() => return log_end(ended),
                () = tokio::time::sleep(limit) => {
                    if heard.load(Ordering::Relaxed) < H2_PREFACE_LEN {
                        tracing::debug!("h2 connection closed: no preface within the header read timeout");
                        return;
                    }
                }
            }
        }
        log_end(conn.await);
    });
}

fn log_end<E: std::fmt::Display>(ended: Result<(), E>) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Length of the HTTP/2 client connection preface (RFC 9113, 3.4).
const H2_PREFACE_LEN: u64 = 24;

/// A connection that counts the bytes read from it.
struct HeardFrom<I> {
    inner: I,
    bytes: Arc<AtomicU64>,
}

impl<I> HeardFrom<I> {
    fn new(inner: I) -> (Self, Arc<AtomicU64>) {
        let bytes = Arc::new(AtomicU64::new(0));
        let io = HeardFrom {
            inner,
            bytes: bytes.clone(),
        };
        (io, bytes)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeardFrom<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.bytes.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeardFrom<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Builds the rustls acceptor: certificate chain and key, and a client verifier when
/// `client_ca` is set (mTLS: a client without a certificate signed by it cannot connect).
pub fn tls_acceptor(config: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
    let err = |what: &str, e: &dyn std::fmt::Display| ServeError::Tls(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .map_err(|e| err(&config.cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&config.cert.display().to_string(), &e))?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| err(&config.key.display().to_string(), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocol versions", &e))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| err(&ca.display().to_string(), &e))?
            {
                let cert = cert.map_err(|e| err(&ca.display().to_string(), &e))?;
                roots.add(cert).map_err(|e| err("client CA", &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| err("client verifier", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate and key", &e))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
