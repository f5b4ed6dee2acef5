//! Serving a router over HTTP/1.1 (and, on the raft port, HTTP/2) with the bounds
//! `axum::serve` does not offer: a header read timeout (which also closes idle keep-alive
//! connections; an HTTP/2 connection is closed after as long without a new request), a
//! timeout between request body frames, and a cap on open connections. Without them,
//! half-open or trickling connections stay open forever and pile up. Either listener may
//! speak TLS ([`serve_router_tls`]), under the same bounds.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use cairn_tls::ServerTls;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// How long connections may take and how many may be open.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Longest wait for a request's complete header, idle keep-alive time included, and
    /// for a TLS handshake; the connection is closed when it passes.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; the request fails when it passes.
    pub body_idle_timeout: Duration,
    /// Most connections open at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before dropping them.
    pub drain_timeout: Duration,
    /// Whether HTTP/2 is spoken too (told from HTTP/1.1 by the connection preface, with or
    /// without TLS): on the raft port, where peers multiplex every RPC over one connection.
    pub http2: bool,
}

/// Longest a TLS handshake may take, whatever the header timeout: a loopback or LAN
/// handshake takes milliseconds, and a connection that has not finished one holds a
/// permit, so that idle sockets fill the connection cap ten times more slowly than with the
/// 60 s header timeout of the raft port.
pub const MAX_HANDSHAKE_TIME: Duration = Duration::from_secs(5);

/// For the public API: 30 s for a header (hyper's own default, in effect only with a timer)
/// and between body chunks.
pub const PUBLIC_LIMITS: ServeLimits = ServeLimits {
    header_read_timeout: Duration::from_secs(30),
    body_idle_timeout: Duration::from_secs(30),
    max_connections: 2048,
    drain_timeout: Duration::from_secs(10),
    http2: false,
};

/// For node-to-node RPC: longer than the nodes' own client keeps an idle pooled connection
/// (30 s, `Node::start`), so that the client always drops an idle connection first and
/// never sends a request on one the server is closing (whose outcome would be unknown).
/// Snapshot streams keep flowing, so the body timeout does not bound their total time.
pub const RAFT_LIMITS: ServeLimits = ServeLimits {
    header_read_timeout: Duration::from_secs(60),
    body_idle_timeout: Duration::from_secs(60),
    max_connections: 512,
    drain_timeout: Duration::from_secs(10),
    http2: true,
};

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish for up to `limits.drain_timeout`, and returns. Plain HTTP: see
/// [`serve_router_tls`] for HTTPS.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_router_tls(listener, app, limits, None, shutdown).await;
}

/// [`serve_router`], over TLS when `tls` is given: each accepted connection first completes
/// a TLS handshake with the config `tls` holds at that moment (reloaded when its files
/// change). The handshake counts against `limits.max_connections` and must finish within
/// `limits.header_read_timeout` (at most [`MAX_HANDSHAKE_TIME`]), so a client that connects and never handshakes holds
/// neither the connection nor a permit for longer than that. A failed handshake is logged
/// at debug level: a scanner's or an attacker's noise, and a peer without the right
/// certificate, are not the server's problem.
pub async fn serve_router_tls(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut last_warned: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections, so the set only holds open ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Once per 10 s at most: a flood of connections must not flood the log too.
            if last_warned
                .is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(10))
            {
                tracing::warn!(
                    max = limits.max_connections,
                    "too many connections: closing new ones"
                );
                last_warned = Some(std::time::Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, svc, limits, stop).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        limits.header_read_timeout.min(MAX_HANDSHAKE_TIME),
                        tls.acceptor().accept(stream),
                    );
                    let tls_stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        () = async { drop(stop.wait_for(|s| *s).await) } => return,
                    };
                    serve_connection(tls_stream, svc, limits, stop).await;
                }
            }
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "shutdown: dropping connections still open"
        );
    }
}

/// Serves HTTP/1.1 (and HTTP/2 when `limits.http2`) on one connection (plain or TLS) until
/// it ends, or, once `stop` turns true, until its requests in flight are answered.
async fn serve_connection<I>(
    io: I,
    svc: TowerToHyperService<Router>,
    limits: ServeLimits,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if limits.http2 {
        serve_auto(io, svc, limits, stop).await;
    } else {
        serve_http1(io, svc, limits, stop).await;
    }
}

/// HTTP/1.1 or HTTP/2, told apart by the connection's first bytes. hyper's HTTP/2 server has
/// no header timeout, and a peer's connection lives for many requests, so a connection that
/// started no request for `limits.header_read_timeout` is closed here (gracefully: a GOAWAY,
/// streams in flight finish). Pings every 10 s drop a peer that stopped answering.
async fn serve_auto<I>(
    io: I,
    svc: TowerToHyperService<Router>,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opened = Instant::now();
    let last_request_ms = Arc::new(AtomicU64::new(0));
    let seen = last_request_ms.clone();
    let svc = hyper::service::service_fn(move |req| {
        let ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        seen.store(ms, Ordering::Relaxed);
        hyper::service::Service::call(&svc, req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .adaptive_window(true)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut idle_check = tokio::time::interval(limits.header_read_timeout / 4);
    let idle_for = |now: Duration| {
        now.saturating_sub(Duration::from_millis(
            last_request_ms.load(Ordering::Relaxed),
        ))
    };
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            // The guard `wait_for` returns is not Send: drop it inside.
            () = async { drop(stop.wait_for(|s| *s).await) } => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = idle_check.tick() => {
                if idle_for(opened.elapsed()) >= limits.header_read_timeout {
                    // Bounded: a client that never lets an answer through (an HTTP/2
                    // window of 0) would otherwise hold the connection, unauthenticated.
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(limits.drain_timeout, conn.as_mut()).await {
                        Ok(r) => break r,
                        Err(_) => return,
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// HTTP/1.1 only.
async fn serve_http1<I>(
    io: I,
    svc: TowerToHyperService<Router>,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        // The guard `wait_for` returns is not Send: drop it inside.
        () = async { drop(stop.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
