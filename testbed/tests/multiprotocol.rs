//! IPv6 routes over an IPv4 session (RFC 4760) against GoBGP and FRR
//! (`interop-mp` topology): one IPv4 session per neighbour negotiates both
//! IPv4 and IPv6 unicast; IPv6 routes carry IPv6 next hops both ways and
//! reach the kernel. Run as root: `cargo test -p petrel-testbed --test multiprotocol`.

mod common;

use common::petrel::*;
use common::*;
use petrel_testbed::{Lab, wait_for};

const PETREL: &str = "petrel";

struct Neighbour {
    node: &'static str,
    address: &'static str,
    asn: u32,
    /// IPv6 prefix it announces, with its IPv6 next hop.
    v6_prefix: &'static str,
    v6_next_hop: &'static str,
    /// IPv4 prefix it announces over the same session.
    v4_prefix: &'static str,
    /// petrel's IPv6 address on the link to this neighbour: the next hop of
    /// petrel's IPv6 routes is taken from the session's interface.
    petrel_v6: &'static str,
}

const GOBGP: Neighbour = Neighbour {
    node: "gobgp",
    address: "10.0.0.2",
    asn: 65002,
    v6_prefix: "2001:db8:300::/48",
    v6_next_hop: "fd00:10::2",
    v4_prefix: "198.51.100.0/24",
    petrel_v6: "fd00:10::1",
};

const FRR: Neighbour = Neighbour {
    node: "frr",
    address: "10.0.1.2",
    asn: 65003,
    v6_prefix: "2001:db8:400::/48",
    v6_next_hop: "fd00:11::2",
    v4_prefix: "203.0.113.0/24",
    petrel_v6: "fd00:11::1",
};

#[test]
fn ipv6_over_ipv4_sessions() {
    let lab = deploy("interop-mp");
    lab.check(|lab| {
        for n in [&GOBGP, &FRR] {
            neighbour(lab, n).map_err(|e| e.context(format!("with {}", n.node)))?;
        }
        Ok(())
    });
}

fn neighbour(lab: &Lab, n: &Neighbour) -> anyhow::Result<()> {
    let p = wait_petrel_established(lab, PETREL, n.address)?;
    anyhow::ensure!(
        p.families == ["ipv4-unicast", "ipv6-unicast"],
        "one IPv4 session should negotiate both families, has {:?}",
        p.families
    );
    // The neighbour's IPv6 route arrives over the IPv4 session with its IPv6
    // next hop, and is installed in petrel's kernel.
    let r = wait_route(lab, PETREL, n.v6_prefix)?;
    check_route(&r, &[n.asn], n.v6_next_hop, &[], &[])?;
    let r4 = wait_route(lab, PETREL, n.v4_prefix)?;
    check_route(&r4, &[n.asn], n.address, &[], &[])?;
    wait_for(
        PROPAGATE,
        &format!("kernel route for {}", n.v6_prefix),
        || {
            let out = lab.exec(
                PETREL,
                &format!("ip -6 route show {} proto 200", n.v6_prefix),
            )?;
            anyhow::ensure!(
                out.contains(&format!("via {}", n.v6_next_hop)),
                "kernel has {out:?}"
            );
            Ok(())
        },
    )?;
    // petrel's IPv6 service CIDR reaches the neighbour with petrel's IPv6
    // address as next hop (not an IPv4-mapped one).
    let theirs = wait_route(lab, n.node, "fd00:96::/108")?;
    check_route(&theirs, &[65001], n.petrel_v6, &["65001:100"], &[])?;
    Ok(())
}
