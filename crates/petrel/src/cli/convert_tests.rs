use super::*;

fn convert(yaml: &str) -> Conversion {
    convert_calico(&[("calico.yaml".to_string(), yaml.to_string())]).expect("converts")
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple(yaml).expect("output is YAML")
}

/// Loads `files` (name, content) through the datastore, as `petrel agent` would.
fn load(
    files: &[(&str, &str)],
) -> Result<petrel_datastore::Snapshot, petrel_datastore::DatastoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write");
    }
    petrel_datastore::load_dir(dir.path())
}

// From Calico's BGPPeer reference: a global peer.
const GLOBAL_PEER: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: my-global-peer
  resourceVersion: \"123\"
  uid: 4c1e3f3a-0000-0000-0000-000000000000
  creationTimestamp: \"2024-01-01T00:00:00Z\"
spec:
  peerIP: 192.20.30.40
  asNumber: 64567
";

// A node-specific peer with a password and GTSM.
const NODE_PEER: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: bgppeer-node-aabbff
  labels:
    rack: r1
spec:
  node: rack1-host1
  peerIP: 192.168.1.1
  asNumber: 63400
  password:
    secretKeyRef:
      name: bgp-secrets
      key: rr-password
  ttlSecurity: 1
  keepaliveTime: 20s
  maxRestartTime: 15s
  filters:
    - my-filter
";

// From Calico's BGPConfiguration reference.
const CONFIG: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: true
  nodeMeshMaxRestartTime: 120s
  asNumber: 63400
  serviceClusterIPs:
    - cidr: 10.96.0.0/12
  serviceExternalIPs:
    - cidr: 104.244.42.129/32
    - cidr: 172.217.3.0/24
  listenPort: 178
  bindMode: NodeIP
  ignoredInterfaces:
    - iface-1
  communities:
    - name: bgp-large-community
      value: 63400:300:100
  prefixAdvertisements:
    - cidr: 172.218.4.0/26
      communities:
        - bgp-large-community
        - 63400:120
";

// From Calico's BGPFilter reference.
const FILTER: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: my-filter
spec:
  exportV4:
    - action: Accept
      matchOperator: In
      cidr: 77.0.0.0/16
    - action: Reject
      interface: '*.calico'
  importV4:
    - action: Reject
      matchOperator: NotIn
      cidr: 44.0.0.0/16
  exportV6:
    - action: Reject
      source: RemotePeers
  importV6:
    - action: Accept
      matchOperator: Equal
      cidr: 9000::0/64
";

const SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: bgp-secrets
stringData:
  rr-password: very-secret
";

#[test]
fn global_peer_drops_server_metadata_without_warning() {
    let c = convert(GLOBAL_PEER);
    assert_eq!(c.warnings, Vec::<String>::new());
    assert_eq!(c.objects, 1);
    let d = &docs(&c.yaml)[0];
    assert_eq!(d["apiVersion"], "petrel.dev/v1");
    assert_eq!(d["kind"], "BGPPeer");
    assert_eq!(d["metadata"], serde_json::json!({"name": "my-global-peer"}));
    assert_eq!(
        d["spec"],
        serde_json::json!({"peerIP": "192.20.30.40", "asNumber": 64567})
    );
}

#[test]
fn node_peer_keeps_password_ttl_and_labels() {
    let c = convert(NODE_PEER);
    // bgp-secrets is not a Secret the shipped RBAC lets the agent read.
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    assert!(
        c.warnings[0].contains("spec.password.secretKeyRef: Secret \"bgp-secrets\" is not one")
            && c.warnings[0].contains("petrel-secrets"),
        "{:#?}",
        c.warnings
    );
    let d = &docs(&c.yaml)[0];
    assert_eq!(d["metadata"]["labels"]["rack"], "r1");
    assert_eq!(d["spec"]["node"], "rack1-host1");
    assert_eq!(d["spec"]["ttlSecurity"], 1);
    assert_eq!(d["spec"]["keepaliveTime"], "20s");
    assert_eq!(
        d["spec"]["password"],
        serde_json::json!({"secretKeyRef": {"name": "bgp-secrets", "key": "rr-password"}})
    );
    assert_eq!(d["spec"]["filters"], serde_json::json!(["my-filter"]));
}

#[test]
fn configuration_warns_per_unsupported_field() {
    let c = convert(CONFIG);
    assert_eq!(c.objects, 1, "{:#?}", c.warnings);
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
    assert!(
        c.warnings[0].starts_with(
            "calico.yaml:1: BGPConfiguration \"default\": spec.ignoredInterfaces: not supported by petrel; removed"
        ),
        "{}",
        c.warnings[0]
    );
    assert!(c.warnings[1].contains("spec.logSeverityScreen: accepted but ignored"));
    let d = &docs(&c.yaml)[0];
    assert!(d["spec"].get("ignoredInterfaces").is_none());
    assert_eq!(d["spec"]["asNumber"], 63400);
    assert_eq!(d["spec"]["listenPort"], 178);
    assert_eq!(d["spec"]["bindMode"], "NodeIP");
    assert_eq!(
        d["spec"]["serviceClusterIPs"],
        serde_json::json!([{"cidr": "10.96.0.0/12"}])
    );
    assert_eq!(d["spec"]["communities"][0]["value"], "63400:300:100");
    assert_eq!(
        d["spec"]["prefixAdvertisements"][0]["communities"],
        serde_json::json!(["bgp-large-community", "63400:120"])
    );
}

#[test]
fn filter_converts_unchanged() {
    let c = convert(FILTER);
    assert_eq!(c.warnings, Vec::<String>::new());
    let d = &docs(&c.yaml)[0];
    assert_eq!(d["spec"]["exportV4"][0]["cidr"], "77.0.0.0/16");
    assert_eq!(d["spec"]["exportV4"][1]["interface"], "*.calico");
    assert_eq!(d["spec"]["importV4"][0]["matchOperator"], "NotIn");
    assert_eq!(d["spec"]["exportV6"][0]["source"], "RemotePeers");
    assert_eq!(d["spec"]["importV6"][0]["cidr"], "9000::/64");
}

#[test]
fn converted_manifests_load_in_the_datastore() {
    let all = [GLOBAL_PEER, NODE_PEER, CONFIG, FILTER].join("---\n");
    let c = convert(&all);
    assert_eq!(c.objects, 4);
    let snapshot = load(&[("petrel.yaml", &c.yaml), ("secret.yaml", SECRET)])
        .unwrap_or_else(|e| panic!("{e}\n{}", c.yaml));
    assert_eq!(snapshot.peers.len(), 2);
    assert_eq!(snapshot.filters.len(), 1);
    assert!(snapshot.bgp_configuration.is_some());
}

#[test]
fn unsupported_fields_are_removed_and_named() {
    let c = convert(
        "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: workloads
spec:
  peerSelector: has(rr)
  localWorkloadSelector: color == 'red'
  futureField: 1
  reachableBy: 10.0.0.1
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  serviceLoadBalancerAggregation: Disabled
",
    );
    assert_eq!(c.objects, 2);
    let w = c.warnings.join("\n");
    assert_eq!(c.warnings.len(), 3, "{w}");
    assert!(w.contains("calico.yaml:1: BGPPeer \"workloads\": spec.futureField: not supported"));
    assert!(w.contains("spec.localWorkloadSelector: peering with local workloads"));
    assert!(w.contains("spec.reachableBy: accepted but ignored"));
    // Disabled (per-service routes) is supported: kept, without a warning.
    assert!(!w.contains("serviceLoadBalancerAggregation"), "{w}");
    let d = docs(&c.yaml);
    assert!(d[0]["spec"].get("localWorkloadSelector").is_none());
    assert!(d[0]["spec"].get("futureField").is_none());
    assert_eq!(d[0]["spec"]["peerSelector"], "has(rr)");
    assert_eq!(d[1]["spec"]["serviceLoadBalancerAggregation"], "Disabled");
}

/// The fields removed by `peer_semantics` / `config_semantics` are the ones
/// the datastore rejects: if it starts accepting them, drop the removal.
#[test]
fn removed_semantic_fields_are_rejected_by_the_datastore() {
    let peer = "apiVersion: petrel.dev/v1\nkind: BGPPeer\nmetadata: {name: p}\n\
                spec: {peerSelector: has(rr), localWorkloadSelector: a == 'b'}\n";
    let err = load(&[("p.yaml", peer)]).expect_err("rejected").to_string();
    assert!(err.contains("spec.localWorkloadSelector"), "{err}");
    // ... and what it now accepts is converted as it is.
    let cfg = "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
               spec: {serviceLoadBalancerAggregation: Disabled}\n";
    load(&[("c.yaml", cfg)]).expect("serviceLoadBalancerAggregation: Disabled is supported");
}

#[test]
fn bad_values_are_removed_and_required_ones_skip_the_object() {
    let c = convert(
        "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: bad-ttl}
spec: {peerIP: 10.0.0.1, asNumber: 65001, ttlSecurity: 300}
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: no-action}
spec:
  exportV4:
    - cidr: 10.0.0.0/8
      matchOperator: In
",
    );
    assert_eq!(c.objects, 1, "{:#?}", c.warnings);
    assert!(
        c.warnings[0].contains("BGPPeer \"bad-ttl\": spec.ttlSecurity:"),
        "{}",
        c.warnings[0]
    );
    assert!(c.warnings[0].ends_with("removed"));
    assert!(
        c.warnings[1].contains("BGPFilter \"no-action\"")
            && c.warnings[1].ends_with("object skipped"),
        "{}",
        c.warnings[1]
    );
    assert!(docs(&c.yaml)[0]["spec"].get("ttlSecurity").is_none());
}

#[test]
fn other_kinds_are_skipped_with_a_warning() {
    let c = convert(
        "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.rack1-host1}
spec: {listenPort: 178}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {name: raw-crd}
spec: {peerIP: 10.0.0.1, asNumber: 65001}
",
    );
    assert_eq!(c.objects, 0);
    assert_eq!(c.yaml, "");
    assert_eq!(c.warnings.len(), 3, "{:#?}", c.warnings);
    assert!(c.warnings[0].contains("only the BGPConfiguration named \"default\""));
    assert!(c.warnings[1].contains("FelixConfiguration"));
    assert!(c.warnings[2].contains("apiVersion \"crd.projectcalico.org/v1\""));
}

// Calico's default pools, as `calicoctl get ippools -o yaml` prints them.
const POOLS: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
  annotations:
    projectcalico.org/metadata: '{\"uid\":\"1\",\"creationTimestamp\":\"2024-01-01T00:00:00Z\"}'
    team: net
spec:
  cidr: 192.168.0.0/16
  blockSize: 26
  ipipMode: Always
  vxlanMode: Never
  natOutgoing: true
  nodeSelector: all()
  allowedUses: [Workload, Tunnel]
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv6-ippool}
spec:
  cidr: fd00:10:244::/48
  blockSize: 122
  vxlanMode: CrossSubnet
  disabled: true
  disableBGPExport: true
  nodeSelector: rack == 'r1'
";

#[test]
fn ip_pools_convert_with_warnings_on_encapsulation_and_nat() {
    let c = convert(POOLS);
    assert_eq!(c.objects, 2, "{:#?}", c.warnings);
    assert_eq!(c.warnings.len(), 3, "{:#?}", c.warnings);
    assert!(c.warnings[0].contains("IPPool \"default-ipv4-ippool\": spec.ipipMode: Always"));
    assert!(c.warnings[1].contains("spec.natOutgoing"));
    assert!(c.warnings[2].contains("IPPool \"default-ipv6-ippool\": spec.vxlanMode: CrossSubnet"));
    let d = docs(&c.yaml);
    assert_eq!(d[0]["kind"], "IPPool");
    assert_eq!(d[0]["apiVersion"], "petrel.dev/v1");
    assert_eq!(
        d[0]["metadata"],
        serde_json::json!({"name": "default-ipv4-ippool", "annotations": {"team": "net"}}),
        "projectcalico.org/metadata is dropped"
    );
    assert_eq!(d[0]["spec"]["cidr"], "192.168.0.0/16");
    assert_eq!(d[0]["spec"]["blockSize"], 26);
    assert!(d[0]["spec"].get("ipipMode").is_none());
    assert!(d[0]["spec"].get("natOutgoing").is_none());
    assert_eq!(d[1]["spec"]["disabled"], true);
    assert_eq!(d[1]["spec"]["disableBGPExport"], true);
    assert_eq!(d[1]["spec"]["nodeSelector"], "rack == 'r1'");
    // And the datastore takes them.
    let snap = load(&[("pools.yaml", &c.yaml)]).expect("loads");
    assert_eq!(snap.ip_pools.len(), 2);
}

#[test]
fn ip_pools_petrel_would_reject_are_skipped() {
    let c = convert(
        "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: manual}
spec: {cidr: 10.10.0.0/16, assignmentMode: Manual}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: tiny-blocks}
spec: {cidr: 10.20.0.0/16, blockSize: 8}
",
    );
    assert_eq!(c.objects, 0, "{}", c.yaml);
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
    assert!(c.warnings[0].contains("assignmentMode: Manual"));
    assert!(c.warnings[1].contains("spec.blockSize") && c.warnings[1].contains("object skipped"));
}

#[test]
fn mesh_settings_without_the_mesh_are_removed() {
    let c = convert(
        "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: false
  asNumber: 64512
  nodeMeshMaxRestartTime: 90s
  nodeMeshPassword: {secretKeyRef: {name: bgp-passwords, key: mesh}}
",
    );
    assert_eq!(c.objects, 1);
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
    assert!(c.warnings[0].contains("spec.nodeMeshMaxRestartTime"));
    assert!(c.warnings[1].contains("spec.nodeMeshPassword"));
    let spec = &docs(&c.yaml)[0]["spec"];
    assert!(spec.get("nodeMeshMaxRestartTime").is_none());
    assert!(spec.get("nodeMeshPassword").is_none());
    assert_eq!(spec["nodeToNodeMeshEnabled"], false);
}

#[test]
fn rbac_secret_names_match_the_shipped_role() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/rbac.yaml"),
    )
    .expect("read manifests/rbac.yaml");
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).expect("YAML");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "petrel-secrets")
        .expect("Role petrel-secrets");
    let names: Vec<&str> = role["rules"][0]["resourceNames"]
        .as_array()
        .expect("resourceNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, RBAC_SECRET_NAMES);
}

#[test]
fn invalid_yaml_is_an_error_naming_the_file() {
    let e = convert_calico(&[("broken.yaml".into(), "kind: [unclosed\n".into())]).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("broken.yaml: invalid YAML: "), "{s}");
    assert!(!s.contains('\n'));
}

#[test]
fn paths_are_shown_like_the_datastore_does() {
    assert_eq!(
        display_path(&["spec".into(), "filters".into(), "0".into()]),
        "spec.filters[0]"
    );
    assert_eq!(display_path(&[]), ".");
    assert_eq!(
        unknown_field("unknown field `x`, expected one of `a`"),
        Some("x")
    );
    assert_eq!(unknown_field("invalid type"), None);
}
