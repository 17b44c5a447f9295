//! Services and EndpointSlices in the manifest directory (issue 7's sources),
//! and objects that come from an API (`assemble_values`).

use super::*;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalTrafficPolicy: Local
  ports: [{port: 80}]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.10}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: blog}
spec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
  - addresses: [10.244.1.5]
    nodeName: node-a
    conditions: {ready: true}
"#;

#[test]
fn services_and_endpoint_slices_load_per_namespace() {
    let snap = load(&[("svc.yaml", SERVICES)]).expect("loads");
    assert_eq!(snap.services.len(), 2);
    assert_eq!(snap.endpoint_slices.len(), 1);
    let slice = &snap.endpoint_slices[0];
    assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("node-a"));
    let web = &snap.services[0];
    assert_eq!(web.metadata.namespace.as_deref(), Some("shop"));
    let lb = web.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    assert_eq!(
        lb.and_then(|l| l.ingress.as_ref()).map(|i| i[0].ip.clone()),
        Some(Some("192.0.2.10".to_string()))
    );
}

#[test]
fn duplicate_service_in_one_namespace_is_an_error() {
    let twice = format!(
        "{SERVICES}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\n"
    );
    let e = errors(&[("svc.yaml", &twice)]);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("duplicate Service \"shop/web\""), "{}", e[0]);
}

#[test]
fn endpoint_slice_needs_the_discovery_api_version() {
    let bad = "apiVersion: v1\nkind: EndpointSlice\nmetadata: {name: x}\naddressType: IPv4\nendpoints: []\n";
    let e = errors(&[("s.yaml", bad)]);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("apiVersion: expected discovery.k8s.io/v1"),
        "{}",
        e[0]
    );
}

#[test]
fn a_bad_service_field_names_the_object_and_field() {
    let bad = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: 80}\n";
    let e = errors(&[("s.yaml", bad)]);
    assert!(
        e[0].starts_with("s.yaml: document 1 (Service \"default/web\"): spec.ports"),
        "{}",
        e[0]
    );
}

#[test]
fn api_objects_leave_out_only_the_invalid_ones() {
    let good_peer = serde_json::json!({
        "apiVersion": "petrel.dev/v1", "kind": "BGPPeer",
        "metadata": {"name": "tor"},
        "spec": {"peerIP": "10.0.0.254", "asNumber": 65000}
    });
    let bad_peer = serde_json::json!({
        "apiVersion": "petrel.dev/v1", "kind": "BGPPeer",
        "metadata": {"name": "broken"},
        "spec": {"peerIP": "10.0.0.253", "asNumber": "many"}
    });
    let svc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10"}
    });
    let (snap, errs) = assemble_values("kubernetes", vec![good_peer, bad_peer, svc]);
    assert_eq!(snap.peers.len(), 1);
    assert_eq!(snap.peers[0].metadata.name.as_deref(), Some("tor"));
    assert_eq!(snap.services.len(), 1);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let msg = errs[0].to_string();
    assert!(
        msg.starts_with("kubernetes: BGPPeer \"broken\": spec.asNumber"),
        "{msg}"
    );
}

#[test]
fn api_objects_with_a_rule_violation_are_left_out() {
    // Both node and nodeSelector: a cross-field rule, not a type error.
    let peer = serde_json::json!({
        "apiVersion": "petrel.dev/v1", "kind": "BGPPeer",
        "metadata": {"name": "both"},
        "spec": {"peerIP": "10.0.0.254", "asNumber": 65000, "node": "a", "nodeSelector": "all()"}
    });
    let (snap, errs) = assemble_values("kubernetes", vec![peer]);
    assert!(snap.peers.is_empty());
    assert!(!errs.is_empty());
}

const POOLS: &str = r#"
apiVersion: petrel.dev/v1
kind: IPPool
metadata: {name: v4}
spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd00:244::/56", nodeSelector: "rack == 'r1'"}
"#;

#[test]
fn ip_pools_load_and_feed_the_import_policy() {
    let snap = load(&[("pools.yaml", POOLS), ("nodes.yaml", super::NODES)]).expect("loads");
    assert_eq!(snap.ip_pools.len(), 2);
    let cfg = resolve(&snap, "node-a").expect("resolves");
    let want: Vec<ipnet::IpNet> = vec![
        "10.244.0.0/16".parse().unwrap(),
        "fd00:244::/56".parse().unwrap(),
    ];
    assert_eq!(cfg.cluster.pools, want);
}

#[test]
fn overlapping_pools_are_rejected_naming_both() {
    let more = format!(
        "{POOLS}---\napiVersion: petrel.dev/v1\nkind: IPPool\nmetadata: {{name: inner}}\nspec: {{cidr: 10.244.8.0/24}}\n"
    );
    let e = errors(&[("pools.yaml", &more)]);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("(IPPool \"inner\"): spec.cidr") && e[0].contains("v4"),
        "{}",
        e[0]
    );
}

#[test]
fn encapsulation_is_refused_with_a_clear_error() {
    let ipip = "apiVersion: petrel.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.244.0.0/16, ipipMode: Always}\n";
    let e = errors(&[("p.yaml", ipip)]);
    assert!(e[0].contains("spec.ipipMode"), "{}", e[0]);
    assert!(e[0].contains("encapsulat"), "{}", e[0]);
}
