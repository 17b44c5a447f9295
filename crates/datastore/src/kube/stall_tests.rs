//! A watch whose first LIST never gets an answer starts its list again
//! (against a fake API server that holds that one request forever).

use crate::kube::ipam::KubeIpamStore;
use petrel_ipam::store::IpamStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts the LISTs of IPAMBlocks it was sent (watches not included).
#[derive(Default)]
struct Fake {
    block_lists: AtomicUsize,
    /// Whether the watcher's first LIST is being held.
    held: std::sync::atomic::AtomicBool,
}

/// Serves plain-HTTP/1.1 requests of the two IPAM kinds: every watch is
/// accepted and stays silent; every LIST answers an empty list, except the
/// watcher's first LIST of IPAMBlocks (paged: it has a `limit`), which is
/// never answered.
async fn serve(listener: tokio::net::TcpListener, fake: Arc<Fake>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let fake = fake.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                // One request: headers only (these are all GETs).
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if path.contains("watch=true") {
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                              Transfer-Encoding: chunked\r\n\r\n",
                        )
                        .await;
                    std::future::pending::<()>().await;
                }
                if path.contains("/ipamblocks") {
                    fake.block_lists.fetch_add(1, Ordering::SeqCst);
                    let from_watcher = path.contains("limit=");
                    if from_watcher && !fake.held.swap(true, Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                }
                let kind = if path.contains("/ipamblocks") {
                    "IPAMBlockList"
                } else {
                    "BlockAffinityList"
                };
                let body = format!(
                    r#"{{"apiVersion":"petrel.dev/v1","kind":"{kind}","metadata":{{"resourceVersion":"5"}},"items":[]}}"#
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if conn.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn client(port: u16) -> kube::Client {
    let url = format!("http://127.0.0.1:{port}").parse().unwrap();
    kube::Client::try_from(kube::Config::new(url)).unwrap()
}

/// Whether one list of the store cost no LIST on the server (it was
/// answered from the watch).
async fn from_the_watch(store: &KubeIpamStore, fake: &Fake) -> bool {
    let before = fake.block_lists.load(Ordering::SeqCst);
    store.list_blocks().await.unwrap();
    fake.block_lists.load(Ordering::SeqCst) == before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_never_answers_is_started_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = Arc::new(Fake::default());
    tokio::spawn(serve(listener, fake.clone()));

    let store = KubeIpamStore::new(client(port).await).with_watch_stall(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !from_the_watch(&store, &fake).await {
        assert!(
            Instant::now() < deadline,
            "the watch never completed a list: its first LIST hangs and was never started again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fake.held.load(Ordering::SeqCst),
        "the fake held the watcher's first LIST, so the watch's list was a later one"
    );
}
