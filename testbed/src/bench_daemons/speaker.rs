//! The benchmark's own BGP speakers: the generator ("blaster") that sends
//! pre-encoded UPDATEs to the device under test, and the sink that decodes
//! what the DUT passes on and timestamps when it holds every prefix.
//!
//! Both open the TCP connection themselves from inside their network
//! namespace (the DUT accepts it), exchange OPENs with the 4-octet AS
//! capability (RFC 6793) and IPv4 unicast (RFC 4760), and keep the session
//! up with KEEPALIVEs at a third of the negotiated hold time (RFC 4271 §4.4,
//! §10). Messages are framed by hand (RFC 4271 §4.1) and encoded and decoded
//! with petrel's codec (`petrel_bgp::wire`).

use anyhow::{Context, bail};
use ipnet::{IpNet, Ipv4Net};
use nix::sched::{CloneFlags, setns};
use petrel_bgp::wire::{
    Capabilities, Family, HEADER_LEN, MAX_MESSAGE_LEN, Message, Nlri, Open, WireContext, decode,
    encode,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// First prefix of the synthetic table.
pub const FIRST_PREFIX: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Most prefixes [`bench_prefix`] can generate (sequential /24s from
/// 100.64.0.0, skipping 127.0.0.0/8, staying below 224.0.0.0).
pub const MAX_ROUTES: usize = (224 - 100) * 65536 - 64 * 256 - 65536;
/// The prefix sent once before timing, to check the DUT passes routes on.
pub const PROBE_PREFIX: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 51, 100, 0), 24) {
    Ok(p) => p,
    Err(_) => panic!("valid probe prefix"),
};

const LOOPBACK_FIRST_24: u32 = 127 << 16;
const LOOPBACK_LAST_24: u32 = (128 << 16) - 1;

/// The `i`-th prefix of the synthetic table: /24s counting up from
/// 100.64.0.0/24, skipping 127.0.0.0/8 (the kernel refuses routes there).
pub fn bench_prefix(i: usize) -> Option<Ipv4Net> {
    if i >= MAX_ROUTES {
        return None;
    }
    let mut n = (u32::from(FIRST_PREFIX) >> 8) + u32::try_from(i).ok()?;
    if n >= LOOPBACK_FIRST_24 {
        n += LOOPBACK_LAST_24 - LOOPBACK_FIRST_24 + 1;
    }
    Ipv4Net::new(Ipv4Addr::from(n << 8), 24).ok()
}

/// The inverse of [`bench_prefix`]: the index of `p` if it is one of the
/// first `n` prefixes of the table.
pub fn bench_index(p: &IpNet, n: usize) -> Option<usize> {
    let IpNet::V4(v4) = p else { return None };
    if v4.prefix_len() != 24 {
        return None;
    }
    let mut k = u32::from(v4.network()) >> 8;
    let first = u32::from(FIRST_PREFIX) >> 8;
    if k < first || (LOOPBACK_FIRST_24..=LOOPBACK_LAST_24).contains(&k) {
        return None;
    }
    if k > LOOPBACK_LAST_24 {
        k -= LOOPBACK_LAST_24 - LOOPBACK_FIRST_24 + 1;
    }
    let i = usize::try_from(k - first).ok()?;
    (i < n).then_some(i)
}

/// The first `n` prefixes of the table.
pub fn bench_prefixes(n: usize) -> anyhow::Result<Vec<Ipv4Net>> {
    if n > MAX_ROUTES {
        bail!("at most {MAX_ROUTES} routes can be generated, {n} asked");
    }
    (0..n)
        .map(|i| bench_prefix(i).with_context(|| format!("prefix #{i}")))
        .collect()
}

/// The generator's UPDATEs for `prefixes` (one shared attribute set: ORIGIN
/// IGP, AS_PATH `local_as`, NEXT_HOP `next_hop`), packed as many NLRI per
/// message as fit, followed by the IPv4 End-of-RIB (RFC 4724) when
/// `end_of_rib`; one contiguous buffer. Returns the buffer and the number of
/// UPDATEs carrying NLRI.
pub fn encode_table(
    prefixes: &[Ipv4Net],
    local_as: u32,
    next_hop: Ipv4Addr,
    end_of_rib: bool,
    ctx: &WireContext,
) -> anyhow::Result<(Vec<u8>, usize)> {
    let attrs = petrel_bgp::wire::PathAttributes {
        origin: Some(petrel_bgp::wire::Origin::Igp),
        as_path: vec![petrel_bgp::wire::AsSegment {
            kind: petrel_bgp::wire::AsSegmentKind::Sequence,
            asns: vec![local_as],
        }],
        next_hop: Some(next_hop),
        ..Default::default()
    };
    let nlri: Vec<Nlri> = prefixes.iter().map(|p| Nlri::new(IpNet::V4(*p))).collect();
    let msgs = petrel_bgp::wire::encode_announce(&attrs, &nlri, ctx)
        .context("encoding the generator's UPDATEs")?;
    let mut buf = Vec::with_capacity(msgs.iter().map(|m| m.len()).sum::<usize>() + 64);
    for m in &msgs {
        buf.extend_from_slice(m);
    }
    if end_of_rib {
        buf.extend_from_slice(&encode(&Message::EndOfRib(Family::Ipv4Unicast), ctx)?);
    }
    Ok((buf, msgs.len()))
}

/// Runs `f` on a fresh thread inside network namespace `netns` (a name
/// under `/run/netns`); sockets it creates stay in that namespace.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = Path::new("/run/netns").join(netns);
    let ns = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || -> anyhow::Result<T> {
            setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {netns}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in {netns} panicked"))?
    })
}

/// Reads one whole message (header included).
fn read_frame(r: &mut impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut frame = vec![0u8; HEADER_LEN];
    r.read_exact(&mut frame)?;
    let len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    if !(HEADER_LEN..=max).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message length {len} outside {HEADER_LEN}..={max}"),
        ));
    }
    frame.resize(len, 0);
    r.read_exact(&mut frame[HEADER_LEN..])?;
    Ok(frame)
}

/// An Established session with the DUT.
pub struct Session {
    name: String,
    writer: Arc<Mutex<TcpStream>>,
    ctx: WireContext,
    /// Negotiated hold time (seconds; 0 = no keepalives).
    hold: u16,
    stop: Arc<AtomicBool>,
    /// The first error the reader saw (NOTIFICATION, EOF, decode error).
    error: Arc<Mutex<Option<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Session {
    /// Connects from namespace `netns` to `peer:179` until the session is
    /// Established or `timeout` passes (the DUT may not listen yet, or may
    /// refuse the first attempts).
    pub fn establish(
        name: &str,
        netns: &str,
        local_as: u32,
        router_id: Ipv4Addr,
        peer: Ipv4Addr,
        timeout: Duration,
    ) -> anyhow::Result<(Session, TcpStream)> {
        let start = Instant::now();
        let addr = SocketAddr::from((peer, 179));
        loop {
            let attempt = in_netns(netns, || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            })?
            .with_context(|| format!("{name}: connecting to {addr}"))
            .and_then(|s| handshake(name, s, local_as, router_id));
            match attempt {
                Ok(ok) => return Ok(ok),
                Err(e) if start.elapsed() >= timeout => {
                    return Err(e.context(format!("{name}: no session after {timeout:?}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// KEEPALIVE interval: a third of the negotiated hold time (RFC 4271
    /// §10), `None` when the hold time is 0.
    pub fn keepalive(&self) -> Option<Duration> {
        (self.hold > 0).then(|| Duration::from_secs(u64::from(self.hold / 3).max(1)))
    }

    /// The negotiated codec parameters.
    pub fn ctx(&self) -> &WireContext {
        &self.ctx
    }

    /// Writes `bytes` (whole messages) at once; returns how long the write
    /// took (it blocks while the DUT's receive window is full).
    pub fn send(&self, bytes: &[u8]) -> anyhow::Result<Duration> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        w.write_all(bytes)
            .with_context(|| format!("{}: sending {} bytes", self.name, bytes.len()))?;
        Ok(start.elapsed())
    }

    /// The reader's first error, if the session went down.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts the keepalive thread and the reader thread; `on_update` sees
    /// every decoded UPDATE.
    pub fn start(
        &mut self,
        reader: TcpStream,
        mut on_update: impl FnMut(&petrel_bgp::wire::Update) + Send + 'static,
    ) -> anyhow::Result<()> {
        let ka = encode(&Message::Keepalive, &self.ctx)?;
        let (writer, stop) = (self.writer.clone(), self.stop.clone());
        let keepalive = self.keepalive();
        self.threads.push(std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if keepalive.is_some_and(|k| last.elapsed() >= k) {
                    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    if w.write_all(&ka).is_err() {
                        return;
                    }
                    last = Instant::now();
                }
            }
        }));
        let (ctx, stop, error, name) = (
            self.ctx.clone(),
            self.stop.clone(),
            self.error.clone(),
            self.name.clone(),
        );
        self.threads.push(std::thread::spawn(move || {
            let mut r = std::io::BufReader::with_capacity(1 << 16, reader);
            let fail = |msg: String| {
                if !stop.load(Ordering::Relaxed) {
                    error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(format!("{name}: {msg}"));
                }
            };
            loop {
                let frame = match read_frame(&mut r, ctx.max_message_len()) {
                    Ok(f) => f,
                    Err(e) => return fail(format!("reading: {e}")),
                };
                match decode(&frame, &ctx) {
                    Ok(rx) => match rx.message {
                        Message::Update(u) => on_update(&u),
                        Message::Notification(n) => {
                            return fail(format!("NOTIFICATION {}", n.describe()));
                        }
                        _ => {}
                    },
                    Err(e) => return fail(format!("decoding a message: {e}")),
                }
            }
        }));
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.shutdown(Shutdown::Both);
        drop(w);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// OPEN exchange until both sides sent KEEPALIVE (RFC 4271 §8.2.2).
fn handshake(
    name: &str,
    stream: TcpStream,
    local_as: u32,
    router_id: Ipv4Addr,
) -> anyhow::Result<(Session, TcpStream)> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let local = Open {
        asn: local_as,
        hold_time: super::configs::HOLD_TIME,
        router_id,
        caps: Capabilities {
            multiprotocol: vec![Family::Ipv4Unicast],
            route_refresh: true,
            four_octet_as: Some(local_as),
            ..Default::default()
        },
    };
    let initial = WireContext::initial();
    let mut s = stream.try_clone()?;
    s.write_all(&encode(&Message::Open(local.clone()), &initial)?)?;
    let mut remote = None;
    loop {
        let frame = read_frame(&mut s, MAX_MESSAGE_LEN)
            .with_context(|| format!("{name}: reading the DUT's OPEN/KEEPALIVE"))?;
        let ctx = match &remote {
            Some(r) => WireContext::negotiated(&local, r),
            None => initial.clone(),
        };
        match decode(&frame, &ctx)
            .with_context(|| format!("{name}: decoding during the handshake"))?
            .message
        {
            Message::Open(o) => {
                s.write_all(&encode(&Message::Keepalive, &initial)?)?;
                remote = Some(o);
            }
            Message::Keepalive if remote.is_some() => break,
            Message::Notification(n) => bail!("{name}: DUT sent NOTIFICATION {}", n.describe()),
            other => bail!("{name}: unexpected {other:?} during the handshake"),
        }
    }
    let remote = remote.context("no OPEN")?;
    let ctx = WireContext::negotiated(&local, &remote);
    let hold = local.hold_time.min(remote.hold_time);
    if !ctx.four_octet_as {
        bail!("{name}: DUT did not negotiate 4-octet AS numbers");
    }
    stream.set_read_timeout(None)?;
    let session = Session {
        name: name.to_string(),
        writer: Arc::new(Mutex::new(stream)),
        ctx,
        hold,
        stop: Arc::new(AtomicBool::new(false)),
        error: Arc::new(Mutex::new(None)),
        threads: Vec::new(),
    };
    Ok((session, s))
}

/// What the sink saw of the benchmark table: every prefix at most once,
/// with withdrawals taken back.
pub struct SinkProgress {
    n: usize,
    epoch: Instant,
    seen: Mutex<Vec<bool>>,
    count: AtomicUsize,
    probe: AtomicBool,
    /// UPDATEs that announced or withdrew table prefixes.
    updates: AtomicUsize,
    /// Nanoseconds since `epoch` of the first table prefix and of the
    /// moment all `n` were held (0 = not yet).
    first_ns: AtomicUsize,
    all_ns: AtomicUsize,
}

impl SinkProgress {
    /// Tracks the first `n` prefixes of the table; times are relative to `epoch`.
    pub fn new(n: usize, epoch: Instant) -> Arc<SinkProgress> {
        Arc::new(SinkProgress {
            n,
            epoch,
            seen: Mutex::new(vec![false; n]),
            count: AtomicUsize::new(0),
            probe: AtomicBool::new(false),
            updates: AtomicUsize::new(0),
            first_ns: AtomicUsize::new(0),
            all_ns: AtomicUsize::new(0),
        })
    }

    /// Applies one UPDATE.
    pub fn apply(&self, u: &petrel_bgp::wire::Update) {
        let now = self.epoch.elapsed().as_nanos().max(1);
        let now = usize::try_from(now).unwrap_or(usize::MAX);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if u.withdrawn
            .iter()
            .chain(&u.announced)
            .any(|n| bench_index(&n.prefix, self.n).is_some())
        {
            self.updates.fetch_add(1, Ordering::SeqCst);
        }
        for w in &u.withdrawn {
            if let Some(i) = bench_index(&w.prefix, self.n)
                && std::mem::take(&mut seen[i])
            {
                self.count.fetch_sub(1, Ordering::SeqCst);
            }
        }
        for a in &u.announced {
            if a.prefix == IpNet::V4(PROBE_PREFIX) {
                self.probe.store(true, Ordering::SeqCst);
            } else if let Some(i) = bench_index(&a.prefix, self.n)
                && !std::mem::replace(&mut seen[i], true)
            {
                let c = self.count.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = self
                    .first_ns
                    .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
                if c == self.n {
                    let _ =
                        self.all_ns
                            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
        }
    }

    /// Table prefixes held now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// UPDATEs received that carried table prefixes.
    pub fn updates(&self) -> usize {
        self.updates.load(Ordering::SeqCst)
    }

    /// Whether the probe prefix arrived.
    pub fn probe_seen(&self) -> bool {
        self.probe.load(Ordering::SeqCst)
    }

    /// When the first table prefix arrived.
    pub fn first_at(&self) -> Option<Instant> {
        self.at(&self.first_ns)
    }

    /// When the sink first held all `n` prefixes.
    pub fn all_at(&self) -> Option<Instant> {
        self.at(&self.all_ns)
    }

    fn at(&self, ns: &AtomicUsize) -> Option<Instant> {
        match ns.load(Ordering::SeqCst) {
            0 => None,
            v => Some(self.epoch + Duration::from_nanos(u64::try_from(v).ok()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn prefixes_are_unique_counted_and_invertible() {
        let n = 300_000;
        let p = bench_prefixes(n).unwrap();
        assert_eq!(p.len(), n);
        assert_eq!(p[0].to_string(), "100.64.0.0/24");
        assert_eq!(p[1].to_string(), "100.64.1.0/24");
        let set: HashSet<_> = p.iter().collect();
        assert_eq!(set.len(), n, "duplicates");
        for (i, x) in p.iter().enumerate().step_by(997) {
            assert_eq!(bench_index(&IpNet::V4(*x), n), Some(i));
        }
        assert_eq!(bench_index(&IpNet::V4(p[n - 1]), n - 1), None);
        assert!(!set.contains(&PROBE_PREFIX));
        assert_eq!(bench_index(&IpNet::V4(PROBE_PREFIX), n), None);
        let not24: IpNet = "100.64.0.0/23".parse().unwrap();
        assert_eq!(bench_index(&not24, n), None);
    }

    #[test]
    fn prefixes_skip_loopback_and_stop_before_multicast() {
        let before = (127 - 100) * 65536 - 64 * 256;
        assert_eq!(
            bench_prefix(before - 1).unwrap().to_string(),
            "126.255.255.0/24"
        );
        assert_eq!(bench_prefix(before).unwrap().to_string(), "128.0.0.0/24");
        assert_eq!(
            bench_index(&"128.0.0.0/24".parse().unwrap(), MAX_ROUTES),
            Some(before)
        );
        assert_eq!(
            bench_index(&"127.0.0.0/24".parse().unwrap(), MAX_ROUTES),
            None
        );
        assert_eq!(
            bench_prefix(MAX_ROUTES - 1).unwrap().to_string(),
            "223.255.255.0/24"
        );
        assert!(bench_prefix(MAX_ROUTES).is_none());
        assert!(bench_prefixes(MAX_ROUTES + 1).is_err());
    }

    #[test]
    fn table_encodes_packed_and_decodes_back() {
        let n = 5000;
        let prefixes = bench_prefixes(n).unwrap();
        let ctx = WireContext {
            four_octet_as: true,
            ..Default::default()
        };
        let (buf, updates) = encode_table(&prefixes, 65001, GEN_NH, true, &ctx).unwrap();
        // /24s take 4 bytes each: about a thousand per 4096-byte UPDATE.
        assert!((5..=6).contains(&updates), "{updates} UPDATEs");
        let progress = SinkProgress::new(n, Instant::now());
        let mut r = &buf[..];
        let mut eor = false;
        while !r.is_empty() {
            let frame = read_frame(&mut r, MAX_MESSAGE_LEN).unwrap();
            match decode(&frame, &ctx).unwrap().message {
                Message::Update(u) => {
                    let attrs = u.attrs.as_ref().unwrap();
                    assert_eq!(attrs.next_hop, Some(GEN_NH));
                    assert_eq!(attrs.as_path[0].asns, vec![65001]);
                    progress.apply(&u);
                }
                Message::EndOfRib(Family::Ipv4Unicast) => eor = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(eor);
        assert_eq!(progress.count(), n);
        assert_eq!(progress.updates(), updates);
        assert!(progress.all_at().is_some() && progress.first_at().is_some());
        assert!(!progress.probe_seen());
    }

    const GEN_NH: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 2);

    #[test]
    fn sink_counts_each_prefix_once_and_takes_withdrawals_back() {
        let p = |s: &str| Nlri::new(s.parse().unwrap());
        let progress = SinkProgress::new(2, Instant::now());
        let upd = |announced: Vec<Nlri>, withdrawn: Vec<Nlri>| petrel_bgp::wire::Update {
            withdrawn,
            attrs: None,
            announced,
        };
        progress.apply(&upd(vec![p("100.64.0.0/24"), p("100.64.0.0/24")], vec![]));
        assert_eq!(progress.count(), 1);
        assert!(progress.first_at().is_some() && progress.all_at().is_none());
        progress.apply(&upd(vec![p("100.64.5.0/24")], vec![]));
        assert_eq!(progress.count(), 1, "outside the first 2");
        progress.apply(&upd(vec![], vec![p("100.64.0.0/24")]));
        assert_eq!(progress.count(), 0);
        progress.apply(&upd(
            vec![p("100.64.0.0/24"), p("100.64.1.0/24"), p("198.51.100.0/24")],
            vec![],
        ));
        assert_eq!(progress.count(), 2);
        assert!(progress.all_at().is_some() && progress.probe_seen());
        // The UPDATE with only a prefix beyond the first 2 does not count.
        assert_eq!(progress.updates(), 3);
    }
}
