//! Tests of the CRD types: Calico field names, parsing, generated manifests.

use super::*;
use std::path::PathBuf;

fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

/// `manifests/crds.yaml` must be exactly what `crd_manifests()` produces.
/// Regenerate it with `petrel crds > manifests/crds.yaml`, or with
/// `PETREL_REGENERATE_MANIFESTS=1 cargo test --lib k8s::tests::crds_yaml_is_up_to_date`.
#[test]
fn crds_yaml_is_up_to_date() {
    let path = manifests_dir().join("crds.yaml");
    let generated = crd_manifests();
    if std::env::var_os("PETREL_REGENERATE_MANIFESTS").is_some() {
        std::fs::write(&path, &generated).expect("write manifests/crds.yaml");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "manifests/crds.yaml is out of date with src/k8s. Regenerate it with \
         `PETREL_REGENERATE_MANIFESTS=1 cargo test --lib k8s::tests::crds_yaml_is_up_to_date` \
         (or `petrel crds > manifests/crds.yaml`)"
    );
}

/// Keys of a serialized object, sorted.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn peer_field_names_are_calicos() {
    let yaml = r#"
node: n1
peerIP: "[fd00::1]:1179"
asNumber: 65001
localASNumber: 65002
keepOriginalNextHop: false
nextHopMode: Self
password: {secretKeyRef: {name: s, key: k}}
sourceAddress: None
maxRestartTime: 2m
keepaliveTime: 10s
numAllowedLocalASNumbers: 1
ttlSecurity: 1
reachableBy: fd00::fe
filters: [f1]
reversePeering: Manual
holdTime: 30s
passive: true
maxPrefixes: 1000
"#;
    let spec: BgpPeerSpec = serde_saphyr::from_str(yaml).expect("parse");
    assert_eq!(
        spec.peer_ip.map(|p| p.to_string()).as_deref(),
        Some("[fd00::1]:1179")
    );
    assert_eq!(spec.next_hop_mode, Some(NextHopModeSpec::SelfHop));
    assert_eq!(spec.source_address, Some(SourceAddress::None));
    assert_eq!(spec.max_restart_time.map(|d| d.rounded_secs()), Some(120));
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        keys(&v),
        sorted(&[
            "node",
            "peerIP",
            "asNumber",
            "localASNumber",
            "keepOriginalNextHop",
            "nextHopMode",
            "password",
            "sourceAddress",
            "maxRestartTime",
            "keepaliveTime",
            "numAllowedLocalASNumbers",
            "ttlSecurity",
            "reachableBy",
            "filters",
            "reversePeering",
            "holdTime",
            "passive",
            "maxPrefixes"
        ])
    );
    assert_eq!(v["maxRestartTime"], "2m0s");
    assert_eq!(v["nextHopMode"], "Self");
    // Round trip.
    let back: BgpPeerSpec = serde_json::from_value(v).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn configuration_field_names_are_calicos() {
    let yaml = r#"
logSeverityScreen: Info
nodeToNodeMeshEnabled: false
asNumber: 64513
serviceClusterIPs: [{cidr: 10.96.0.0/12}]
serviceExternalIPs: [{cidr: 192.0.2.0/24}]
serviceLoadBalancerIPs: [{cidr: "fd00:1b::/112"}]
serviceLoadBalancerAggregation: Enabled
communities: [{name: edge, value: "65000:100"}, {name: big, value: "65000:1:2"}]
prefixAdvertisements: [{cidr: 10.96.0.0/12, communities: [edge, "65000:7"]}]
listenPort: 1179
nodeMeshPassword: {secretKeyRef: {name: mesh, key: pw}}
nodeMeshMaxRestartTime: 90s
bindMode: NodeIP
"#;
    let spec: BgpConfigurationSpec = serde_saphyr::from_str(yaml).expect("parse");
    assert_eq!(spec.bind_mode, Some(BindModeSpec::NodeIp));
    assert_eq!(
        spec.communities[1].value.0,
        crate::Community::Large([65000, 1, 2])
    );
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        keys(&v),
        sorted(&[
            "logSeverityScreen",
            "nodeToNodeMeshEnabled",
            "asNumber",
            "serviceClusterIPs",
            "serviceExternalIPs",
            "serviceLoadBalancerIPs",
            "serviceLoadBalancerAggregation",
            "communities",
            "prefixAdvertisements",
            "listenPort",
            "nodeMeshPassword",
            "nodeMeshMaxRestartTime",
            "bindMode"
        ])
    );
    assert_eq!(v["communities"][0]["value"], "65000:100");
}

#[test]
fn filter_field_names_are_calicos() {
    let yaml = r#"
exportV4:
  - action: Accept
    cidr: 10.0.0.0/8
    matchOperator: In
    prefixLength: {min: 16, max: 24}
    source: RemotePeers
    interface: "eth*"
    peerType: eBGP
    communities: {values: ["65000:1"]}
    asPathPrefix: [65001]
    priority: 512
    operations:
      - addCommunity: {value: "65000:2"}
      - prependASPath: {prefix: [65000, 65000]}
      - setPriority: {value: 100}
importV6:
  - action: Reject
    cidr: "fd00::/8"
    matchOperator: NotIn
    peerType: iBGP
"#;
    let spec: BgpFilterSpec = serde_saphyr::from_str(yaml).expect("parse");
    let rule = &spec.export_v4[0];
    assert_eq!(rule.match_operator, Some(MatchOperator::In));
    assert_eq!(rule.peer_type, Some(FilterPeerType::Ebgp));
    assert_eq!(spec.import_v6[0].peer_type, Some(FilterPeerType::Ibgp));
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(keys(&v), sorted(&["exportV4", "importV6"]));
    assert_eq!(
        keys(&v["exportV4"][0]),
        sorted(&[
            "action",
            "cidr",
            "matchOperator",
            "prefixLength",
            "source",
            "interface",
            "peerType",
            "communities",
            "asPathPrefix",
            "priority",
            "operations"
        ])
    );
    assert_eq!(
        keys(&v["exportV4"][0]["operations"][1]),
        sorted(&["prependASPath"])
    );
    assert_eq!(v["exportV4"][0]["peerType"], "eBGP");
}

#[test]
fn typed_values_reject_bad_input() {
    for bad in [
        "10.0.0.1:0",
        "10.0.0.1:99999",
        "fd00::1:179:x",
        "[fd00::1]",
        "host",
        "",
    ] {
        assert!(bad.parse::<PeerIp>().is_err(), "{bad:?} should not parse");
    }
    let p: PeerIp = "10.0.0.1:1179".parse().unwrap();
    assert_eq!(
        (p.ip.to_string(), p.port),
        ("10.0.0.1".to_string(), Some(1179))
    );
    let p: PeerIp = "fd00::1".parse().unwrap();
    assert_eq!(p.port, None);
    assert!("10.0.0.300".parse::<SourceAddress>().is_err());
    assert_eq!(
        "10.0.0.3".parse::<SourceAddress>().unwrap().to_string(),
        "10.0.0.3"
    );
    let e = serde_json::from_str::<BgpPeerSpec>(r#"{"peerIp": "10.0.0.1"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `peerIp`"), "{e}");
    let e = serde_json::from_str::<BgpConfigurationSpec>(
        r#"{"communities": [{"name": "a", "value": "1:70000"}]}"#,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("invalid community \"1:70000\""),
        "{e}"
    );
}

/// The CRD documents of `crd_manifests()` by name.
fn crd_docs() -> Vec<serde_json::Value> {
    serde_saphyr::from_str_multiple(&crd_manifests()).expect("valid YAML")
}

fn crd_doc(name: &str) -> serde_json::Value {
    crd_docs()
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no CRD {name}"))
}

#[test]
fn crds_are_cluster_scoped_in_our_group() {
    let docs = crd_docs();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    for ours in [
        "bgpconfigurations.petrel.dev",
        "bgppeers.petrel.dev",
        "bgpfilters.petrel.dev",
    ] {
        assert!(names.contains(&ours), "{ours} missing from {names:?}");
        assert_eq!(crd_doc(ours)["spec"]["scope"], "Cluster", "{ours}");
    }
    for d in &docs {
        assert_eq!(d["spec"]["group"], GROUP);
        assert_eq!(d["spec"]["versions"][0]["name"], VERSION);
        // Structural schema: no oneOf/anyOf without a type anywhere.
        let s = d.to_string();
        assert!(
            !s.contains("\"oneOf\""),
            "non-structural schema in {}",
            d["metadata"]["name"]
        );
        let schema = &d["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_structural(schema, "openAPIV3Schema");
    }
    let peer = crd_doc("bgppeers.petrel.dev");
    let peer_schema = &peer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    assert_eq!(peer_schema["peerIP"]["type"], "string");
    assert_eq!(peer_schema["holdTime"]["type"], "string");
}

/// The `x-kubernetes-validations` rules of a schema, as (rule, fieldPath).
fn cel_rules(schema: &serde_json::Value) -> Vec<(String, String)> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or_default().to_owned(),
                        r["fieldPath"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn spec_schema(crd: &str) -> serde_json::Value {
    crd_doc(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// The API server enforces the loader's cross-field peer checks: each rule
/// points at the field a user has to change.
#[test]
fn peer_schema_carries_the_loader_rules() {
    let spec = spec_schema("bgppeers.petrel.dev");
    let rules = cel_rules(&spec);
    for (needle, field) in [
        ("has(self.node) || !has(self.nodeSelector)", ".nodeSelector"),
        (
            "has(self.peerIP) || !has(self.peerSelector)",
            ".peerSelector",
        ),
        ("has(self.peerIP) || has(self.peerSelector)", ".peerIP"),
        ("!has(self.peerIP) || has(self.asNumber)", ".asNumber"),
        (
            "!has(self.peerSelector) || !has(self.asNumber)",
            ".asNumber",
        ),
        ("has(self.nextHopMode)", ".keepOriginalNextHop"),
        ("!has(self.localWorkloadSelector)", ".localWorkloadSelector"),
        ("duration(self.keepaliveTime) <", ".keepaliveTime"),
    ] {
        assert!(
            rules.iter().any(|(r, f)| r.contains(needle) && f == field),
            "no rule {needle:?} on {field} in {rules:#?}"
        );
    }
    let p = &spec["properties"];
    for asn in ["asNumber", "localASNumber"] {
        assert_eq!(p[asn]["minimum"], 1.0, "{asn}");
        assert_eq!(p[asn]["maximum"], 4294967295.0, "{asn}");
    }
    assert_eq!(p["numAllowedLocalASNumbers"]["maximum"], 255.0);
    assert_eq!(p["ttlSecurity"]["maximum"], 255.0);
    assert_eq!(p["maxPrefixes"]["minimum"], 1.0);
    assert_eq!(p["families"]["x-kubernetes-list-type"], "set");
    assert_eq!(p["filters"]["items"]["minLength"], 1);
    for field in [
        "peerIP",
        "sourceAddress",
        "reachableBy",
        "holdTime",
        "keepaliveTime",
    ] {
        assert!(
            !cel_rules(&p[field]).is_empty(),
            "{field} has no format rule"
        );
        // CEL cost estimates need bounded strings.
        assert!(
            p[field]["maxLength"].is_number(),
            "{field} has no maxLength"
        );
    }
    let names = &crd_doc("bgppeers.petrel.dev")["spec"]["names"];
    assert_eq!(names["shortNames"], serde_json::json!(["bgpp"]));
    assert_eq!(names["categories"], serde_json::json!(["petrel"]));
}

#[test]
fn configuration_and_filter_schemas_carry_the_loader_rules() {
    let spec = spec_schema("bgpconfigurations.petrel.dev");
    let rules = cel_rules(&spec);
    for field in [
        ".nodeMeshPassword",
        ".nodeMeshMaxRestartTime",
        ".prefixAdvertisements",
    ] {
        assert!(
            rules.iter().any(|(_, f)| f == field),
            "no rule on {field} in {rules:#?}"
        );
    }
    let p = &spec["properties"];
    assert_eq!(p["communities"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        p["communities"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    assert_eq!(p["listenPort"]["minimum"], 1.0);
    let cidr = &p["serviceClusterIPs"]["items"]["properties"]["cidr"];
    assert!(
        cel_rules(cidr).iter().any(|(r, _)| r == "isCIDR(self)"),
        "{cidr}"
    );

    let spec = spec_schema("bgpfilters.petrel.dev");
    let rule = &spec["properties"]["exportV6"]["items"];
    let rules = cel_rules(rule);
    assert!(
        rules
            .iter()
            .any(|(r, _)| r == "has(self.cidr) == has(self.matchOperator)"),
        "{rules:#?}"
    );
    assert!(
        cel_rules(&spec["properties"]["importV6"])
            .iter()
            .any(|(r, _)| r.contains("family() == 6")),
        "importV6 must only take IPv6 prefixes"
    );
    assert_eq!(rule["properties"]["operations"]["maxItems"], 10);
    let op = &rule["properties"]["operations"]["items"];
    assert!(
        !cel_rules(op).is_empty(),
        "operation needs its exactly-one rule"
    );
}

/// Deserializes every document of a manifest file into `T` and returns them.
fn typed_docs<T: serde::de::DeserializeOwned>(file: &str, kind: &str) -> Vec<T> {
    let text = std::fs::read_to_string(manifests_dir().join(file)).expect("read manifest");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text).expect("valid YAML");
    docs.into_iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_json::from_value(d).unwrap_or_else(|e| panic!("{file}: {kind}: {e}")))
        .collect()
}

/// Every manifest that declares petrel's Namespace declares the same one:
/// `kubectl apply` of a copy without the labels would strip them.
#[test]
fn namespace_declared_identically_everywhere() {
    let canonical = typed_docs::<serde_json::Value>("00-namespace.yaml", "Namespace");
    assert_eq!(canonical.len(), 1);
    let mut files: Vec<_> = std::fs::read_dir(manifests_dir())
        .expect("manifests dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    for f in files {
        for ns in typed_docs::<serde_json::Value>(&f, "Namespace") {
            assert_eq!(ns, canonical[0], "{f} declares the Namespace differently");
        }
    }
}

#[test]
fn rbac_grants_what_the_agent_reads() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let roles: Vec<ClusterRole> = typed_docs("rbac.yaml", "ClusterRole");
    let rules = roles[0].rules.clone().unwrap_or_default();
    let grants = |group: &str, resource: &str| {
        rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|x| x == group))
                && r.resources
                    .as_ref()
                    .is_some_and(|x| x.iter().any(|x| x == resource))
                && ["get", "list", "watch"]
                    .iter()
                    .all(|v| r.verbs.iter().any(|x| x == v))
        })
    };
    assert!(grants("", "nodes"));
    for plural in ["bgpconfigurations", "bgppeers", "bgpfilters", "bfdprofiles"] {
        assert!(grants(GROUP, plural), "{plural}");
    }
    assert!(
        !grants("", "secrets"),
        "secrets must not be readable cluster-wide"
    );
    let ns_roles: Vec<Role> = typed_docs("rbac.yaml", "Role");
    assert_eq!(
        ns_roles[0].metadata.namespace.as_deref(),
        Some("petrel-system")
    );
    let binding: Vec<ClusterRoleBinding> = typed_docs("rbac.yaml", "ClusterRoleBinding");
    assert_eq!(
        binding[0].subjects.as_ref().map(|s| s[0].name.as_str()),
        Some("petrel")
    );
    let rb: Vec<RoleBinding> = typed_docs("rbac.yaml", "RoleBinding");
    assert_eq!(rb[0].role_ref.name, "petrel-secrets");
}

/// The pod template of `manifests/daemonset.yaml`.
fn daemonset_pod() -> k8s_openapi::api::core::v1::PodSpec {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let ds: Vec<DaemonSet> = typed_docs("daemonset.yaml", "DaemonSet");
    ds[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec")
}

#[test]
fn daemonset_runs_the_agent_in_the_host_network() {
    let pod = daemonset_pod();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("petrel"));
    let c = &pod.containers[0];
    // `petrel agent --datastore kubernetes`; the node name comes from the
    // NODE_NAME variable (`--node-name` reads it) set from the pod's node.
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("agent"), "{args:?}");
    assert!(
        args.iter().any(|a| a == "--datastore=kubernetes")
            || args
                .windows(2)
                .any(|w| w[0] == "--datastore" && w[1] == "kubernetes"),
        "{args:?}"
    );
    let env = c.env.clone().unwrap_or_default();
    let node_name = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    let field = node_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(field, Some("spec.nodeName"));
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.clone())
        .and_then(|c| c.add)
        .unwrap_or_default();
    for cap in ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "SYS_NICE"] {
        assert!(caps.iter().any(|c| c == cap), "{cap}");
    }
}

/// Kubernetes structural schemas need a `type` on every property and item
/// schema, and `nullable` only next to a type. A map is an object with
/// `additionalProperties` (a schema) and no `properties`.
fn assert_structural(schema: &serde_json::Value, at: &str) {
    assert!(schema.get("type").is_some(), "{at}: no type");
    for key in ["anyOf", "allOf", "oneOf", "not"] {
        assert!(schema.get(key).is_none(), "{at}: {key} is not allowed here");
    }
    if let Some(values) = schema.get("additionalProperties") {
        assert!(
            schema.get("properties").is_none(),
            "{at}: additionalProperties next to properties"
        );
        assert!(
            values.is_object(),
            "{at}: additionalProperties must be a schema"
        );
        assert_structural(values, &format!("{at}{{}}"));
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, sub) in props {
            assert_structural(sub, &format!("{at}.{name}"));
        }
    }
    if let Some(items) = schema.get("items") {
        assert_structural(items, &format!("{at}[]"));
    }
}

/// README's configuration reference: a blank line inside a table ends it,
/// and the rows after it render as text (the BGPPeer table lost `families`).
#[test]
fn readme_tables_are_not_split_by_blank_lines() {
    let readme = manifests_dir().join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("read README.md");
    let lines: Vec<&str> = text.lines().collect();
    let row = |l: &str| l.trim_start().starts_with('|');
    let separator = |l: Option<&&str>| l.is_some_and(|l| row(l) && l.contains("---"));
    for (i, w) in lines.windows(3).enumerate() {
        // A row after a blank line that is not the header of a new table.
        let new_table = separator(lines.get(i + 3));
        assert!(
            !(row(w[0]) && w[1].trim().is_empty() && row(w[2]) && !new_table),
            "README.md:{}: a blank line splits a table before {:?}",
            i + 2,
            w[2]
        );
    }
}

/// Issue 18: the DaemonSet drains on SIGTERM, within its grace period.
#[test]
fn daemonset_drains_within_the_grace_period() {
    let pod = daemonset_pod();
    let args = pod.containers[0].args.clone().unwrap_or_default();
    let drain: i64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--drain-seconds="))
        .expect("--drain-seconds")
        .parse()
        .expect("a number of seconds");
    assert!(drain > 0);
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    // The drain, then up to about 15 s to stop in order.
    assert!(grace >= drain + 15, "grace {grace} s, drain {drain} s");
}
