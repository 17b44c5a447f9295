//! The accept loop against clients that never finish a request.

use super::*;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMITS: Limits = Limits {
    max_connections: 4,
    header_read_timeout: Duration::from_millis(300),
    idle_timeout: Duration::from_millis(800),
};

async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/metrics", get(|| async { "up 1\n" }));
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, app, limits, stop.clone()));
    (addr, stop)
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One `GET /metrics`, retried (as a scraper would) while the server turns
/// connections away; gives up after 5 s.
async fn get_metrics(addr: std::net::SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        let sent = s
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let read = tokio::time::timeout_at(deadline, s.read_to_string(&mut out)).await;
        match read {
            Err(_) => panic!("no answer within 5 s"),
            Ok(Ok(_)) if sent.is_ok() && !out.is_empty() => return out,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn half_sent(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s
}

#[tokio::test]
async fn half_sent_headers_are_cut_off_after_the_header_timeout() {
    let (addr, stop) = start(LIMITS).await;
    let mut s = half_sent(addr).await;
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "a connection that never finished its header was kept"
    );
    stop.cancel();
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_the_server_still_answers() {
    let (addr, stop) = start(Limits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..LIMITS
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..LIMITS.max_connections {
        held.push(half_sent(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = half_sent(addr).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(3)).await,
        "a connection over the cap was kept"
    );
    // Once the holders go away, normal requests are served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = get_metrics(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("up 1\n"), "{answer}");
    stop.cancel();
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (addr, stop) = start(LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "an idle keep-alive connection was kept"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_slowloris_does_not_stop_scrapes() {
    let (addr, stop) = start(Limits {
        max_connections: 64,
        ..LIMITS
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(half_sent(addr).await);
    }
    // Within the header timeout the slots free up again.
    let t0 = std::time::Instant::now();
    let answer = get_metrics(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    stop.cancel();
}
