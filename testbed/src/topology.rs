//! Topology files in containerlab's format (the `*.clab.yaml` subset the
//! testbed understands).
//!
//! ```yaml
//! name: interop-bird
//! topology:
//!   nodes:
//!     petrel: { kind: petrel, config: petrel/, exec: ["ip addr add 10.0.0.1/30 dev eth1"] }
//!     bird:   { kind: bird,   config: bird.conf }
//!   links:
//!     - endpoints: ["petrel:eth1", "bird:eth1"]
//! ```
//!
//! Paths in `config` are relative to the topology file. A `kind: linux` node
//! whose `image` is one of petrel's lab images gets its daemon and `config`
//! from `image` and `binds` ([`crate::clab_keys`]), so the same file also
//! deploys under containerlab; other unknown keys are ignored.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Maximum length of a Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// What runs inside a node's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `petrel agent` with a file datastore (config is a manifest directory).
    Petrel,
    /// BIRD 2 (config is a bird.conf).
    Bird,
    /// FRR's bgpd alone, without zebra (config is a bgpd configuration).
    Frr,
    /// gobgpd (config is a TOML file).
    Gobgp,
    /// A bare namespace: only the `exec` commands run (routers, hosts).
    Linux,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Petrel => "petrel",
            Kind::Bird => "bird",
            Kind::Frr => "frr",
            Kind::Gobgp => "gobgp",
            Kind::Linux => "linux",
        })
    }
}

/// One node of the topology.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSpec {
    pub kind: Kind,
    /// Daemon configuration, relative to the topology file.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Shell commands run inside the node once all links are up.
    #[serde(default)]
    pub exec: Vec<String>,
    /// petrel nodes only: where the agent reads its configuration
    /// (`file`, the default, or `kubernetes`; see [`Datastore`]).
    #[serde(default)]
    pub datastore: Datastore,
    /// Environment variables of the node's daemons (containerlab's `env`),
    /// e.g. `PETREL_KEEP_ROUTES_ON_EXIT: "true"`.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// containerlab's container image ([`crate::clab_keys`]).
    #[serde(default)]
    pub image: Option<String>,
    /// containerlab's bind mounts `host:container[:options]` ([`crate::clab_keys`]).
    #[serde(default)]
    pub binds: Vec<String>,
    /// petrel nodes: the IPAM directory relative to the lab's directory, from
    /// a bind `__clabDir__/<dir>:/var/lib/petrel/ipam` ([`crate::clab_keys`]);
    /// nodes with the same one share their IPAM store.
    #[serde(skip)]
    pub ipam_dir: Option<PathBuf>,
}

/// A petrel node's datastore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datastore {
    /// Manifests in the node's directory (`config` is copied there).
    #[default]
    File,
    /// A Kubernetes API server: the lab must be deployed with
    /// [`crate::Lab::deploy_kube`], which gives each such node a kubeconfig
    /// and a forwarder to the API server; `config` is optional.
    Kubernetes,
}

/// A point-to-point link (a veth pair).
#[derive(Debug, Clone, Deserialize)]
pub struct LinkSpec {
    /// Exactly two `node:interface` strings.
    pub endpoints: Vec<String>,
}

/// `topology:` section.
#[derive(Debug, Clone, Deserialize)]
pub struct TopologyBody {
    pub nodes: BTreeMap<String, NodeSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

/// A whole topology file.
#[derive(Debug, Clone, Deserialize)]
pub struct Topology {
    pub name: String,
    pub topology: TopologyBody,
    /// Directory of the topology file; `config` paths are relative to it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub iface: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.iface)
    }
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> anyhow::Result<Topology> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading topology {}", path.display()))?;
        let mut topo =
            Topology::parse(&text).with_context(|| format!("in topology {}", path.display()))?;
        topo.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(topo)
    }

    /// Parses and validates topology text (`base_dir` is left empty).
    pub fn parse(text: &str) -> anyhow::Result<Topology> {
        let mut topo: Topology = serde_saphyr::from_str(text).context("invalid topology YAML")?;
        for (name, spec) in &mut topo.topology.nodes {
            crate::clab_keys::normalize(name, spec)?;
        }
        topo.validate()?;
        Ok(topo)
    }

    /// The absolute-or-relative path of a node's config, if it has one.
    pub fn config_path(&self, node: &str) -> Option<PathBuf> {
        let spec = self.topology.nodes.get(node)?;
        spec.config.as_ref().map(|c| self.base_dir.join(c))
    }

    /// Links as pairs of parsed endpoints.
    pub fn links(&self) -> anyhow::Result<Vec<(Endpoint, Endpoint)>> {
        self.topology
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if l.endpoints.len() != 2 {
                    bail!(
                        "link #{i}: expected exactly 2 endpoints, found {}",
                        l.endpoints.len()
                    );
                }
                Ok((
                    parse_endpoint(&l.endpoints[0]).with_context(|| format!("link #{i}"))?,
                    parse_endpoint(&l.endpoints[1]).with_context(|| format!("link #{i}"))?,
                ))
            })
            .collect()
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.topology.nodes.is_empty() {
            bail!("topology {:?} has no nodes", self.name);
        }
        for (name, spec) in &self.topology.nodes {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("node name {name:?}: use letters, digits, '-' and '_' only");
            }
            if spec.datastore == Datastore::Kubernetes && spec.kind != Kind::Petrel {
                bail!("node {name:?}: `datastore` applies to petrel nodes only");
            }
            let kube = spec.datastore == Datastore::Kubernetes;
            if spec.kind != Kind::Linux && spec.config.is_none() && !kube {
                bail!("node {name:?} of kind {} needs a `config`", spec.kind);
            }
        }
        let mut used = BTreeSet::new();
        for (a, b) in self.links()? {
            for ep in [&a, &b] {
                if !self.topology.nodes.contains_key(&ep.node) {
                    bail!("link endpoint {ep}: no node named {:?}", ep.node);
                }
                if !used.insert((ep.node.clone(), ep.iface.clone())) {
                    bail!("interface {ep} is used by more than one link");
                }
            }
            if a.node == b.node {
                bail!("link {a} <-> {b} connects a node to itself");
            }
        }
        Ok(())
    }
}

fn parse_endpoint(s: &str) -> anyhow::Result<Endpoint> {
    let Some((node, iface)) = s.split_once(':') else {
        bail!("endpoint {s:?} is not of the form node:interface");
    };
    if iface.is_empty() || iface.len() > MAX_IFNAME || iface.contains(['/', ' ', ':']) {
        bail!(
            "endpoint {s:?}: interface name must be 1..={MAX_IFNAME} characters without '/', ':' or spaces"
        );
    }
    if iface == "lo" {
        bail!("endpoint {s:?}: `lo` cannot be a link end");
    }
    Ok(Endpoint {
        node: node.to_string(),
        iface: iface.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: t
topology:
  nodes:
    a: { kind: petrel, config: a/ }
    b:
      kind: bird
      config: bird.conf
      image: ignored/by-testbed
      exec:
        - ip addr add 10.0.0.2/30 dev eth1
    r: { kind: linux }
  links:
    - endpoints: ["a:eth1", "b:eth1"]
    - endpoints: ["b:eth2", "r:eth1"]
"#;

    #[test]
    fn parses_containerlab_subset() {
        let t = Topology::parse(GOOD).unwrap();
        assert_eq!(t.name, "t");
        assert_eq!(t.topology.nodes["a"].kind, Kind::Petrel);
        assert_eq!(t.topology.nodes["b"].exec.len(), 1);
        let links = t.links().unwrap();
        assert_eq!(links[1].0.to_string(), "b:eth2");
        assert_eq!(links[1].1.node, "r");
    }

    #[test]
    fn rejects_unknown_node_in_link() {
        let bad = GOOD.replace("r:eth1", "x:eth1");
        let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
        assert!(err.contains("no node named \"x\""), "{err}");
    }

    #[test]
    fn rejects_reused_interface_and_long_names() {
        let bad = GOOD.replace("b:eth2", "b:eth1");
        let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
        assert!(err.contains("more than one link"), "{err}");
        let bad = GOOD.replace("b:eth2", "b:averyveryverylongname");
        assert!(Topology::parse(&bad).is_err());
    }

    #[test]
    fn kubernetes_datastore_needs_no_config_and_only_fits_petrel() {
        let t = Topology::parse(&GOOD.replace(
            "kind: petrel, config: a/",
            "kind: petrel, datastore: kubernetes",
        ))
        .unwrap();
        assert_eq!(t.topology.nodes["a"].datastore, Datastore::Kubernetes);
        assert_eq!(t.topology.nodes["b"].datastore, Datastore::File);
        let bad = GOOD.replace("kind: linux", "kind: linux, datastore: kubernetes");
        let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
        assert!(err.contains("petrel nodes only"), "{err}");
        assert!(Topology::parse(&GOOD.replace("config: a/", "datastore: etcd")).is_err());
    }

    #[test]
    fn rejects_missing_config_and_unknown_kind() {
        let bad = GOOD.replace("kind: petrel, config: a/", "kind: petrel");
        let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
        assert!(err.contains("needs a `config`"), "{err}");
        let bad = GOOD.replace("kind: linux", "kind: ceos");
        assert!(Topology::parse(&bad).is_err());
    }
}
