//! Packet captures on a node's interface (tcpdump writing pcap to a pipe)
//! and a parser for what tests look at: the outer IP header of each frame,
//! ICMP echo, and whether the packet is a tunnel (IP-in-IP, GRE, VXLAN,
//! Geneve, ...). Used to show that pod traffic crosses links as plain IP
//! between the pods' own addresses.

use crate::lab::Lab;
use anyhow::{Context, bail, ensure};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tcpdump on one interface of a node, writing pcap to a pipe.
pub struct Capture {
    child: Option<Child>,
    reader: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Capture {
    pub fn start(lab: &Lab, node: &str, iface: &str) -> anyhow::Result<Capture> {
        Capture::start_in(&lab.netns(node)?, iface)
    }

    /// [`Capture::start`] in any named network namespace.
    pub fn start_in(netns: &str, iface: &str) -> anyhow::Result<Capture> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args([
                "tcpdump",
                "-i",
                iface,
                "-n",
                "--immediate-mode",
                "-U",
                "-s",
                "256",
                "-w",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (package tcpdump)")?;
        let mut out = child.stdout.take().context("tcpdump stdout")?;
        let err = child.stderr.take().context("tcpdump stderr")?;
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let mut capture = Capture {
            child: Some(child),
            reader: Some(reader),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => return Ok(capture),
                Ok(line) => seen.push(line),
                Err(_) => {
                    capture.kill();
                    bail!("tcpdump on {netns}:{iface} did not start: {seen:?}");
                }
            }
        }
    }

    /// Stops tcpdump (SIGINT flushes its output) and returns the frames.
    /// tcpdump runs in immediate mode: without it, packets still in the
    /// kernel's current ring block when it is interrupted would be lost.
    pub fn stop(mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()?;
            child.wait()?;
        }
        let pcap = self
            .reader
            .take()
            .context("capture already read")?
            .join()
            .map_err(|_| anyhow::anyhow!("capture reader panicked"))?;
        parse_pcap(&pcap)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Frames of a classic pcap file (any byte order, micro- or nanosecond
/// timestamps); the link type must be Ethernet.
pub fn parse_pcap(data: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    ensure!(data.len() >= 24, "pcap too short ({} bytes)", data.len());
    let magic = u32::from_le_bytes(data[0..4].try_into()?);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => bail!("not a pcap file (magic {m:#x})"),
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let x: [u8; 4] = b[at..at + 4].try_into().unwrap_or_default();
        if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    };
    ensure!(
        u32_at(data, 20) == 1,
        "link type {} is not Ethernet",
        u32_at(data, 20)
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32_at(data, at + 8) as usize;
        let start = at + 16;
        ensure!(
            start + len <= data.len(),
            "truncated pcap record at byte {at}"
        );
        frames.push(data[start..start + len].to_vec());
        at = start + len;
    }
    Ok(frames)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    EchoRequest,
    EchoReply,
    Other(u8),
}

impl IcmpKind {
    pub fn is_echo(self) -> bool {
        matches!(self, IcmpKind::EchoRequest | IcmpKind::EchoReply)
    }
}

/// The outer IP header of an Ethernet frame and what follows it.
#[derive(Debug, Clone)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol or IPv6 next header.
    pub proto: u8,
    pub icmp: Option<IcmpKind>,
    pub udp_dst: Option<u16>,
}

impl Packet {
    pub fn parse(frame: &[u8]) -> Option<Packet> {
        let mut ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
        let mut l3 = 14;
        while ethertype == 0x8100 || ethertype == 0x88a8 {
            ethertype = u16::from_be_bytes(frame.get(l3 + 2..l3 + 4)?.try_into().ok()?);
            l3 += 4;
        }
        let ip = frame.get(l3..)?;
        let (src, dst, proto, payload) = match ethertype {
            0x0800 => {
                let ihl = usize::from(ip.first()? & 0x0f) * 4;
                let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                (
                    IpAddr::from(s),
                    IpAddr::from(d),
                    *ip.get(9)?,
                    ip.get(ihl..)?,
                )
            }
            0x86dd => {
                let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(d), *ip.get(6)?, ip.get(40..)?)
            }
            _ => return None,
        };
        let icmp = match (proto, payload.first()) {
            (1, Some(0)) | (58, Some(129)) => Some(IcmpKind::EchoReply),
            (1, Some(8)) | (58, Some(128)) => Some(IcmpKind::EchoRequest),
            (1 | 58, Some(t)) => Some(IcmpKind::Other(*t)),
            _ => None,
        };
        let udp_dst = (proto == 17)
            .then(|| payload.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]])))
            .flatten();
        Some(Packet {
            src,
            dst,
            proto,
            icmp,
            udp_dst,
        })
    }

    /// The tunnel this packet is, if any.
    pub fn encapsulation(&self) -> Option<&'static str> {
        match (self.proto, self.udp_dst) {
            (4, _) => Some("IP-in-IP"),
            (41, _) => Some("IPv6-in-IP"),
            (47, _) => Some("GRE"),
            (50, _) => Some("ESP"),
            (97, _) => Some("EtherIP"),
            (115, _) => Some("L2TP"),
            (17, Some(4789 | 8472)) => Some("VXLAN"),
            (17, Some(6081)) => Some("Geneve"),
            _ => None,
        }
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {} proto {}", self.src, self.dst, self.proto)?;
        if let Some(i) = self.icmp {
            write!(f, " {i:?}")?;
        }
        if let Some(p) = self.udp_dst {
            write!(f, " udp dport {p}")?;
        }
        if let Some(t) = self.encapsulation() {
            write!(f, " ({t})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_parser_sees_tunnels_and_pod_addresses() {
        // Ethernet + IPv4 ICMP echo request 10.244.0.1 -> 10.244.0.9.
        let mut v4 = vec![0u8; 14];
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 244, 0, 1, 10, 244, 0, 9,
        ];
        ip.extend([8, 0, 0, 0, 0, 1, 0, 1]);
        v4.extend(&ip);
        let p = Packet::parse(&v4).unwrap();
        assert_eq!(p.src, "10.244.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.icmp, Some(IcmpKind::EchoRequest));
        assert_eq!(p.encapsulation(), None);
        // The same wrapped in IP-in-IP between node addresses.
        let mut outer = vec![0u8; 14];
        outer[12..14].copy_from_slice(&[0x08, 0x00]);
        outer.extend([
            0x45, 0, 0, 48, 0, 0, 0, 0, 64, 4, 0, 0, 10, 0, 1, 1, 10, 0, 2, 1,
        ]);
        outer.extend(&ip);
        let p = Packet::parse(&outer).unwrap();
        assert_eq!((p.proto, p.encapsulation()), (4, Some("IP-in-IP")));
        assert_eq!(p.icmp, None);
        // VXLAN: UDP to 4789.
        let mut vx = vec![0u8; 14];
        vx[12..14].copy_from_slice(&[0x08, 0x00]);
        vx.extend([
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 1, 1, 10, 0, 2, 1,
        ]);
        vx.extend([0x12, 0x34, 0x12, 0xb5, 0, 8, 0, 0]);
        assert_eq!(Packet::parse(&vx).unwrap().encapsulation(), Some("VXLAN"));
        // pcap framing: header + one record.
        let mut pcap = Vec::new();
        pcap.extend(0xa1b2_c3d4u32.to_le_bytes());
        pcap.extend([2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]);
        pcap.extend([0u8; 8]);
        pcap.extend((v4.len() as u32).to_le_bytes());
        pcap.extend((v4.len() as u32).to_le_bytes());
        pcap.extend(&v4);
        assert_eq!(parse_pcap(&pcap).unwrap(), vec![v4]);
        assert!(parse_pcap(&pcap[..pcap.len() - 1]).is_err());
        assert!(parse_pcap(b"not a pcap file at all, really").is_err());
    }
}
