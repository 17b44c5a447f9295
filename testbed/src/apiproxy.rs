//! Reaching a host-loopback API server from inside node namespaces without
//! touching the host's interfaces or routes.
//!
//! The control plane ([`crate::k8s::ControlPlane`]) listens on the host's
//! `127.0.0.1`, which a network namespace cannot reach. Filesystem objects are
//! shared across network namespaces, so a Unix socket bridges them:
//!
//! ```text
//! agent (node netns) -> 127.0.0.1:6443 (node's loopback; ApiProxy::add_node)
//!   -> <lab>/apiserver.sock (Unix socket; ApiProxy::start)
//!   -> 127.0.0.1:<apiserver port> (host loopback)
//! ```
//!
//! [`KubeAccess`] says which kubeconfig each node uses; [`crate::Lab::deploy_kube`]
//! sets all of this up for `datastore: kubernetes` nodes.
//!
//! TLS passes through untouched (the API server's certificate is valid for
//! `127.0.0.1`, so the node's kubeconfig only changes the port). Both ends
//! are plain threads: the in-namespace listener is bound by a thread that
//! entered the node's namespace with `setns(2)` first; the sockets it then
//! accepts stay in that namespace whichever thread uses them. Dropping an
//! [`ApiProxy`] stops the accept loops and shuts every open connection down.
//! When the API server is down, the host side refuses each new connection by
//! closing it, as a dead server would.

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};
use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The port every node's forwarder listens on (its own loopback).
pub const NODE_API_PORT: u16 = 6443;
/// How often an accept loop checks whether it must stop.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// How `datastore: kubernetes` petrel nodes reach an API server on the
/// host's loopback (see the module documentation): each gets a copy of its
/// kubeconfig pointing at `https://127.0.0.1:6443` on its own loopback,
/// where a forwarder listens.
#[derive(Debug, Clone)]
pub struct KubeAccess {
    /// The API server's URL on the host, `https://127.0.0.1:<port>`, as
    /// written in the kubeconfigs.
    pub server: String,
    /// The kubeconfig of nodes without their own in `per_node`.
    pub kubeconfig: PathBuf,
    /// Per-node kubeconfigs (for example ServiceAccount tokens bound to the
    /// node).
    pub per_node: BTreeMap<String, PathBuf>,
}

impl KubeAccess {
    /// Every node uses `kubeconfig`, whose server is `server`.
    pub fn new(server: &str, kubeconfig: &Path) -> KubeAccess {
        KubeAccess {
            server: server.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            per_node: BTreeMap::new(),
        }
    }

    /// Uses `kubeconfig` for `node`.
    pub fn with_node(mut self, node: &str, kubeconfig: &Path) -> KubeAccess {
        self.per_node
            .insert(node.to_string(), kubeconfig.to_path_buf());
        self
    }

    pub(crate) fn upstream(&self) -> anyhow::Result<std::net::SocketAddr> {
        let hostport = self.server.strip_prefix("https://").with_context(|| {
            format!("API server URL {:?} is not https://HOST:PORT", self.server)
        })?;
        hostport
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("API server URL {:?} is not https://IP:PORT", self.server))
    }

    /// The node's kubeconfig with the server replaced by the node-local
    /// forwarder's address.
    pub(crate) fn node_kubeconfig(&self, node: &str) -> anyhow::Result<String> {
        let src = self.per_node.get(node).unwrap_or(&self.kubeconfig);
        let text = std::fs::read_to_string(src)
            .with_context(|| format!("reading kubeconfig {}", src.display()))?;
        let from = format!("server: {}", self.server.trim_end_matches('/'));
        if !text.contains(&from) {
            bail!("kubeconfig {} has no `{from}` (node {node})", src.display());
        }
        Ok(text.replace(&from, &format!("server: https://127.0.0.1:{NODE_API_PORT}")))
    }
}

/// Either end of a forwarded connection, so that [`ApiProxy`]'s drop can shut
/// it down.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// State shared by all accept loops and connection threads.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Open connections (both ends), until both copy directions end.
    conns: Mutex<HashMap<u64, [Conn; 2]>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, [Conn; 2]>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, ends: [Conn; 2]) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.conns().insert(id, ends);
        id
    }

    fn unregister(&self, id: u64) {
        self.conns().remove(&id);
    }

    /// Shuts every open connection down (their copy threads then end).
    fn shutdown_all(&self) {
        let all = std::mem::take(&mut *self.conns());
        for ends in all.into_values() {
            for end in ends {
                end.shutdown();
            }
        }
    }
}

/// The host end plus one listener per node; everything stops on drop.
pub struct ApiProxy {
    socket: PathBuf,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ApiProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProxy")
            .field("socket", &self.socket)
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl ApiProxy {
    /// Listens on the Unix socket `socket` (created; must not exist) and
    /// forwards each connection to `upstream` on the host's loopback.
    pub fn start(socket: &Path, upstream: SocketAddr) -> anyhow::Result<ApiProxy> {
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("binding Unix socket {}", socket.display()))?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("apiproxy-host".into())
            .spawn(move || {
                accept_loop(
                    &sh,
                    || listener.accept().map(|(s, _)| s),
                    |down| {
                        let up = TcpStream::connect(upstream)?;
                        let _ = up.set_nodelay(true);
                        Ok((down, up))
                    },
                )
            })
            .context("starting the host forwarder thread")?;
        Ok(ApiProxy {
            socket: socket.to_path_buf(),
            shared,
            threads: vec![thread],
        })
    }

    /// The Unix socket the host forwarder listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Listens on `127.0.0.1:port` inside network namespace `netns` (a
    /// name under `/run/netns`) and forwards each connection to this
    /// proxy's Unix socket. Returns once the listener is bound.
    pub fn add_node(&mut self, netns: &str, port: u16) -> anyhow::Result<()> {
        let ns_path = Path::new("/run/netns").join(netns);
        let ns = std::fs::File::open(&ns_path)
            .with_context(|| format!("opening {}", ns_path.display()))?;
        let socket = self.socket.clone();
        let sh = self.shared.clone();
        let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let netns_name = netns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("apiproxy-{netns}"))
            .spawn(move || {
                // This thread alone moves into the node's namespace.
                let bound = setns(&ns, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("setns into {netns_name}"))
                    .and_then(|()| {
                        let l = TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                            format!("binding 127.0.0.1:{port} in netns {netns_name}")
                        })?;
                        l.set_nonblocking(true)?;
                        Ok(l)
                    });
                let listener = match bound {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                accept_loop(
                    &sh,
                    || listener.accept().map(|(s, _)| s),
                    |down| {
                        let _ = down.set_nodelay(true);
                        let up = UnixStream::connect(&socket)?;
                        Ok((down, up))
                    },
                )
            })
            .context("starting a node forwarder thread")?;
        self.threads.push(thread);
        rx.recv()
            .context("node forwarder thread ended before binding")??;
        Ok(())
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.shutdown_all();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Streams both ends of a connection can be: cloned for the second copy
/// direction and registered for shutdown.
trait Stream: Read + Write + Send + Sized + 'static {
    fn try_clone_stream(&self) -> std::io::Result<Self>;
    fn conn(&self) -> std::io::Result<Conn>;
    fn shutdown_write(&self);
    fn set_blocking(&self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn conn(&self) -> std::io::Result<Conn> {
        Ok(Conn::Tcp(self.try_clone()?))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn set_blocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(false)
    }
}

impl Stream for UnixStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn conn(&self) -> std::io::Result<Conn> {
        Ok(Conn::Unix(self.try_clone()?))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn set_blocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(false)
    }
}

/// Accepts until the proxy stops; each connection is forwarded by two
/// threads (one per direction). A failed upstream connect closes the
/// accepted connection.
fn accept_loop<D: Stream, U: Stream>(
    shared: &Arc<Shared>,
    mut accept: impl FnMut() -> std::io::Result<D>,
    connect: impl Fn(D) -> std::io::Result<(D, U)>,
) {
    while !shared.stopping() {
        match accept() {
            Ok(down) => {
                if down.set_blocking().is_err() {
                    continue;
                }
                // A refused upstream drops `down`, closing it.
                if let Ok((down, up)) = connect(down) {
                    let _ = forward(shared, down, up);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                std::thread::sleep(ACCEPT_POLL)
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

fn forward<D: Stream, U: Stream>(shared: &Arc<Shared>, down: D, up: U) -> std::io::Result<()> {
    let (down2, up2) = (down.try_clone_stream()?, up.try_clone_stream()?);
    let id = shared.register([down.conn()?, up.conn()?]);
    // The second direction to end forgets the connection.
    let left = Arc::new(AtomicUsize::new(2));
    let done = {
        let shared = shared.clone();
        move || {
            if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                shared.unregister(id);
            }
        }
    };
    let done2 = done.clone();
    let spawned = std::thread::Builder::new()
        .name("apiproxy-up".into())
        .spawn(move || {
            pipe(down, up);
            done();
        })
        .and_then(|_| {
            std::thread::Builder::new()
                .name("apiproxy-down".into())
                .spawn(move || {
                    pipe(up2, down2);
                    done2();
                })
        });
    if spawned.is_err() {
        // Close both ends; a thread that did start then ends too.
        if let Some(ends) = shared.conns().remove(&id) {
            for end in ends {
                end.shutdown();
            }
        }
    }
    spawned.map(drop)
}

/// Copies `from` to `to` until EOF or an error, then half-closes `to`.
fn pipe<A: Stream, B: Stream>(mut from: A, mut to: B) {
    let _ = std::io::copy(&mut from, &mut to);
    to.shutdown_write();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed connections are forgotten (both copy threads ended).
    fn wait_no_conns(proxy: &ApiProxy) {
        let start = std::time::Instant::now();
        while !proxy.shared.conns().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "connections never forgotten"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A network namespace for one test, deleted on drop.
    struct TestNetns(String);

    impl TestNetns {
        fn new(tag: &str) -> TestNetns {
            let name = format!("ptproxy{}-{tag}", std::process::id());
            let ok = |args: &[&str]| {
                let st = std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .unwrap();
                assert!(st.success(), "ip {args:?}");
            };
            ok(&["netns", "add", &name]);
            let ns = TestNetns(name);
            ok(&["-n", &ns.0, "link", "set", "lo", "up"]);
            ns
        }

        /// Sends `msg` to 127.0.0.1:`port` from inside the namespace and
        /// returns the reply (bash's /dev/tcp), or `None` if it cannot connect.
        fn roundtrip(&self, port: u16, msg: &str) -> Option<String> {
            let script = format!(
                "exec 3<>/dev/tcp/127.0.0.1/{port} || exit 7; printf '{msg}' >&3; head -c {} <&3",
                msg.len()
            );
            let out = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &self.0, "timeout", "5", "bash", "-c", &script,
                ])
                .stderr(std::process::Stdio::null())
                .output()
                .unwrap();
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    /// Upper-cases what each connection sends, until it closes.
    fn upcase_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn node_listener_lives_in_the_namespace_only_and_stops_on_drop() {
        if !crate::is_root() {
            eprintln!("skipped: needs root (network namespaces)");
            return;
        }
        let ns = TestNetns::new("a");
        let dir = std::env::temp_dir().join(format!("petrel-apiproxy-ns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut proxy = ApiProxy::start(&dir.join("api.sock"), upcase_server()).unwrap();
        proxy.add_node(&ns.0, port).unwrap();
        // Inside the namespace, 127.0.0.1:port reaches the host's server.
        assert_eq!(ns.roundtrip(port, "ping").as_deref(), Some("PING"));
        assert_eq!(ns.roundtrip(port, "again").as_deref(), Some("AGAIN"));
        // The host's own loopback has no such listener.
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        // The same port in another namespace is free again for a second node.
        let other = TestNetns::new("b");
        proxy.add_node(&other.0, port).unwrap();
        assert_eq!(other.roundtrip(port, "b").as_deref(), Some("B"));
        // A second listener on a taken port is an error, not a hang.
        let err = format!("{:#}", proxy.add_node(&ns.0, port).unwrap_err());
        assert!(err.contains(&ns.0), "{err}");
        wait_no_conns(&proxy);
        drop(proxy);
        assert_eq!(ns.roundtrip(port, "x"), None, "listener gone after drop");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn node_kubeconfigs_point_at_the_node_forwarder() {
        let dir = std::env::temp_dir().join(format!("petrel-kubeaccess-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (admin, own) = (dir.join("admin"), dir.join("n2"));
        std::fs::write(
            &admin,
            "clusters:\n- cluster:\n    server: https://127.0.0.1:4321\n",
        )
        .unwrap();
        std::fs::write(&own, "server: https://127.0.0.1:4321\nuser: n2\n").unwrap();
        let access = KubeAccess::new("https://127.0.0.1:4321", &admin).with_node("n2", &own);
        assert_eq!(
            access.upstream().unwrap(),
            "127.0.0.1:4321".parse().unwrap()
        );
        assert_eq!(
            access.node_kubeconfig("n1").unwrap(),
            "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
        );
        assert_eq!(
            access.node_kubeconfig("n2").unwrap(),
            "server: https://127.0.0.1:6443\nuser: n2\n"
        );
        let other = KubeAccess::new("https://127.0.0.1:9999", &admin);
        let err = format!("{:#}", other.node_kubeconfig("n1").unwrap_err());
        assert!(err.contains("no `server: https://127.0.0.1:9999`"), "{err}");
        assert!(KubeAccess::new("http://x", &admin).upstream().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_forwarder_relays_both_ways_and_refuses_when_upstream_is_gone() {
        let dir = std::env::temp_dir().join(format!("petrel-apiproxy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = upstream.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
            // `upstream` is dropped here: later connects are refused.
        });
        let socket = dir.join("api.sock");
        let proxy = ApiProxy::start(&socket, addr).unwrap();
        let mut c = UnixStream::connect(&socket).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HELLO");
        server.join().unwrap();
        // Upstream closed: EOF reaches the client.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        // Nothing listens upstream any more: the connection is closed at once.
        let mut c2 = UnixStream::connect(&socket).unwrap();
        c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        assert_eq!(c2.read_to_end(&mut rest).unwrap(), 0);
        drop((c, c2));
        wait_no_conns(&proxy);
        drop(proxy);
        assert!(!socket.exists(), "the socket is removed on drop");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
