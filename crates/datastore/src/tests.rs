//! Tests of loading and validation: every kind, every error format.

use super::*;
use std::path::PathBuf;

mod bfd_tests;
mod resolve_tests;
mod service_tests;
mod watch_tests;

pub(super) fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write");
    }
    dir
}

pub(super) fn load(files: &[(&str, &str)]) -> Result<Snapshot, DatastoreError> {
    let dir = dir_with(files);
    load_dir(dir.path())
}

/// The error messages of a load that must fail.
pub(super) fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(files) {
        Ok(_) => panic!("expected the manifests to be rejected"),
        Err(e) => {
            let list: Vec<String> = e
                .manifest_errors()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert!(!list.is_empty(), "expected manifest errors, got {e}");
            list
        }
    }
}

fn one_error(files: &[(&str, &str)]) -> String {
    let e = errors(files);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap_or_default()
}

pub(super) const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {rack: r1, role: worker}
status:
  addresses:
    - {type: Hostname, address: node-a}
    - {type: InternalIP, address: 10.0.0.1}
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
  labels: {rack: r2}
  annotations:
    petrel.dev/ipv4-address: 10.0.0.2/24
    petrel.dev/as-number: "65002"
"#;

fn peer(name: &str, spec: &str) -> String {
    format!("apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n{spec}\n")
}

#[test]
fn loads_every_kind_with_comments_and_empty_documents() {
    let config = r#"
# cluster settings
---
apiVersion: petrel.dev/v1
kind: BGPConfiguration
metadata: {name: default}
spec:
  asNumber: 64600
  nodeToNodeMeshEnabled: false
---
# an empty document
---
"#;
    let peers = format!(
        "{}---\n{}",
        peer(
            "tor1",
            "  peerIP: 10.0.0.254\n  asNumber: 65000\n  password: {secretKeyRef: {name: bgp, key: tor}}\n  filters: [only-pods]"
        ),
        peer(
            "rr",
            "  nodeSelector: rack == 'r1'\n  peerSelector: has(rr)"
        )
    );
    let other = r#"
apiVersion: petrel.dev/v1
kind: BGPFilter
metadata: {name: only-pods}
spec:
  exportV4: [{action: Accept, cidr: 10.244.0.0/16, matchOperator: In}, {action: Reject}]
---
apiVersion: v1
kind: Secret
metadata: {name: bgp, namespace: petrel-system}
stringData: {tor: s3cret}
"#;
    let s = load(&[
        ("a-config.yaml", config),
        ("peers.yml", &peers),
        ("other.yaml", other),
        ("nodes.yaml", NODES),
    ])
    .expect("valid");
    assert_eq!(
        s.bgp_configuration.as_ref().and_then(|c| c.spec.as_number),
        Some(64600)
    );
    let names: Vec<_> = s
        .peers
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["tor1", "rr"]);
    assert_eq!(
        s.peers[0].spec.peer_ip.map(|p| p.ip.to_string()).as_deref(),
        Some("10.0.0.254")
    );
    assert_eq!(s.filters.len(), 1);
    assert_eq!(s.filters[0].spec.export_v4.len(), 2);
    assert_eq!(s.nodes.len(), 2);
    assert_eq!(s.secrets.len(), 1);
}

#[test]
fn empty_directory_is_an_empty_snapshot() {
    let s = load(&[]).expect("valid");
    assert!(s.bgp_configuration.is_none() && s.peers.is_empty() && s.nodes.is_empty());
}

#[test]
fn missing_directory_is_an_io_error() {
    let e = load_dir(&PathBuf::from("/nonexistent/petrel-datastore")).unwrap_err();
    assert!(matches!(e, DatastoreError::Io { .. }));
    assert!(
        e.to_string().contains("/nonexistent/petrel-datastore"),
        "{e}"
    );
}

#[test]
fn type_errors_name_file_document_object_and_field() {
    let peers = format!(
        "{}---\n{}",
        peer("ok", "  peerIP: 10.0.0.9\n  asNumber: 1"),
        peer("tor1", "  peerIP: 10.0.0.1\n  asNumber: x")
    );
    assert_eq!(
        one_error(&[("peers.yaml", &peers)]),
        "peers.yaml: document 2 (BGPPeer \"tor1\"): spec.asNumber: invalid type: string \"x\", expected u32"
    );
}

#[test]
fn document_numbers_count_empty_documents() {
    let text = format!(
        "---\n# nothing here\n---\n{}",
        peer("p", "  peerIP: 10.0.0.1\n  asNumber: -1")
    );
    let e = one_error(&[("p.yaml", &text)]);
    assert!(
        e.starts_with("p.yaml: document 2 (BGPPeer \"p\"): spec.asNumber: "),
        "{e}"
    );
}

#[test]
fn nested_field_paths() {
    let f = r#"
apiVersion: petrel.dev/v1
kind: BGPFilter
metadata: {name: f}
spec:
  importV4:
    - {action: Accept}
    - {action: Maybe}
"#;
    let e = one_error(&[("f.yaml", f)]);
    assert!(
        e.starts_with(
            "f.yaml: document 1 (BGPFilter \"f\"): spec.importV4[1].action: unknown variant `Maybe`"
        ),
        "{e}"
    );
}

#[test]
fn collects_all_errors_from_all_files() {
    let a = peer("p1", "  peerIP: nonsense\n  asNumber: 1");
    let b = format!(
        "{}---\n{}",
        peer("p2", "  peerIP: 10.0.0.1\n  asNumber: 0"),
        peer("p3", "  peerIP: 10.0.0.1\n  asNumber: 1\n  holdTime: 2s")
    );
    let e = errors(&[("a.yaml", &a), ("b.yaml", &b)]);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with(
            "a.yaml: document 1 (BGPPeer \"p1\"): spec.peerIP: invalid peerIP \"nonsense\""
        ),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with(
            "b.yaml: document 1 (BGPPeer \"p2\"): spec.asNumber: AS number 0 is reserved"
        ),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("b.yaml: document 2 (BGPPeer \"p3\"): spec.holdTime: 2s is invalid"),
        "{}",
        e[2]
    );
}

#[test]
fn unknown_kinds_and_api_versions() {
    let e = one_error(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )]);
    assert!(
        e.starts_with("x.yaml: document 1 (ConfigMap \"c\"): kind: unsupported kind \"ConfigMap\""),
        "{e}"
    );
    let e = one_error(&[(
        "x.yaml",
        "apiVersion: petrel.dev/v2\nkind: BGPPeer\nmetadata: {name: p}\n",
    )]);
    assert!(
        e.starts_with("x.yaml: document 1 (BGPPeer \"p\"): apiVersion: expected petrel.dev/v1"),
        "{e}"
    );
    let e = one_error(&[(
        "x.yaml",
        "apiVersion: petrel.dev/v1\nkind: Node\nmetadata: {name: n}\n",
    )]);
    assert!(e.contains("apiVersion: expected v1 for kind Node"), "{e}");
    let e = one_error(&[("x.yaml", "metadata: {name: n}\n")]);
    assert!(
        e.starts_with("x.yaml: document 1 (object \"n\"): kind: missing"),
        "{e}"
    );
    let e = one_error(&[("x.yaml", "- a\n- b\n")]);
    assert!(
        e.starts_with("x.yaml: document 1: expected a Kubernetes object"),
        "{e}"
    );
}

#[test]
fn calico_api_version_is_accepted() {
    let calico = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 64999\n";
    let s = load(&[("calico.yaml", calico)]).expect("accepted");
    assert_eq!(s.peers[0].spec.as_number, Some(64999));
}

#[test]
fn names_are_required_and_unique() {
    let e = one_error(&[(
        "x.yaml",
        "apiVersion: petrel.dev/v1\nkind: BGPFilter\nmetadata: {}\n",
    )]);
    assert_eq!(
        e,
        "x.yaml: document 1 (BGPFilter): metadata.name: missing or not a string"
    );
    let p = peer("dup", "  peerIP: 10.0.0.1\n  asNumber: 1");
    let e = one_error(&[("a.yaml", &p), ("b.yaml", &p)]);
    assert_eq!(
        e,
        "b.yaml: document 1 (BGPPeer \"dup\"): duplicate BGPPeer \"dup\": already defined in a.yaml document 1"
    );
    let e = one_error(&[(
        "c.yaml",
        "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {name: node.a}\n",
    )]);
    assert!(e.starts_with("c.yaml: document 1 (BGPConfiguration \"node.a\"): metadata.name: only the BGPConfiguration named \"default\""), "{e}");
}

#[test]
fn unknown_fields_suggest_the_right_name() {
    let e = one_error(&[("p.yaml", &peer("p", "  peerIp: 10.0.0.1\n  asNumber: 1"))]);
    assert_eq!(
        e,
        "p.yaml: document 1 (BGPPeer \"p\"): spec.peerIp: unknown field `peerIp` (did you mean `peerIP`?)"
    );
}

#[test]
fn yaml_syntax_errors_name_the_file() {
    let e = one_error(&[("bad.yaml", "kind: [unclosed\n")]);
    assert!(e.starts_with("bad.yaml: invalid YAML: "), "{e}");
}

#[test]
fn peer_rules() {
    let cases: &[(&str, &str)] = &[
        (
            "  peerIP: 10.0.0.1",
            "spec.asNumber: required when peerIP is set",
        ),
        (
            "  asNumber: 1",
            "spec: one of peerIP or peerSelector must be set",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  peerSelector: all()",
            "spec.peerSelector: peerIP and peerSelector cannot both be set",
        ),
        (
            "  peerSelector: all()\n  asNumber: 1",
            "spec.asNumber: must be empty when peerSelector is set",
        ),
        (
            "  peerSelector: all()\n  node: a\n  nodeSelector: all()",
            "spec.nodeSelector: node and nodeSelector cannot both be set",
        ),
        (
            "  peerSelector: rack = 'x'",
            "spec.peerSelector: invalid selector \"rack = 'x'\" at position 5: expected an operator",
        ),
        (
            "  peerSelector: all()\n  nodeSelector: has(",
            "spec.nodeSelector: invalid selector",
        ),
        (
            "  peerIP: 10.0.0.1:0\n  asNumber: 1",
            "spec.peerIP: invalid peerIP \"10.0.0.1:0\": port 0 is not allowed",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  localASNumber: 0",
            "spec.localASNumber: AS number 0 is reserved",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  holdTime: 1s",
            "spec.holdTime: 1s is invalid: the hold time is 0 or 3..=65535 seconds",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  holdTime: 3500ms",
            "spec.holdTime: 3.5s is not a whole number of seconds",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  holdTime: 90",
            "spec.holdTime: invalid type: integer `90`, expected a duration string",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  holdTime: '90'",
            "spec.holdTime: invalid duration \"90\": missing unit",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  keepaliveTime: 90s",
            "spec.keepaliveTime: 1m30s must be shorter than the hold time (90s)",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  maxRestartTime: 2h",
            "spec.maxRestartTime: 2h0m0s is too long",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  maxPrefixes: 0",
            "spec.maxPrefixes: must be at least 1",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  numAllowedLocalASNumbers: 300",
            "spec.numAllowedLocalASNumbers: 300 is out of range",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  ttlSecurity: 256",
            "spec.ttlSecurity: invalid value: integer `256`, expected u8",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  sourceAddress: fd00::1",
            "spec.sourceAddress: address family does not match peerIP",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  sourceAddress: Auto",
            "spec.sourceAddress: invalid sourceAddress \"Auto\"",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  reachableBy: fd00::1",
            "spec.reachableBy: address family does not match peerIP",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  nextHopMode: Keep\n  keepOriginalNextHop: true",
            "spec.keepOriginalNextHop: keepOriginalNextHop and nextHopMode cannot both be set",
        ),
        (
            "  peerSelector: all()\n  localWorkloadSelector: all()",
            "spec.localWorkloadSelector: peering with local workloads is not supported",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  filters: [missing]",
            "spec.filters[0]: BGPFilter \"missing\" not found",
        ),
        (
            "  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: nope, key: k}}",
            "spec.password.secretKeyRef: Secret \"nope\" not found",
        ),
    ];
    for (spec, want) in cases {
        let e = one_error(&[("p.yaml", &peer("p", spec))]);
        let prefix = format!("p.yaml: document 1 (BGPPeer \"p\"): {want}");
        assert!(
            e.starts_with(&prefix),
            "spec:\n{spec}\nwant: {prefix}\ngot:  {e}"
        );
    }
    // Optional secrets may be missing.
    load(&[("p.yaml", &peer("p", "  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: nope, key: k, optional: true}}"))])
        .expect("optional secret");
}

#[test]
fn secret_keys_are_checked() {
    let long = "A".repeat(81);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{pw: aHVudGVyMg==}}\nstringData: {{long: {long}}}\n"
    );
    let secret = secret.as_str();
    let ok = peer(
        "p",
        "  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: s, key: pw}}",
    );
    load(&[("s.yaml", secret), ("p.yaml", &ok)]).expect("valid");
    let missing_key = peer(
        "p",
        "  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: s, key: other}}",
    );
    let e = one_error(&[("s.yaml", secret), ("p.yaml", &missing_key)]);
    assert!(
        e.ends_with("spec.password.secretKeyRef: Secret \"s\" has no key \"other\""),
        "{e}"
    );
    let long = peer(
        "p",
        "  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: s, key: long}}",
    );
    let e = one_error(&[("s.yaml", secret), ("p.yaml", &long)]);
    assert!(e.contains("TCP MD5 keys are at most 80 bytes"), "{e}");
    let e = one_error(&[(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {pw: '!!notbase64'}\n",
    )]);
    assert!(
        e.starts_with("s.yaml: document 1 (Secret \"s\"): data.pw: "),
        "{e}"
    );
}

#[test]
fn configuration_rules() {
    let cfg = |spec: &str| {
        format!(
            "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n{spec}\n"
        )
    };
    let cases: &[(&str, &str)] = &[
        ("  asNumber: 0", "spec.asNumber: AS number 0 is reserved"),
        ("  listenPort: 0", "spec.listenPort: must be 1..=65535"),
        (
            "  maxPaths: 0",
            "spec.maxPaths: 0 is out of range: must be 1..=256",
        ),
        (
            "  maxPaths: 300",
            "spec.maxPaths: 300 is out of range: must be 1..=256",
        ),
        (
            "  listenPort: 70000",
            "spec.listenPort: invalid value: integer `70000`, expected u16",
        ),
        ("  bindMode: All", "spec.bindMode: unknown variant `All`"),
        (
            "  nodeToNodeMeshEnabled: false\n  nodeMeshMaxRestartTime: 10s",
            "spec.nodeMeshMaxRestartTime: cannot be set when nodeToNodeMeshEnabled is false",
        ),
        (
            "  serviceClusterIPs: [{cidr: 10.96.0.0/33}]",
            "spec.serviceClusterIPs[0].cidr: invalid IP address syntax",
        ),
        (
            "  communities: [{name: a, value: '1:2'}, {name: a, value: '1:3'}]",
            "spec.communities[1].name: duplicate community name \"a\"",
        ),
        (
            "  communities: [{name: a, value: '65536:1'}]",
            "spec.communities[0].value: invalid community \"65536:1\"",
        ),
        (
            "  prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nope]}]",
            "spec.prefixAdvertisements[0].communities[0]: unknown community \"nope\"",
        ),
        (
            "  nodeMeshPassword: {secretKeyRef: {name: x, key: y}}",
            "spec.nodeMeshPassword.secretKeyRef: Secret \"x\" not found",
        ),
    ];
    for (spec, want) in cases {
        let e = one_error(&[("c.yaml", &cfg(spec))]);
        let prefix = format!("c.yaml: document 1 (BGPConfiguration \"default\"): {want}");
        assert!(
            e.starts_with(&prefix),
            "spec:\n{spec}\nwant: {prefix}\ngot:  {e}"
        );
    }
    // serviceLoadBalancerAggregation: Disabled is supported (petrel_services
    // advertises each LoadBalancer IP as a /32 or /128).
    let s = load(&[("c.yaml", &cfg("  serviceLoadBalancerAggregation: Disabled"))])
        .unwrap_or_else(|e| panic!("Disabled must load: {e}"));
    assert_eq!(
        s.bgp_configuration
            .and_then(|c| c.spec.service_load_balancer_aggregation),
        Some(petrel_crd::LoadBalancerAggregation::Disabled)
    );
    // A BGPConfiguration without spec is the defaults.
    let s = load(&[(
        "c.yaml",
        "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n",
    )])
    .unwrap();
    assert_eq!(
        s.bgp_configuration.map(|c| c.spec),
        Some(petrel_crd::BgpConfigurationSpec::default())
    );
}

#[test]
fn filter_rules() {
    let filter = |rules: &str| {
        format!(
            "apiVersion: petrel.dev/v1\nkind: BGPFilter\nmetadata: {{name: f}}\nspec:\n{rules}\n"
        )
    };
    let cases: &[(&str, &str)] = &[
        (
            "  exportV4: [{action: Accept, cidr: 'fd00::/8', matchOperator: In}]",
            "spec.exportV4[0].cidr: fd00::/8 is not an IPv4 prefix",
        ),
        (
            "  importV6: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In}]",
            "spec.importV6[0].cidr: 10.0.0.0/8 is not an IPv6 prefix",
        ),
        (
            "  exportV4: [{action: Accept, cidr: 10.0.0.0/8}]",
            "spec.exportV4[0]: cidr and matchOperator must both be set",
        ),
        (
            "  exportV4: [{action: Accept, prefixLength: {min: 24}}]",
            "spec.exportV4[0].prefixLength: cidr is required",
        ),
        (
            "  exportV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 33}}]",
            "spec.exportV4[0].prefixLength.min: 33 is out of range 0..=32",
        ),
        (
            "  exportV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 28, max: 24}}]",
            "spec.exportV4[0].prefixLength: min 28 is greater than max 24",
        ),
        (
            "  exportV4: [{action: Reject, operations: [{setPriority: {value: 5}}]}]",
            "spec.exportV4[0].operations: operations may only be used with action Accept",
        ),
        (
            "  exportV4: [{action: Accept, operations: [{}]}]",
            "spec.exportV4[0].operations[0]: exactly one of addCommunity",
        ),
        (
            "  exportV4: [{action: Accept, operations: [{prependASPath: {prefix: []}}]}]",
            "spec.exportV4[0].operations[0].prependASPath.prefix: must have 1 to 10 AS numbers",
        ),
        (
            "  exportV4: [{action: Accept, interface: 'this-name-is-too-long'}]",
            "spec.exportV4[0].interface: invalid interface",
        ),
        (
            "  exportV4: [{action: Accept, communities: {values: ['1:1', '1:2']}}]",
            "spec.exportV4[0].communities.values: exactly one community value",
        ),
        (
            "  exportV4: [{action: Accept, priority: 0}]",
            "spec.exportV4[0].priority: 0 is out of range",
        ),
        (
            "  exportV4: [{action: Accept, peerType: EBGP}]",
            "spec.exportV4[0].peerType: unknown variant `EBGP`",
        ),
    ];
    for (rules, want) in cases {
        let e = one_error(&[("f.yaml", &filter(rules))]);
        let prefix = format!("f.yaml: document 1 (BGPFilter \"f\"): {want}");
        assert!(
            e.starts_with(&prefix),
            "rules:\n{rules}\nwant: {prefix}\ngot:  {e}"
        );
    }
}

#[test]
fn node_annotations_are_checked() {
    let node = |ann: &str| {
        format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n  annotations: {{{ann}}}\n")
    };
    let cases: &[(&str, &str)] = &[
        (
            "petrel.dev/as-number: 'abc'",
            "metadata.annotations[\"petrel.dev/as-number\"]: invalid AS number \"abc\"",
        ),
        (
            "petrel.dev/ipv4-address: 'fd00::1/64'",
            "metadata.annotations[\"petrel.dev/ipv4-address\"]: invalid IPv4 address",
        ),
        (
            "petrel.dev/ipv6-address: '10.0.0.1/24'",
            "metadata.annotations[\"petrel.dev/ipv6-address\"]: invalid IPv6 address",
        ),
        (
            "petrel.dev/router-id: '0.0.0.0'",
            "metadata.annotations[\"petrel.dev/router-id\"]: invalid router ID \"0.0.0.0\": 0.0.0.0 is not allowed",
        ),
        (
            "petrel.dev/route-reflector-cluster-id: 'x'",
            "metadata.annotations[\"petrel.dev/route-reflector-cluster-id\"]: invalid route-reflector cluster ID",
        ),
    ];
    for (ann, want) in cases {
        let e = one_error(&[("n.yaml", &node(ann))]);
        let prefix = format!("n.yaml: document 1 (Node \"n\"): {want}");
        assert!(e.starts_with(&prefix), "want: {prefix}\ngot:  {e}");
    }
    let dup = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\n  annotations: {petrel.dev/router-id: 10.0.0.1}\n";
    let e = one_error(&[("n.yaml", NODES), ("o.yaml", dup)]);
    assert!(e.starts_with("o.yaml: document 1 (Node \"n2\"): metadata.annotations[\"petrel.dev/router-id\"]: router ID 10.0.0.1 is also used by node \"node-a\""), "{e}");
}

#[test]
fn ignores_hidden_and_other_files_and_follows_configmap_symlinks() {
    let dir = dir_with(&[
        (".hidden.yaml", "garbage: ["),
        ("notes.txt", "garbage: ["),
        ("peers.yaml~", "garbage: ["),
    ]);
    // Kubernetes ConfigMap volume layout: ..<ts>/file, ..data -> ..<ts>, file -> ..data/file.
    let ts = dir.path().join("..2026_11_26_07_00_00.123");
    std::fs::create_dir(&ts).unwrap();
    std::fs::write(ts.join("nodes.yaml"), NODES).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_07_00_00.123", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/nodes.yaml", dir.path().join("nodes.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let s = load_dir(dir.path()).expect("valid");
    assert_eq!(s.nodes.len(), 2);
}

#[test]
fn example_manifests_load_and_resolve() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/examples");
    let s = load_dir(&dir).unwrap_or_else(|e| panic!("manifests/examples must load: {e}"));
    assert!(s.bgp_configuration.is_some());
    assert!(!s.peers.is_empty() && !s.filters.is_empty());
    assert_eq!(s.nodes.len(), 2);
    for node in &s.nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let cfg = resolve(&s, name).unwrap_or_else(|e| panic!("{name} must resolve: {e}"));
        assert!(!cfg.peers.is_empty(), "{name} has no peers");
    }
}
