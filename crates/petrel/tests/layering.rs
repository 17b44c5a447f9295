//! The crate graph is the architecture: each crate may depend (normal
//! dependencies; tests may use more) only on the petrel crates listed for it
//! here, which is the diagram in `crates/petrel/src/agent/mod.rs`. A
//! dependency from a lower crate to a higher one fails this test, and so
//! does a new crate that is not placed in the diagram.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// crate -> the petrel crates it may depend on.
const LAYERS: &[(&str, &[&str])] = &[
    ("petrel-crd", &[]),
    ("petrel-dataplane", &[]),
    ("petrel-proto", &[]),
    ("petrel-bfd", &[]),
    ("petrel-bgp", &["petrel-crd"]),
    ("petrel-ipam", &["petrel-crd"]),
    ("petrel-services", &["petrel-crd"]),
    (
        "petrel-datastore",
        &["petrel-crd", "petrel-bgp", "petrel-ipam"],
    ),
    (
        "petrel-speaker",
        &[
            "petrel-crd",
            "petrel-bgp",
            "petrel-bfd",
            "petrel-dataplane",
            "petrel-datastore",
        ],
    ),
    (
        "petrel-api",
        &[
            "petrel-proto",
            "petrel-bgp",
            "petrel-bfd",
            "petrel-dataplane",
            "petrel-ipam",
            "petrel-services",
            "petrel-speaker",
        ],
    ),
    // The CNI plugin is exec'd for every pod: the API's wire types only.
    ("petrel-cni", &["petrel-proto"]),
    (
        "petrel",
        &[
            "petrel-crd",
            "petrel-bgp",
            "petrel-bfd",
            "petrel-dataplane",
            "petrel-ipam",
            "petrel-services",
            "petrel-datastore",
            "petrel-speaker",
            "petrel-proto",
            "petrel-api",
        ],
    ),
];

/// Workspace packages and their normal (not dev, not build) dependencies on
/// other workspace packages, from `cargo metadata`.
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| names.contains(*n))
                .map(String::from)
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_downwards() {
    let graph = workspace_graph();
    let layers: BTreeMap<&str, BTreeSet<&str>> = LAYERS
        .iter()
        .map(|(c, deps)| (*c, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (krate, deps) in &graph {
        if krate == "petrel-testbed" {
            continue; // the test harness may use anything
        }
        let Some(allowed) = layers.get(krate.as_str()) else {
            violations.push(format!("{krate} is not in the layering table"));
            continue;
        };
        for d in deps {
            if !allowed.contains(d.as_str()) {
                violations.push(format!("{krate} depends on {d}, which is not below it"));
            }
        }
    }
    for krate in layers.keys() {
        if !graph.contains_key(*krate) {
            violations.push(format!(
                "{krate} is in the layering table but not in the workspace"
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_table_is_acyclic() {
    // Every crate's allowed dependencies appear earlier in LAYERS, so the
    // graph it permits has no cycle.
    let mut seen = BTreeSet::new();
    for (krate, deps) in LAYERS {
        for d in *deps {
            assert!(
                seen.contains(d),
                "{krate} may depend on {d}, which is not listed before it"
            );
        }
        seen.insert(*krate);
    }
}
