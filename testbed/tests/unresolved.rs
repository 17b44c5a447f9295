//! A route whose BGP next hop does not resolve is reported, not installed
//! (`interop-gobgp` topology): GoBGP announces a prefix with a next hop that
//! petrel's node has no route to; `petrel dataplane` lists it as unresolved,
//! the kernel has no route for it, and a resolvable route from the same peer
//! is installed. Run as root: `cargo test -p petrel-testbed --test unresolved`.

mod common;

use common::petrel::*;
use common::*;
use petrel_testbed::wait_for;

const PETREL: &str = "petrel";
const UNRESOLVABLE: &str = "192.0.2.99/32";
const FAR_NEXT_HOP: &str = "198.18.7.7";

#[test]
fn unresolvable_next_hop_is_reported_not_installed() {
    let lab = deploy("interop-gobgp");
    lab.check(|lab| {
        wait_petrel_established(lab, PETREL, "10.0.0.2")?;
        lab.gobgp(
            "gobgp",
            &format!("global rib add {UNRESOLVABLE} nexthop {FAR_NEXT_HOP} -a ipv4"),
        )?;
        let route = wait_route(lab, PETREL, UNRESOLVABLE)?;
        anyhow::ensure!(
            petrel_testbed::status::same_addr(&route.next_hop, FAR_NEXT_HOP),
            "petrel's RIB should keep the BGP next hop {FAR_NEXT_HOP}, has {}",
            route.next_hop
        );
        wait_for(
            PROPAGATE,
            "petrel dataplane to report the unresolved next hop",
            || {
                let json = lab.petrel(PETREL, "dataplane -o json")?;
                let v: serde_json::Value = serde_json::from_str(&json)?;
                let listed = v["unresolved"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|u| u["prefix"] == UNRESOLVABLE && u["next_hop"] == FAR_NEXT_HOP);
                anyhow::ensure!(listed, "dataplane status: {json}");
                Ok(())
            },
        )?;
        let kernel = lab.exec(PETREL, &format!("ip -4 route show {UNRESOLVABLE}"))?;
        anyhow::ensure!(
            kernel.trim().is_empty(),
            "must not be installed, kernel has {kernel:?}"
        );
        // The resolvable routes of the same peer are installed.
        let ok = lab.exec(PETREL, "ip -4 route show 198.51.100.0/24 proto 200")?;
        anyhow::ensure!(ok.contains("via 10.0.0.2"), "kernel has {ok:?}");
        Ok(())
    });
}
