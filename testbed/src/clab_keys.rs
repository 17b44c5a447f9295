//! containerlab's own node keys, read by the netns runner, so that one
//! topology file deploys both here and under real containerlab
//! (`testbed/clab.sh`).
//!
//! containerlab knows no `petrel`, `bird`, `frr` or `gobgp` kind and rejects
//! unknown keys, so such a file describes each daemon node as
//!
//! ```yaml
//! frr:
//!   kind: linux
//!   image: petrel-frr:dev                     # testbed/images/build.sh frr
//!   binds: [frr.conf:/etc/frr/frr.conf:ro]
//! ```
//!
//! and [`normalize`] turns it into what the netns runner runs: the daemon is
//! the one of the image (by repository name, whatever the registry and tag:
//! [`IMAGES`]), and its configuration is the host side of the bind to the
//! path where that image's daemon reads it. The older `kind: <daemon>` with
//! `config:` still works here (but not under containerlab). A petrel node's
//! `env` `PETREL_DATASTORE: kubernetes` selects the Kubernetes datastore,
//! and a bind `__clabDir__/<dir>:/var/lib/petrel/ipam` ([`PETREL_IPAM_DIR`])
//! gives it the IPAM directory `<lab directory>/<dir>` in both runners: the
//! nodes that bind the same one share their IPAM store, as agents on one host
//! or on a shared filesystem do.
//! Other keys (`cmd`, `exec`, other binds) mean the same in both runners or
//! only matter to containerlab.

use crate::topology::{Datastore, Kind, NodeSpec};
use anyhow::{Context, bail};
use std::path::PathBuf;

/// The images of `testbed/images/`: repository name, the daemon the netns
/// runner starts for it, and where that image reads the daemon's
/// configuration (a directory of manifests for petrel).
pub const IMAGES: &[(&str, Kind, &str)] = &[
    ("petrel", Kind::Petrel, "/etc/petrel/manifests"),
    ("petrel-bird", Kind::Bird, "/etc/bird/bird.conf"),
    ("petrel-frr", Kind::Frr, "/etc/frr/frr.conf"),
    ("petrel-gobgp", Kind::Gobgp, "/etc/gobgp/gobgp.toml"),
];

/// Where petrel's image keeps IPAM state (`petrel agent --ipam-dir`).
pub const PETREL_IPAM_DIR: &str = "/var/lib/petrel/ipam";

/// containerlab's variable for the lab's directory, in binds.
const CLAB_DIR: &str = "__clabDir__";

/// The repository name of an image reference: `registry:5000/team/petrel-frr:dev`
/// and `petrel-frr@sha256:...` both give `petrel-frr`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// Splits a containerlab bind `host:container[:options]`.
fn split_bind(bind: &str) -> Option<(&str, &str)> {
    let mut parts = bind.splitn(3, ':');
    let host = parts.next().filter(|h| !h.is_empty())?;
    let container = parts.next().filter(|c| c.starts_with('/'))?;
    Some((host, container.trim_end_matches('/')))
}

/// Gives a `kind: linux` node with one of [`IMAGES`] its daemon kind and
/// `config` (from its binds); leaves other nodes alone.
pub fn normalize(name: &str, spec: &mut NodeSpec) -> anyhow::Result<()> {
    let Some(image) = spec.image.as_deref().filter(|_| spec.kind == Kind::Linux) else {
        return Ok(());
    };
    let Some(&(_, kind, path)) = IMAGES.iter().find(|(r, _, _)| *r == repository(image)) else {
        return Ok(());
    };
    if spec.config.is_some() {
        bail!("node {name:?}: image {image} takes its configuration from `binds`, not `config`");
    }
    spec.kind = kind;
    if kind == Kind::Petrel {
        spec.ipam_dir = ipam_dir(name, &spec.binds)?;
    }
    if kind == Kind::Petrel
        && spec.env.get("PETREL_DATASTORE").map(String::as_str) == Some("kubernetes")
    {
        spec.datastore = Datastore::Kubernetes;
        return Ok(());
    }
    let host = spec
        .binds
        .iter()
        .filter_map(|b| split_bind(b))
        .find(|(_, container)| *container == path)
        .map(|(host, _)| host)
        .with_context(|| {
            format!(
                "node {name:?}: image {image} needs a bind `<host path>:{path}` (its {kind} configuration)"
            )
        })?;
    if host.contains("__clab") {
        bail!(
            "node {name:?}: the configuration bind {host:?} must be a path, not a containerlab variable"
        );
    }
    spec.config = Some(PathBuf::from(host));
    Ok(())
}

/// A petrel node's IPAM directory relative to the lab's directory, from its
/// bind `__clabDir__/<dir>:/var/lib/petrel/ipam`, if it has one.
fn ipam_dir(name: &str, binds: &[String]) -> anyhow::Result<Option<PathBuf>> {
    let Some((host, _)) = binds
        .iter()
        .filter_map(|b| split_bind(b))
        .find(|(_, container)| *container == PETREL_IPAM_DIR)
    else {
        return Ok(None);
    };
    let rel = host
        .strip_prefix(CLAB_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|r| !r.is_empty() && !r.split('/').any(|c| c == ".." || c.is_empty()))
        .with_context(|| {
            format!(
                "node {name:?}: the IPAM bind {host:?} must be {CLAB_DIR}/<dir> (the lab's directory, shared by its nodes)"
            )
        })?;
    Ok(Some(PathBuf::from(rel)))
}

#[cfg(test)]
mod tests {
    use crate::topology::{Datastore, Kind, Topology};

    const CLAB: &str = r#"
name: t
topology:
  nodes:
    p:
      kind: linux
      image: registry.example:5000/team/petrel:dev
      binds: [petrel:/etc/petrel/manifests/:ro]
      env: { NODE_NAME: p, PETREL_DATASTORE: "file:/etc/petrel/manifests" }
      cmd: agent --ipam-dir /var/lib/petrel/ipam
    f:
      kind: linux
      image: petrel-frr:dev
      binds: ["/tmp/x:/var/log/frr", "frr.conf:/etc/frr/frr.conf:ro"]
    h: { kind: linux, image: petrel-base:bookworm }
    b: { kind: bird, config: bird.conf }
  links:
    - endpoints: ["p:eth1", "f:eth1"]
"#;

    #[test]
    fn images_give_kinds_and_binds_give_configs() {
        let t = Topology::parse(CLAB).unwrap();
        let n = &t.topology.nodes;
        assert_eq!(n["p"].kind, Kind::Petrel);
        assert_eq!(n["p"].config.as_deref(), Some("petrel".as_ref()));
        assert_eq!(n["p"].datastore, Datastore::File);
        assert_eq!(n["f"].kind, Kind::Frr);
        assert_eq!(n["f"].config.as_deref(), Some("frr.conf".as_ref()));
        assert_eq!(n["h"].kind, Kind::Linux);
        assert_eq!(n["h"].config, None);
        assert_eq!(n["b"].kind, Kind::Bird);
    }

    #[test]
    fn a_daemon_image_needs_its_config_bind() {
        let bad = CLAB.replace(
            "\"frr.conf:/etc/frr/frr.conf:ro\"",
            "\"frr.conf:/etc/frr.conf\"",
        );
        let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
        assert!(
            err.contains("needs a bind `<host path>:/etc/frr/frr.conf`"),
            "{err}"
        );
        let bad = CLAB.replace(
            "image: petrel-frr:dev",
            "image: petrel-frr:dev\n      config: x",
        );
        let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
        assert!(err.contains("not `config`"), "{err}");
    }

    #[test]
    fn a_clab_dir_bind_gives_the_shared_ipam_dir() {
        let t = Topology::parse(CLAB).unwrap();
        assert_eq!(t.topology.nodes["p"].ipam_dir, None);
        let shared = CLAB.replace(
            "binds: [petrel:/etc/petrel/manifests/:ro]",
            "binds: [petrel:/etc/petrel/manifests/:ro, __clabDir__/ipam:/var/lib/petrel/ipam]",
        );
        let t = Topology::parse(&shared).unwrap();
        assert_eq!(
            t.topology.nodes["p"].ipam_dir.as_deref(),
            Some("ipam".as_ref())
        );
        for host in ["/srv/ipam", "__clabDir__/../x", "__clabDir__/"] {
            let bad = CLAB.replace(
                "binds: [petrel:/etc/petrel/manifests/:ro]",
                &format!(
                    "binds: [petrel:/etc/petrel/manifests/:ro, \"{host}:/var/lib/petrel/ipam\"]"
                ),
            );
            let err = format!("{:#}", Topology::parse(&bad).unwrap_err());
            assert!(err.contains("must be __clabDir__/<dir>"), "{host}: {err}");
        }
    }

    #[test]
    fn kubernetes_datastore_comes_from_the_env() {
        let t =
            Topology::parse(&CLAB.replace("\"file:/etc/petrel/manifests\"", "kubernetes")).unwrap();
        assert_eq!(t.topology.nodes["p"].datastore, Datastore::Kubernetes);
        assert_eq!(t.topology.nodes["p"].config, None);
    }

    #[test]
    fn repository_ignores_registry_tag_and_digest() {
        assert_eq!(super::repository("petrel-frr"), "petrel-frr");
        assert_eq!(
            super::repository("r.example:5000/a/petrel-frr:dev"),
            "petrel-frr"
        );
        assert_eq!(super::repository("petrel@sha256:00"), "petrel");
    }
}
