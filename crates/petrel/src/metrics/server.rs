//! The HTTP/1.1 accept loop of the metrics endpoints, hardened against
//! clients that open connections and never finish (slowloris): the metrics
//! port may listen on 0.0.0.0 (the DaemonSet in README does), and every
//! connection it holds is a file descriptor the BGP listener and the API
//! socket need too.
//!
//! - at most [`MAX_CONNECTIONS`] connections at a time: an excess one is
//!   accepted and closed at once, so it never waits in the backlog holding
//!   the client;
//! - a request's header must arrive within [`HEADER_READ_TIMEOUT`];
//! - a connection with no traffic for [`IDLE_TIMEOUT`] is closed;
//! - accept errors (e.g. EMFILE) back off up to [`MAX_ACCEPT_BACKOFF`] and
//!   are logged at most once per [`LOG_EVERY`], instead of spinning.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Connections served at the same time; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a whole request header.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with nothing read or written for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of the pause after a failed accept.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Accept errors and refused connections are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The limits of [`serve`]; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then wait for the
/// connections in flight (each ends within the idle timeout at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    let mut last_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    let mut log_limited = |what: String| {
        let now = Instant::now();
        if last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            if suppressed > 0 {
                warn!(suppressed, "{what} (more since the last message)");
            } else {
                warn!("{what}");
            }
            last_log = Some(now);
            suppressed = 0;
        } else {
            suppressed += 1;
        }
    };
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, remote) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                log_limited(format!("metrics: accept failed: {e}"));
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor; the client sees a reset.
            drop(stream);
            log_limited(format!(
                "metrics: {} connections open, closed the one from {remote}",
                limits.max_connections
            ));
            continue;
        };
        let app = app.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            serve_connection(stream, app, limits, stop).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        start,
    });
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let idle_deadline = start + last + limits.idle_timeout;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(error = %e, "metrics connection ended");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                if start + last + limits.idle_timeout <= Instant::now() {
                    debug!("metrics connection idle, closed");
                    return;
                }
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A stream that records when it last moved data (milliseconds since
/// `start`), for the idle timeout.
struct Tracked {
    inner: TcpStream,
    activity: Arc<AtomicU64>,
    start: Instant,
}

impl Tracked {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
