//! Equivalent device-under-test configurations for the whole-daemon
//! benchmark, and the three-node topology (`gen` — `dut` — `sink`) that the
//! [`crate::Lab`] deploys for each run.
//!
//! Every DUT runs AS 65002 with an eBGP session to the generator (AS 65001)
//! and one to the sink (AS 65003), imports and exports everything on both,
//! proposes hold 90 s / keepalive 30 s, uses no MRAI or update delay, and
//! logs warnings only. petrel, BIRD (`kernel` protocol) and FRR (zebra)
//! install the learned routes into the DUT namespace's kernel; GoBGP has no
//! FIB without zebra and runs without one. Related RFCs: RFC 4271 (eBGP
//! sessions, MRAI §9.2.1.1), RFC 6793 (4-octet AS).

use crate::topology::Kind;
use std::net::Ipv4Addr;

/// The generator's AS.
pub const GEN_AS: u32 = 65001;
/// The device under test's AS.
pub const DUT_AS: u32 = 65002;
/// The sink's AS.
pub const SINK_AS: u32 = 65003;
/// DUT side of the gen link (`dut:eth1`).
pub const DUT_GEN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 1);
/// Generator side of the gen link (`gen:eth1`).
pub const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 2);
/// DUT side of the sink link (`dut:eth2`); also the DUT's router id.
pub const DUT_SINK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 255, 2, 1);
/// Sink side of the sink link (`sink:eth1`).
pub const SINK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 255, 2, 2);
/// Prefix length of both point-to-point links.
pub const LINK_LEN: u8 = 30;
/// Proposed hold time (seconds); keepalive is a third of it.
pub const HOLD_TIME: u16 = 90;
/// Name of petrel's BGPFilter that makes the DUT pass routes on to the sink.
pub const PETREL_FILTER: &str = "bench-transit";

/// One DUT daemon of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Daemon {
    Petrel,
    Bird,
    Frr,
    Gobgp,
}

impl Daemon {
    /// All daemons, in report order.
    pub const ALL: [Daemon; 4] = [Daemon::Petrel, Daemon::Bird, Daemon::Frr, Daemon::Gobgp];

    /// Name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Petrel => "petrel",
            Daemon::Bird => "bird",
            Daemon::Frr => "frr",
            Daemon::Gobgp => "gobgp",
        }
    }

    /// Display name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Daemon::Petrel => "petrel",
            Daemon::Bird => "BIRD",
            Daemon::Frr => "FRR",
            Daemon::Gobgp => "GoBGP",
        }
    }

    /// The testbed node kind that runs it.
    pub fn kind(self) -> Kind {
        match self {
            Daemon::Petrel => Kind::Petrel,
            Daemon::Bird => Kind::Bird,
            Daemon::Frr => Kind::Frr,
            Daemon::Gobgp => Kind::Gobgp,
        }
    }

    /// Whether the daemon installs learned routes into the kernel in this
    /// benchmark.
    pub fn installs_fib(self) -> bool {
        self != Daemon::Gobgp
    }

    /// Parses one command-line name.
    pub fn parse(s: &str) -> anyhow::Result<Daemon> {
        Daemon::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                anyhow::anyhow!("unknown daemon {s:?} (expected petrel, bird, frr or gobgp)")
            })
    }

    /// Parses a comma-separated list, keeping order and dropping duplicates.
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Daemon>> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let d = Daemon::parse(part)?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        if out.is_empty() {
            anyhow::bail!("--daemons names no daemon");
        }
        Ok(out)
    }
}

/// The config path the topology's `dut` node refers to (relative to the
/// topology file), and the files to write there: `(relative path, text)`.
pub fn dut_files(d: Daemon) -> (&'static str, Vec<(String, String)>) {
    match d {
        Daemon::Petrel => ("petrel", petrel_manifests()),
        Daemon::Bird => ("bird.conf", vec![("bird.conf".into(), bird_conf())]),
        Daemon::Frr => ("frr.conf", vec![("frr.conf".into(), frr_conf())]),
        Daemon::Gobgp => ("gobgp.toml", vec![("gobgp.toml".into(), gobgp_toml())]),
    }
}

/// The containerlab-format topology of one run: `gen:eth1 — dut:eth1`,
/// `dut:eth2 — sink:eth1`.
pub fn topology_yaml(d: Daemon) -> String {
    let (config, _) = dut_files(d);
    format!(
        "# Written by `testbed bench-daemons`: generator -> {label} -> sink.\n\
         name: bench-{name}\n\
         topology:\n\
         \x20 nodes:\n\
         \x20   gen:\n\
         \x20     kind: linux\n\
         \x20     exec:\n\
         \x20       - ip addr add {GEN_ADDR}/{LINK_LEN} dev eth1\n\
         \x20   dut:\n\
         \x20     kind: {kind}\n\
         \x20     config: {config}\n\
         \x20     exec:\n\
         \x20       - ip addr add {DUT_GEN_ADDR}/{LINK_LEN} dev eth1\n\
         \x20       - ip addr add {DUT_SINK_ADDR}/{LINK_LEN} dev eth2\n\
         \x20   sink:\n\
         \x20     kind: linux\n\
         \x20     exec:\n\
         \x20       - ip addr add {SINK_ADDR}/{LINK_LEN} dev eth1\n\
         \x20 links:\n\
         \x20   - endpoints: [\"gen:eth1\", \"dut:eth1\"]\n\
         \x20   - endpoints: [\"dut:eth2\", \"sink:eth1\"]\n",
        label = d.label(),
        name = d.name(),
        kind = d.kind(),
    )
}

/// BIRD 2: two BGP protocols importing and exporting everything, and a
/// `kernel` protocol exporting every best route into the main table.
pub fn bird_conf() -> String {
    let keepalive = HOLD_TIME / 3;
    format!(
        "# DUT of `testbed bench-daemons` (BIRD 2).\n\
         log stderr {{ warning, error, fatal, bug }};\n\
         router id {DUT_SINK_ADDR};\n\
         \n\
         protocol device {{ }}\n\
         \n\
         protocol kernel {{\n\
         \x20 ipv4 {{ import none; export all; }};\n\
         }}\n\
         \n\
         protocol bgp gen {{\n\
         \x20 local {DUT_GEN_ADDR} as {DUT_AS};\n\
         \x20 neighbor {GEN_ADDR} as {GEN_AS};\n\
         \x20 hold time {HOLD_TIME};\n\
         \x20 keepalive time {keepalive};\n\
         \x20 connect retry time 2;\n\
         \x20 ipv4 {{ import all; export all; }};\n\
         }}\n\
         \n\
         protocol bgp sink {{\n\
         \x20 local {DUT_SINK_ADDR} as {DUT_AS};\n\
         \x20 neighbor {SINK_ADDR} as {SINK_AS};\n\
         \x20 hold time {HOLD_TIME};\n\
         \x20 keepalive time {keepalive};\n\
         \x20 connect retry time 2;\n\
         \x20 ipv4 {{ import all; export all; }};\n\
         }}\n"
    )
}

/// FRR (bgpd with zebra installing routes): no eBGP policy requirement,
/// MRAI 0, no update delay.
pub fn frr_conf() -> String {
    let keepalive = HOLD_TIME / 3;
    let mut neighbors = String::new();
    let mut activate = String::new();
    for (addr, asn) in [(GEN_ADDR, GEN_AS), (SINK_ADDR, SINK_AS)] {
        neighbors.push_str(&format!(
            " neighbor {addr} remote-as {asn}\n\
             \x20neighbor {addr} timers connect 2\n\
             \x20neighbor {addr} advertisement-interval 0\n"
        ));
        activate.push_str(&format!("  neighbor {addr} activate\n"));
    }
    format!(
        "! DUT of `testbed bench-daemons` (FRR bgpd + zebra).\n\
         frr defaults traditional\n\
         hostname dut\n\
         log stdout warnings\n\
         !\n\
         router bgp {DUT_AS}\n\
         \x20bgp router-id {DUT_SINK_ADDR}\n\
         \x20no bgp ebgp-requires-policy\n\
         \x20no bgp default ipv4-unicast\n\
         \x20timers bgp {keepalive} {HOLD_TIME}\n\
         {neighbors}\
         \x20!\n\
         \x20address-family ipv4 unicast\n\
         {activate}\
         \x20exit-address-family\n\
         exit\n"
    )
}

/// GoBGP: default global policies accept everything; no FIB (GoBGP installs
/// routes only through zebra, which this benchmark does not run for it).
pub fn gobgp_toml() -> String {
    let keepalive = HOLD_TIME / 3;
    let mut out = format!(
        "# DUT of `testbed bench-daemons` (GoBGP, no FIB).\n\
         [global.config]\n\
         \x20 as = {DUT_AS}\n\
         \x20 router-id = \"{DUT_SINK_ADDR}\"\n"
    );
    for (addr, asn) in [(GEN_ADDR, GEN_AS), (SINK_ADDR, SINK_AS)] {
        out.push_str(&format!(
            "\n[[neighbors]]\n\
             \x20 [neighbors.config]\n\
             \x20   neighbor-address = \"{addr}\"\n\
             \x20   peer-as = {asn}\n\
             \x20 [neighbors.timers.config]\n\
             \x20   connect-retry = 2\n\
             \x20   hold-time = {HOLD_TIME}\n\
             \x20   keepalive-interval = {keepalive}\n\
             \x20   minimum-advertisement-interval = 0\n\
             \x20 [[neighbors.afi-safis]]\n\
             \x20   [neighbors.afi-safis.config]\n\
             \x20     afi-safi-name = \"ipv4-unicast\"\n"
        ));
    }
    out
}

/// petrel's manifest directory: the node, the BGPConfiguration, one BGPPeer
/// per session, and the BGPFilter whose export rule makes the (otherwise
/// non-transit) node pass the generator's routes on to the sink.
pub fn petrel_manifests() -> Vec<(String, String)> {
    let peer = |name: &str, addr: Ipv4Addr, asn: u32, filters: &str| {
        format!(
            "apiVersion: petrel.dev/v1\n\
             kind: BGPPeer\n\
             metadata:\n\
             \x20 name: {name}\n\
             spec:\n\
             \x20 peerIP: {addr}\n\
             \x20 asNumber: {asn}\n\
             \x20 sourceAddress: None\n\
             {filters}"
        )
    };
    vec![
        (
            "petrel/node.yaml".into(),
            format!(
                "apiVersion: v1\n\
                 kind: Node\n\
                 metadata:\n\
                 \x20 name: dut\n\
                 \x20 annotations:\n\
                 \x20   petrel.dev/ipv4-address: {DUT_SINK_ADDR}/{LINK_LEN}\n"
            ),
        ),
        (
            "petrel/bgpconfiguration.yaml".into(),
            format!(
                "apiVersion: petrel.dev/v1\n\
                 kind: BGPConfiguration\n\
                 metadata:\n\
                 \x20 name: default\n\
                 spec:\n\
                 \x20 asNumber: {DUT_AS}\n\
                 \x20 nodeToNodeMeshEnabled: false\n"
            ),
        ),
        (
            "petrel/bgpfilter.yaml".into(),
            format!(
                "apiVersion: petrel.dev/v1\n\
                 kind: BGPFilter\n\
                 metadata:\n\
                 \x20 name: {PETREL_FILTER}\n\
                 spec:\n\
                 \x20 exportV4:\n\
                 \x20   - action: Accept\n"
            ),
        ),
        (
            "petrel/bgppeer-gen.yaml".into(),
            peer("gen", GEN_ADDR, GEN_AS, ""),
        ),
        (
            "petrel/bgppeer-sink.yaml".into(),
            peer(
                "sink",
                SINK_ADDR,
                SINK_AS,
                &format!("  filters: [{PETREL_FILTER}]\n"),
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_daemon_lists() {
        assert_eq!(
            Daemon::parse_list("petrel,BIRD, frr,gobgp,bird").unwrap(),
            Daemon::ALL.to_vec()
        );
        assert!(Daemon::parse_list("petrel,quagga").is_err());
        assert!(Daemon::parse_list(" , ").is_err());
    }

    #[test]
    fn topology_names_dut_kind_config_and_addresses() {
        for d in Daemon::ALL {
            let t = topology_yaml(d);
            let (config, files) = dut_files(d);
            assert!(t.contains(&format!("kind: {}", d.kind())), "{t}");
            assert!(t.contains(&format!("config: {config}")), "{t}");
            assert!(files.iter().all(|(p, _)| p.starts_with(config)), "{d:?}");
            assert!(t.contains("ip addr add 10.255.1.2/30 dev eth1"));
            assert!(t.contains("ip addr add 10.255.2.1/30 dev eth2"));
            assert!(t.contains(r#"endpoints: ["dut:eth2", "sink:eth1"]"#));
        }
    }

    #[test]
    fn bird_config_is_equivalent() {
        let c = bird_conf();
        assert!(c.contains("neighbor 10.255.1.2 as 65001;"), "{c}");
        assert!(c.contains("neighbor 10.255.2.2 as 65003;"), "{c}");
        assert!(c.contains("local 10.255.1.1 as 65002;"), "{c}");
        assert_eq!(c.matches("hold time 90;").count(), 2);
        assert_eq!(c.matches("keepalive time 30;").count(), 2);
        assert_eq!(c.matches("import all; export all;").count(), 2);
        assert!(c.contains("protocol kernel {\n  ipv4 { import none; export all; };"));
        assert!(c.contains("log stderr { warning, error, fatal, bug };"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn frr_config_is_equivalent() {
        let c = frr_conf();
        assert!(c.contains("router bgp 65002\n"), "{c}");
        assert!(c.contains(" neighbor 10.255.1.2 remote-as 65001\n"), "{c}");
        assert!(c.contains(" neighbor 10.255.2.2 remote-as 65003\n"), "{c}");
        assert_eq!(c.matches("advertisement-interval 0").count(), 2);
        assert!(c.contains(" timers bgp 30 90\n"));
        assert!(c.contains("no bgp ebgp-requires-policy"));
        assert!(c.contains("  neighbor 10.255.2.2 activate\n"));
        assert!(c.contains("log stdout warnings"));
    }

    #[test]
    fn gobgp_config_is_equivalent() {
        let c = gobgp_toml();
        assert!(c.contains("as = 65002\n"), "{c}");
        assert_eq!(c.matches("[[neighbors]]").count(), 2);
        assert!(c.contains("neighbor-address = \"10.255.1.2\"\n    peer-as = 65001"));
        assert!(c.contains("neighbor-address = \"10.255.2.2\"\n    peer-as = 65003"));
        assert_eq!(c.matches("hold-time = 90").count(), 2);
        assert_eq!(c.matches("keepalive-interval = 30").count(), 2);
        assert_eq!(c.matches("minimum-advertisement-interval = 0").count(), 2);
    }

    #[test]
    fn petrel_manifests_attach_the_transit_filter_to_the_sink_only() {
        let files = petrel_manifests();
        let get = |name: &str| {
            files
                .iter()
                .find(|(p, _)| p == name)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let sink = get("petrel/bgppeer-sink.yaml");
        assert!(
            sink.contains("peerIP: 10.255.2.2\n  asNumber: 65003\n"),
            "{sink}"
        );
        assert!(sink.contains("filters: [bench-transit]"), "{sink}");
        let gen_peer = get("petrel/bgppeer-gen.yaml");
        assert!(gen_peer.contains("peerIP: 10.255.1.2\n  asNumber: 65001\n"));
        assert!(!gen_peer.contains("filters"), "{gen_peer}");
        let filter = get("petrel/bgpfilter.yaml");
        assert!(filter.contains("kind: BGPFilter\nmetadata:\n  name: bench-transit\n"));
        assert!(
            filter.contains("exportV4:\n    - action: Accept\n"),
            "{filter}"
        );
        assert!(get("petrel/bgpconfiguration.yaml").contains("asNumber: 65002\n"));
        assert!(get("petrel/node.yaml").contains("name: dut\n"));
    }
}
