//! Service address advertisement (issue 7) against a real FRR top-of-rack
//! router, in the `services` topology: three agents, each with an eBGP
//! session to the ToR, the ToR doing ECMP over them. Services and
//! EndpointSlices are written into every node's manifest directory, the
//! objects kubectl would apply. What the ToR's kernel forwards with is the
//! evidence: its FIB, installed by FRR's zebra.
//!
//! | test | what |
//! |---|---|
//! | `cluster_ip_cidrs_are_ecmp_over_every_node` | each serviceClusterIPs CIDR (IPv4, IPv6) reaches the ToR from all three nodes: one kernel route with three next hops |
//! | `local_traffic_policy_follows_the_endpoint` | eTP=Local: cluster, external and load-balancer /32s only via the node with the ready endpoint; they move within 1 s when it moves; not-ready withdraws |
//! | `addresses_outside_the_cidrs_are_never_advertised` | an external IP outside serviceExternalIPs is not advertised, and the reason is logged once |

mod common;
#[allow(unused_imports)] // shared with tests/routing.rs, which uses every re-export
mod routing_util;

use anyhow::ensure;
use petrel_testbed::Lab;
use routing_util::*;
use std::time::Duration;

const NODES: [(&str, &str, &str); 3] = [
    ("node1", "10.0.1.1", "fd00:0:1::1"),
    ("node2", "10.0.2.1", "fd00:0:2::1"),
    ("node3", "10.0.3.1", "fd00:0:3::1"),
];

/// How fast an endpoint change must reach the ToR (issue 7).
const MOVE_WITHIN: Duration = Duration::from_secs(1);

fn lab() -> Lab {
    let lab = deploy("services");
    lab.check(|lab| {
        for (node, v4, v6) in NODES {
            wait_established_within(lab, "tor", v4, UP)?;
            wait_established_within(lab, "tor", v6, UP)?;
            let _ = node;
        }
        Ok(())
    });
    lab
}

/// Writes `file` with `text` into every node's manifest directory, as one
/// `kubectl apply` reaches every agent.
fn apply(lab: &Lab, file: &str, text: &str) -> anyhow::Result<()> {
    for (node, _, _) in NODES {
        write_manifest(lab, node, file, text)?;
    }
    Ok(())
}

/// The ToR's kernel next hops for exactly `prefix` (sorted), empty when it
/// has no route.
fn tor_hops(lab: &Lab, prefix: &str) -> anyhow::Result<Vec<String>> {
    lab.kernel_hops("tor", prefix)
}

fn wait_tor_hops(
    lab: &Lab,
    prefix: &str,
    want: &[&str],
    within: Duration,
) -> anyhow::Result<Duration> {
    lab.wait_kernel_hops("tor", prefix, want, within)
}

fn service(name: &str, cluster_ip: &str, external_ip: &str, lb_ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  type: LoadBalancer\n  \
         clusterIP: {cluster_ip}\n  clusterIPs: [{cluster_ip}]\n  externalIPs: [{external_ip}]\n  \
         externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  ports: [{{port: 80, protocol: TCP}}]\n\
         status:\n  loadBalancer:\n    ingress: [{{ip: {lb_ip}}}]\n"
    )
}

fn endpoint_slice(service: &str, node: &str, ready: bool) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: shop\n  \
         labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nendpoints:\n  \
         - addresses: [10.244.9.9]\n    nodeName: {node}\n    conditions: {{ready: {ready}}}\n\
         ports: [{{port: 8080, protocol: TCP}}]\n"
    )
}

#[test]
fn cluster_ip_cidrs_are_ecmp_over_every_node() {
    let lab = lab();
    run(&lab, |lab| {
        let v4: Vec<&str> = NODES.iter().map(|n| n.1).collect();
        let v6: Vec<&str> = NODES.iter().map(|n| n.2).collect();
        wait_tor_hops(lab, "10.96.0.0/16", &v4, PROPAGATE)?;
        wait_tor_hops(lab, "fd00:96::/112", &v6, PROPAGATE)?;
        // The aggregates of the other CIDRs too (externalTrafficPolicy: Cluster).
        wait_tor_hops(lab, "192.0.2.0/24", &v4, PROPAGATE)?;
        wait_tor_hops(lab, "198.51.100.0/24", &v4, PROPAGATE)?;
        Ok(())
    });
}

#[test]
fn local_traffic_policy_follows_the_endpoint() {
    let lab = lab();
    run(&lab, |lab| {
        let addrs = ["10.96.0.10/32", "192.0.2.10/32", "198.51.100.10/32"];
        apply(
            lab,
            "svc-web.yaml",
            &service("web", "10.96.0.10", "192.0.2.10", "198.51.100.10"),
        )?;
        // No endpoint yet: nothing but the aggregates.
        std::thread::sleep(Duration::from_secs(2));
        for a in addrs {
            ensure!(
                tor_hops(lab, a)?.is_empty(),
                "{a} advertised without an endpoint"
            );
        }
        apply(lab, "eps-web.yaml", &endpoint_slice("web", "node2", true))?;
        for a in addrs {
            wait_tor_hops(lab, a, &["10.0.2.1"], PROPAGATE)?;
        }
        // The endpoint moves to node 3: the routes follow within 1 s.
        apply(lab, "eps-web.yaml", &endpoint_slice("web", "node3", true))?;
        let moved = wait_tor_hops(lab, addrs[2], &["10.0.3.1"], MOVE_WITHIN)?;
        eprintln!("load-balancer IP moved to node3 after {moved:.2?}");
        for a in addrs {
            wait_tor_hops(lab, a, &["10.0.3.1"], MOVE_WITHIN)?;
        }
        // Not ready: withdrawn everywhere within 1 s.
        apply(lab, "eps-web.yaml", &endpoint_slice("web", "node3", false))?;
        for a in addrs {
            wait_tor_hops(lab, a, &[], MOVE_WITHIN)?;
        }
        // The service's load-balancer status is what is advertised: a new
        // ingress IP replaces the old one.
        apply(lab, "eps-web.yaml", &endpoint_slice("web", "node1", true))?;
        apply(
            lab,
            "svc-web.yaml",
            &service("web", "10.96.0.10", "192.0.2.10", "198.51.100.77"),
        )?;
        wait_tor_hops(lab, "198.51.100.77/32", &["10.0.1.1"], PROPAGATE)?;
        wait_tor_hops(lab, "198.51.100.10/32", &[], PROPAGATE)?;
        // Deleting the Service withdraws its addresses.
        for (node, _, _) in NODES {
            remove_manifest(lab, node, "svc-web.yaml")?;
        }
        for a in ["10.96.0.10/32", "192.0.2.10/32", "198.51.100.77/32"] {
            wait_tor_hops(lab, a, &[], PROPAGATE)?;
        }
        Ok(())
    });
}

#[test]
fn addresses_outside_the_cidrs_are_never_advertised() {
    let lab = lab();
    run(&lab, |lab| {
        // 203.0.113.5 is in no configured CIDR; the cluster IP is.
        apply(
            lab,
            "svc-out.yaml",
            &service("out", "10.96.0.20", "203.0.113.5", "198.51.100.20"),
        )?;
        apply(lab, "eps-out.yaml", &endpoint_slice("out", "node1", true))?;
        wait_tor_hops(lab, "10.96.0.20/32", &["10.0.1.1"], PROPAGATE)?;
        wait_tor_hops(lab, "198.51.100.20/32", &["10.0.1.1"], PROPAGATE)?;
        // Give it the time a wrong advertisement would have needed.
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            tor_hops(lab, "203.0.113.5/32")?.is_empty(),
            "203.0.113.5 reached the ToR"
        );
        let log = lab.log("node1");
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("203.0.113.5") && l.contains("not advertised"))
            .collect();
        ensure!(
            lines.len() == 1,
            "expected the reason logged once, found {lines:#?}"
        );
        ensure!(
            lines[0].contains("serviceExternalIPs"),
            "the log line should name the setting: {}",
            lines[0]
        );
        // A later, unrelated change does not log it again.
        apply(lab, "eps-out.yaml", &endpoint_slice("out", "node2", true))?;
        wait_tor_hops(lab, "10.96.0.20/32", &["10.0.2.1"], PROPAGATE)?;
        let again = lab
            .log("node1")
            .lines()
            .filter(|l| l.contains("203.0.113.5") && l.contains("not advertised"))
            .count();
        ensure!(again == 1, "logged {again} times");
        Ok(())
    });
}
