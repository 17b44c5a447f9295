//! petrel's CustomResourceDefinitions and install manifests against a real
//! kube-apiserver (with etcd; see `testbed/k8s/controlplane.sh`): the CRDs
//! install and become Established, every manifest passes a server-side
//! dry run, the API server enforces the schemas' ranges, formats and CEL
//! rules with messages that name the field, and `kubectl get` prints the
//! printer columns.
//!
//! Run: `cargo test -p petrel-testbed --test k8s_crds` (builds kube-apiserver
//! and etcd on first use unless `.ci/setup-k8s` did; needs no root).

use anyhow::{Context, ensure};
use petrel_testbed::k8s::ControlPlane;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed/ has a parent")
        .to_path_buf()
}

fn crds_file() -> PathBuf {
    repo().join("manifests/crds.yaml")
}

/// The YAML documents of a file, as JSON values (empty documents skipped).
fn docs(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Names of the CRDs in `manifests/crds.yaml`.
fn crd_names() -> anyhow::Result<Vec<String>> {
    docs(&crds_file())?
        .iter()
        .map(|d| {
            ensure!(d["kind"] == "CustomResourceDefinition", "not a CRD: {d}");
            d["metadata"]["name"]
                .as_str()
                .map(str::to_owned)
                .context("CRD without a name")
        })
        .collect()
}

/// The shared control plane with petrel's CRDs applied and Established,
/// and the warnings (stderr) of that first apply.
fn cluster_and_warnings() -> (&'static ControlPlane, &'static str) {
    static READY: OnceLock<Result<String, String>> = OnceLock::new();
    let cp = ControlPlane::shared().expect("start the control plane");
    let warnings = READY
        .get_or_init(|| install_crds(cp).map_err(|e| format!("{e:#}")))
        .as_ref()
        .expect("install the CRDs");
    (cp, warnings)
}

fn cluster() -> &'static ControlPlane {
    cluster_and_warnings().0
}

/// Applies `manifests/crds.yaml`, waits until every CRD is Established and
/// returns kubectl's stderr.
fn install_crds(cp: &ControlPlane) -> anyhow::Result<String> {
    let file = crds_file();
    let out = cp.kubectl_output(&["apply", "-f", file.to_str().context("path")?])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.success(),
        "kubectl apply -f {}: {stderr}",
        file.display()
    );
    for name in crd_names()? {
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{name}"),
        ])?;
    }
    Ok(stderr)
}

#[test]
fn crds_install_and_become_established() -> anyhow::Result<()> {
    let cp = cluster();
    let names = crd_names()?;
    for expected in [
        "bgpconfigurations.petrel.dev",
        "bgppeers.petrel.dev",
        "bgpfilters.petrel.dev",
        "bfdprofiles.petrel.dev",
    ] {
        ensure!(
            names.iter().any(|n| n == expected),
            "{expected} missing from crds.yaml"
        );
    }
    for name in &names {
        let status = cp.kubectl(&[
            "get",
            &format!("crd/{name}"),
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status} \
             {.status.conditions[?(@.type==\"NamesAccepted\")].status} \
             {.status.conditions[?(@.type==\"NonStructuralSchema\")].status}",
        ])?;
        ensure!(
            status.trim() == "True True",
            "{name}: Established NamesAccepted NonStructuralSchema = {status:?}"
        );
    }
    // The API server serves the resources with their short names and category.
    let resources = cp.kubectl(&["api-resources", "--api-group=petrel.dev", "-o", "wide"])?;
    for short in ["bgpc", "bgpp", "bgpf"] {
        ensure!(
            resources
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == short),
            "short name {short} not served:\n{resources}"
        );
    }
    // Applying the same file again is a no-op, as a user re-running the install expects.
    let again = cp.kubectl(&["apply", "-f", crds_file().to_str().context("path")?])?;
    ensure!(
        again.lines().all(|l| l.ends_with(" unchanged")),
        "second apply changed something:\n{again}"
    );
    Ok(())
}

/// Installing the CRDs prints no warnings: Kubernetes warns about schema
/// formats it does not know (e.g. `uint32` from unsigned Rust types).
#[test]
fn crds_apply_without_warnings() {
    let (_, warnings) = cluster_and_warnings();
    assert!(
        !warnings.contains("Warning"),
        "kubectl apply -f manifests/crds.yaml warns (integer formats other than \
         int32/int64 need `kubernetes_int_formats`, see src/k8s/bgp_peer.rs):\n{warnings}"
    );
}

/// `kubectl apply -f manifests/` on an empty cluster, as the README tells
/// users: every object is created, in one command.
#[test]
fn kubectl_apply_manifests_directory() -> anyhow::Result<()> {
    let cp = ControlPlane::start()?;
    let dir = repo().join("manifests");
    let out = cp.kubectl(&["apply", "-f", dir.to_str().context("path")?])?;
    for d in ["crds.yaml", "rbac.yaml", "daemonset.yaml"]
        .iter()
        .map(|f| docs(&dir.join(f)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat()
    {
        let name = d["metadata"]["name"]
            .as_str()
            .context("object without a name")?;
        ensure!(
            out.lines().any(|l| l.contains(&format!("/{name} created"))),
            "{} {name} not created:\n{out}",
            d["kind"]
        );
    }
    cp.kubectl(&["get", "daemonset/petrel", "-n", "petrel-system"])?;
    Ok(())
}

/// Every manifest under `manifests/` (install files and examples) passes
/// the API server's validation (`--dry-run=server`) once the CRDs exist;
/// the Namespaces they use are created first, as `kubectl apply -f` of the
/// whole directory would.
#[test]
fn every_manifest_passes_server_side_dry_run() -> anyhow::Result<()> {
    let cp = cluster();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [repo().join("manifests"), repo().join("manifests/examples")] {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    ensure!(files.len() >= 7, "expected the manifests, found {files:?}");
    let mut namespaces: Vec<String> = Vec::new();
    for f in &files {
        for d in docs(f)? {
            if let Some(ns) = d["metadata"]["namespace"].as_str() {
                namespaces.push(ns.to_owned());
            }
        }
    }
    namespaces.sort();
    namespaces.dedup();
    for ns in &namespaces {
        let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        cp.apply(&manifest)?;
    }
    for f in &files {
        let path = f.to_str().context("path")?;
        let out = cp.kubectl(&["apply", "--dry-run=server", "-f", path])?;
        let n = docs(f)?.len();
        ensure!(
            out.lines()
                .filter(|l| l.ends_with("(server dry run)"))
                .count()
                == n,
            "{path}: expected {n} objects validated by the server:\n{out}"
        );
    }
    Ok(())
}

/// A dry-run apply of one object; `Ok(())` when the API server accepts it,
/// else its error text.
fn dry_run(cp: &ControlPlane, yaml: &str) -> Result<(), String> {
    let out = cp
        .kubectl_as_output(
            cp.kubeconfig(),
            &["apply", "--dry-run=server", "-f", "-"],
            Some(yaml),
        )
        .map_err(|e| format!("{e:#}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn object(kind: &str, name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!("apiVersion: petrel.dev/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// Objects that valid cases refer to (BGPFilters named in `filters`, the
/// BFDProfile of `bfdProfile`, the Secret of `nodeMeshPassword`), for
/// petrel's loader, which checks references; the API server does not.
const LOADER_CONTEXT: &str = "apiVersion: petrel.dev/v1\nkind: BGPFilter\nmetadata:\n  name: a\n---\n\
    apiVersion: petrel.dev/v1\nkind: BGPFilter\nmetadata:\n  name: b\n---\n\
    apiVersion: petrel.dev/v1\nkind: BFDProfile\nmetadata:\n  name: fast\n---\n\
    apiVersion: v1\nkind: Secret\nmetadata:\n  name: mesh\nstringData:\n  pw: secret\n";

/// Checks that each `(spec, expected fragments)` case is rejected with an
/// error naming the field, and that each valid spec is accepted, by the API
/// server; and that petrel's own loader (the file datastore, and the agent's
/// check of what it reads from the API server) comes to the same verdict.
fn check_cases(kind: &str, valid: &[&str], invalid: &[(&str, &[&str])]) -> anyhow::Result<()> {
    let cp = cluster();
    let mut failures = Vec::new();
    // Only the BGPConfiguration named "default" is valid; dry runs never
    // store it, so all cases can use that name.
    let name_of = |what: &str, i: usize| match kind {
        "BGPConfiguration" => "default".to_owned(),
        _ => format!("{}-{what}-{i}", kind.to_lowercase()),
    };
    for (i, spec) in valid.iter().enumerate() {
        let name = name_of("valid", i);
        let yaml = object(kind, &name, spec);
        if let Err(e) = dry_run(cp, &yaml) {
            failures.push(format!("valid {kind} rejected:\n{spec}\n=> {e}"));
        }
        // The loader also resolves references between objects.
        let with_context = format!("{yaml}---\n{LOADER_CONTEXT}");
        if let Err(e) = petrel_datastore::parse_manifest(&name, &with_context) {
            failures.push(format!(
                "valid {kind} rejected by petrel's loader:\n{spec}\n=> {e}"
            ));
        }
    }
    for (i, (spec, fragments)) in invalid.iter().enumerate() {
        let name = name_of("invalid", i);
        if petrel_datastore::parse_manifest(&name, &object(kind, &name, spec)).is_ok() {
            failures.push(format!(
                "invalid {kind} accepted by petrel's loader:\n{spec}"
            ));
        }
        match dry_run(cp, &object(kind, &name, spec)) {
            Ok(()) => failures.push(format!("invalid {kind} accepted:\n{spec}")),
            Err(e) => {
                let missing: Vec<&&str> = fragments.iter().filter(|f| !e.contains(**f)).collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{kind} rejected without {missing:?}:\n{spec}\n=> {e}"
                    ));
                }
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[test]
fn bgppeer_validation_names_the_field() -> anyhow::Result<()> {
    check_cases(
        "BGPPeer",
        &[
            "peerIP: 10.0.0.1\nasNumber: 65001",
            "node: worker-1\npeerIP: \"[fd00::1]:1179\"\nasNumber: 4294967295",
            "nodeSelector: all()\npeerIP: 10.0.0.1:179\nasNumber: 1\nlocalASNumber: 65000",
            "peerSelector: route-reflector == 'true'",
            "peerIP: 10.0.0.1\nasNumber: 65001\nholdTime: 0s\nkeepaliveTime: 10s",
            "peerIP: 10.0.0.1\nasNumber: 65001\nholdTime: 30s\nkeepaliveTime: 10s\nmaxRestartTime: 2m",
            "peerIP: fd00::1\nasNumber: 65001\nreachableBy: fd00::fe\nsourceAddress: fd00::2",
            "peerIP: 10.0.0.1\nasNumber: 65001\nnextHopMode: Self\nkeepOriginalNextHop: false",
            "peerIP: 10.0.0.1\nasNumber: 65001\nfamilies: [IPv4, IPv6]\nfilters: [a, b]",
            "peerIP: 10.0.0.1\nasNumber: 65001\nbfdProfile: fast",
            "peerIP: 10.0.0.1\nasNumber: 65001\nnumAllowedLocalASNumbers: 3\nttlSecurity: 1\nmaxPrefixes: 1",
        ],
        &[
            (
                "node: a\nnodeSelector: all()\npeerIP: 10.0.0.1\nasNumber: 65001",
                &[
                    "spec.nodeSelector",
                    "node and nodeSelector cannot both be set",
                ],
            ),
            (
                "peerIP: 10.0.0.1\npeerSelector: all()\nasNumber: 65001",
                &[
                    "spec.peerSelector",
                    "peerIP and peerSelector cannot both be set",
                ],
            ),
            ("node: a", &["spec.peerIP", "one of peerIP or peerSelector"]),
            (
                "peerIP: 10.0.0.1",
                &["spec.asNumber", "required when peerIP is set"],
            ),
            (
                "peerSelector: all()\nasNumber: 65001",
                &["spec.asNumber", "must be empty when peerSelector is set"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 4294967296",
                &["spec.asNumber", "4294967295"],
            ),
            ("peerIP: 10.0.0.1\nasNumber: 0", &["spec.asNumber"]),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nlocalASNumber: -5",
                &["spec.localASNumber"],
            ),
            ("peerIP: 10.0.0.1:0\nasNumber: 1", &["spec.peerIP"]),
            ("peerIP: 10.0.0.1:65536\nasNumber: 1", &["spec.peerIP"]),
            ("peerIP: 10.0.0.300\nasNumber: 1", &["spec.peerIP"]),
            (
                "peerIP: fd00::1:179\nasNumber: 1\nholdTime: 2s",
                &["spec.holdTime"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nholdTime: 30s\nkeepaliveTime: 30s",
                &["spec.keepaliveTime", "shorter than the hold time"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nholdTime: 3.5s",
                &["spec.holdTime"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nmaxRestartTime: 4096s",
                &["spec.maxRestartTime", "4095s"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nkeepOriginalNextHop: true\nnextHopMode: Keep",
                &["spec.keepOriginalNextHop", "deprecated"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nnextHopMode: Sometimes",
                &["spec.nextHopMode", "Unsupported value"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nreachableBy: fd00::1",
                &["spec.reachableBy", "family"],
            ),
            (
                "peerSelector: all()\nsourceAddress: 10.0.0.2",
                &["spec.sourceAddress", "needs peerIP"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nsourceAddress: NodeIP",
                &["spec.sourceAddress"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nnumAllowedLocalASNumbers: 256",
                &["spec.numAllowedLocalASNumbers"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nttlSecurity: 256",
                &["spec.ttlSecurity"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nmaxPrefixes: 0",
                &["spec.maxPrefixes"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nfilters: [\"\"]",
                &["spec.filters[0]"],
            ),
            (
                "peerIP: 10.0.0.1\nasNumber: 1\nlocalWorkloadSelector: all()",
                &["spec.localWorkloadSelector", "not supported"],
            ),
            // A typo is an error (strict field validation), not a silently dropped field.
            (
                "peerIp: 10.0.0.1\nasNumber: 1",
                &["spec.peerIp", "unknown field"],
            ),
        ],
    )
}

/// Rules only the API server enforces: petrel's loader accepts these (it
/// uses each family once), but the CRD keeps lists well-formed for
/// server-side apply.
/// Issue 12: what petrel rejects in one IPPool, the API server rejects too,
/// naming the field (overlaps between pools are the agent's).
#[test]
fn ippool_validation_names_the_field() -> anyhow::Result<()> {
    check_cases(
        "IPPool",
        &[
            "cidr: 10.244.0.0/16",
            "cidr: 10.244.0.0/16\nblockSize: 24\nipipMode: Never\nvxlanMode: Never\nnatOutgoing: false",
            "cidr: fd00:10:244::/56\nblockSize: 120",
            "cidr: 10.40.0.0/16\nblockSize: 32\nnodeSelector: rack in {'r1', 'r2'} && !has(edge)",
            "cidr: 10.41.0.0/16\nnodeSelector: all()",
            "cidr: 10.42.0.0/16\nnodeSelector: \"\"",
        ],
        &[
            ("cidr: 10.10.0.0/33", &["spec.cidr", "must be a CIDR"]),
            ("cidr: not-a-cidr", &["spec.cidr", "must be a CIDR"]),
            ("cidr: 10.40.1.7/16", &["spec.cidr", "host bits"]),
            ("cidr: \"fd00::1/64\"", &["spec.cidr", "host bits"]),
            (
                "cidr: 10.10.0.0/16\nblockSize: 12",
                &["spec.blockSize", "20-32"],
            ),
            (
                "cidr: fd00::/48\nblockSize: 64",
                &["spec.blockSize", "116-128"],
            ),
            (
                "cidr: 10.10.0.0/16\nblockSize: 116",
                &["spec.blockSize", "20-32"],
            ),
            (
                "cidr: 10.10.0.0/24\nblockSize: 20",
                &["spec.blockSize", "does not fit"],
            ),
            (
                "cidr: 10.10.0.0/16\nipipMode: Always",
                &["spec.ipipMode", "petrel has no encapsulation"],
            ),
            (
                "cidr: 10.10.0.0/16\nvxlanMode: CrossSubnet",
                &["spec.vxlanMode", "petrel has no encapsulation"],
            ),
            (
                "cidr: 10.10.0.0/16\nipipMode: Always\nnatOutgoing: true",
                &[
                    "spec.ipipMode",
                    "petrel has no encapsulation",
                    "spec.natOutgoing",
                    "does not NAT",
                ],
            ),
            (
                "cidr: 10.10.0.0/16\nnodeSelector: rack = 'r1'",
                &["spec.nodeSelector", "Calico syntax"],
            ),
            (
                "cidr: 10.10.0.0/16\nnodeSelector: rack == r1",
                &["spec.nodeSelector", "Calico syntax"],
            ),
        ],
    )
}

/// Issue 12: malformed selectors of a BGPPeer are rejected by the API server.
#[test]
fn bgppeer_selectors_are_checked_by_the_api_server() -> anyhow::Result<()> {
    check_cases(
        "BGPPeer",
        &[
            "nodeSelector: rack == 'r1' || rack == 'r2'\npeerIP: 10.0.0.1\nasNumber: 65001",
            "peerSelector: has(route-reflector) && zone not in {'x'}",
        ],
        &[
            (
                "nodeSelector: rack == 'r1' &&\npeerIP: 10.0.0.1\nasNumber: 65001",
                &["spec.nodeSelector", "Calico syntax"],
            ),
            (
                "peerSelector: \"rack in ('a')\"",
                &["spec.peerSelector", "Calico syntax"],
            ),
        ],
    )
}

#[test]
fn bgppeer_list_types_are_enforced() -> anyhow::Result<()> {
    let cp = cluster();
    let e = dry_run(
        cp,
        &object(
            "BGPPeer",
            "duplicate-families",
            "peerIP: 10.0.0.1\nasNumber: 1\nfamilies: [IPv4, IPv4]",
        ),
    )
    .err()
    .context("duplicate families accepted")?;
    ensure!(
        e.contains("spec.families[1]") && e.contains("Duplicate value"),
        "{e}"
    );
    Ok(())
}

#[test]
fn only_the_default_bgpconfiguration_is_accepted() -> anyhow::Result<()> {
    let cp = cluster();
    let yaml = object("BGPConfiguration", "node.worker-1", "asNumber: 65001");
    let e = dry_run(cp, &yaml)
        .err()
        .context("BGPConfiguration node.worker-1 accepted")?;
    ensure!(e.contains("metadata.name must be \"default\""), "{e}");
    ensure!(
        petrel_datastore::parse_manifest("node-config", &yaml).is_err(),
        "petrel's loader accepts a BGPConfiguration not named default"
    );
    dry_run(
        cp,
        &object("BGPConfiguration", "default", "asNumber: 65001"),
    )
    .map_err(|e| anyhow::anyhow!("default rejected: {e}"))?;
    Ok(())
}

#[test]
fn bgpconfiguration_validation_names_the_field() -> anyhow::Result<()> {
    check_cases(
        "BGPConfiguration",
        &[
            "asNumber: 64512\nnodeToNodeMeshEnabled: true\nlistenPort: 179\nmaxPaths: 8",
            "nodeToNodeMeshEnabled: false\nserviceClusterIPs: [{cidr: 10.96.0.0/12}]\nserviceLoadBalancerIPs: [{cidr: \"fd00:1b::/112\"}]",
            "communities: [{name: edge, value: \"65000:100\"}]\nprefixAdvertisements: [{cidr: 10.96.0.0/12, communities: [edge, \"65000:7\", \"1:2:3\"]}]",
            "nodeMeshPassword: {secretKeyRef: {name: mesh, key: pw}}\nnodeMeshMaxRestartTime: 90s\nbindMode: NodeIP",
            "serviceLoadBalancerIPs: [{cidr: 192.0.2.0/24}]\nserviceLoadBalancerAggregation: Disabled",
        ],
        &[
            ("asNumber: 0", &["spec.asNumber"]),
            ("asNumber: 4294967296", &["spec.asNumber"]),
            ("listenPort: 0", &["spec.listenPort"]),
            ("listenPort: 65536", &["spec.listenPort"]),
            ("maxPaths: 257", &["spec.maxPaths"]),
            ("bindMode: All", &["spec.bindMode", "Unsupported value"]),
            (
                "nodeToNodeMeshEnabled: false\nnodeMeshPassword: {secretKeyRef: {name: mesh, key: pw}}",
                &["spec.nodeMeshPassword", "nodeToNodeMeshEnabled is false"],
            ),
            (
                "nodeToNodeMeshEnabled: false\nnodeMeshMaxRestartTime: 90s",
                &[
                    "spec.nodeMeshMaxRestartTime",
                    "nodeToNodeMeshEnabled is false",
                ],
            ),
            (
                "nodeMeshMaxRestartTime: 2h",
                &["spec.nodeMeshMaxRestartTime", "4095s"],
            ),
            (
                "serviceClusterIPs: [{cidr: 10.96.0.0/33}]",
                &["spec.serviceClusterIPs[0].cidr"],
            ),
            (
                "serviceExternalIPs: [{cidr: not-a-cidr}]",
                &["spec.serviceExternalIPs[0].cidr"],
            ),
            (
                "communities: [{name: a, value: \"1:1\"}, {name: a, value: \"1:2\"}]",
                &["spec.communities[1]", "Duplicate value"],
            ),
            (
                "communities: [{name: a, value: \"1-1\"}]",
                &["spec.communities[0].value"],
            ),
            (
                "prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nosuch]}]",
                &["spec.prefixAdvertisements", "a name defined in communities"],
            ),
        ],
    )
}

#[test]
fn bfdprofile_validation_names_the_field() -> anyhow::Result<()> {
    check_cases(
        "BFDProfile",
        &[
            "receiveInterval: 300\ntransmitInterval: 300\ndetectMultiplier: 3",
            "receiveInterval: 10\ntransmitInterval: 60000\ndetectMultiplier: 255\npassiveMode: true\nminimumTtl: 254",
            "echoMode: false",
        ],
        &[
            ("echoMode: true", &["echoMode is not supported"]),
            ("echoInterval: 50", &["echoInterval is not supported"]),
            ("detectMultiplier: 1", &["spec.detectMultiplier"]),
            ("receiveInterval: 9", &["spec.receiveInterval"]),
            ("transmitInterval: 60001", &["spec.transmitInterval"]),
            ("minimumTtl: 255", &["spec.minimumTtl"]),
        ],
    )
}

#[test]
fn bgpfilter_validation_names_the_field() -> anyhow::Result<()> {
    check_cases(
        "BGPFilter",
        &[
            "exportV4: [{cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {min: 16, max: 24}, action: Accept}]",
            "importV6: [{cidr: \"fd00::/8\", matchOperator: NotIn, action: Reject}, {action: Accept}]",
            "exportV4: [{source: RemotePeers, interface: \"eth*\", peerType: eBGP, communities: {values: [\"65000:1\"]}, asPathPrefix: [65000], priority: 10, action: Accept, operations: [{addCommunity: {value: \"65000:2\"}}, {prependASPath: {prefix: [65000, 65000]}}, {setPriority: {value: 20}}]}]",
        ],
        &[
            (
                "exportV4: [{cidr: 10.0.0.0/8, action: Accept}]",
                &["spec.exportV4[0]", "cidr and matchOperator"],
            ),
            (
                "exportV4: [{prefixLength: {max: 24}, action: Accept}]",
                &["spec.exportV4[0].prefixLength", "cidr is required"],
            ),
            (
                "exportV4: [{cidr: \"fd00::/8\", matchOperator: In, action: Accept}]",
                &["spec.exportV4", "IPv4"],
            ),
            (
                "importV6: [{cidr: 10.0.0.0/8, matchOperator: In, action: Accept}]",
                &["spec.importV6", "IPv6"],
            ),
            (
                "exportV4: [{cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {max: 33}, action: Accept}]",
                &["spec.exportV4", "32"],
            ),
            (
                "exportV6: [{cidr: \"fd00::/8\", matchOperator: In, prefixLength: {min: 64, max: 48}, action: Accept}]",
                &["spec.exportV6[0].prefixLength", "min"],
            ),
            (
                "exportV4: [{action: Drop}]",
                &["spec.exportV4[0].action", "Unsupported value"],
            ),
            (
                "exportV4: [{}]",
                &["spec.exportV4[0].action", "Required value"],
            ),
            (
                "exportV4: [{interface: \"this-name-is-too-long\", action: Accept}]",
                &["spec.exportV4[0].interface"],
            ),
            (
                "exportV4: [{communities: {values: [\"1:1\", \"1:2\"]}, action: Accept}]",
                &["spec.exportV4[0].communities.values"],
            ),
            (
                "exportV4: [{priority: 0, action: Accept}]",
                &["spec.exportV4[0].priority"],
            ),
            (
                "exportV4: [{asPathPrefix: [0], action: Accept}]",
                &["spec.exportV4[0].asPathPrefix[0]"],
            ),
            (
                "exportV4: [{action: Reject, operations: [{setPriority: {value: 5}}]}]",
                &["spec.exportV4[0].operations", "Accept"],
            ),
            (
                "exportV4: [{action: Accept, operations: [{}]}]",
                &["spec.exportV4[0].operations[0]", "exactly one"],
            ),
            (
                "exportV4: [{action: Accept, operations: [{prependASPath: {prefix: []}}]}]",
                &["spec.exportV4[0].operations[0].prependASPath.prefix"],
            ),
            (
                "exportV4: [{action: Accept, operations: [{setPriority: {value: 2147483647}}]}]",
                &["spec.exportV4[0].operations[0].setPriority.value"],
            ),
        ],
    )
}

/// Splits kubectl's table output into cells by the header's column starts
/// (cells may be empty; header names may contain single spaces).
fn table_rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")))
        .collect();
    std::iter::once(header)
        .chain(lines)
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(k, &from)| {
                    let to = starts
                        .get(k + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    line.get(from.min(line.len())..to)
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                })
                .collect()
        })
        .collect()
}

#[test]
fn kubectl_get_prints_the_printer_columns() -> anyhow::Result<()> {
    let cp = cluster();
    cp.apply(&object(
        "BGPPeer",
        "columns-tor",
        "node: worker-1\npeerIP: 10.0.1.254\nasNumber: 65001\nlocalASNumber: 65010\nfilters: [tor-policy]",
    ))?;
    cp.apply(&object(
        "BGPPeer",
        "columns-rr",
        "nodeSelector: \"!has(route-reflector)\"\npeerSelector: has(route-reflector)",
    ))?;
    let table = cp.kubectl(&["get", "bgppeers", "columns-tor", "columns-rr"])?;
    let rows = table_rows(&table);
    ensure!(
        rows.first().map(Vec::as_slice)
            == Some(
                &[
                    "NAME",
                    "NODE",
                    "NODE SELECTOR",
                    "PEER IP",
                    "PEER SELECTOR",
                    "PEER ASN",
                    "LOCAL ASN",
                    "AGE"
                ]
                .map(String::from)[..]
            ),
        "header:\n{table}"
    );
    let row = |name: &str| -> anyhow::Result<&[String]> {
        rows.iter()
            .find(|r| r[0] == name)
            .map(|r| &r[..7])
            .with_context(|| format!("no row {name}:\n{table}"))
    };
    ensure!(
        row("columns-tor")?
            == [
                "columns-tor",
                "worker-1",
                "",
                "10.0.1.254",
                "",
                "65001",
                "65010"
            ],
        "{table}"
    );
    ensure!(
        row("columns-rr")?
            == [
                "columns-rr",
                "",
                "!has(route-reflector)",
                "",
                "has(route-reflector)",
                "",
                ""
            ],
        "{table}"
    );
    // -o wide adds the Filters column; the short name and the category work,
    // and spec.node is a selectable field.
    let wide = cp.kubectl(&["get", "bgpp", "columns-tor", "-o", "wide"])?;
    ensure!(
        wide.lines().next().is_some_and(|h| h.contains("FILTERS"))
            && wide.contains("[\"tor-policy\"]"),
        "wide:\n{wide}"
    );
    let all = cp.kubectl(&["get", "petrel", "-o", "name"])?;
    ensure!(
        all.lines().any(|l| l == "bgppeer.petrel.dev/columns-rr"),
        "category petrel:\n{all}"
    );
    let selected = cp.kubectl(&[
        "get",
        "bgppeers",
        "--field-selector",
        "spec.node=worker-1",
        "-o",
        "name",
    ])?;
    ensure!(
        selected.lines().collect::<Vec<_>>() == ["bgppeer.petrel.dev/columns-tor"],
        "field selector spec.node=worker-1:\n{selected}"
    );
    Ok(())
}
