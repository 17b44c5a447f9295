//! Configuration datastores: a directory of Kubernetes-style YAML manifests,
//! resolved into the configuration of one node.
//!
//! The directory holds `*.yaml` / `*.yml` files (hidden files and
//! subdirectories are ignored), each with any number of `---`-separated
//! documents; comments and empty documents are ignored. Accepted objects:
//!
//! | apiVersion | kinds |
//! |---|---|
//! | `petrel.dev/v1` | `BGPConfiguration` (only `default`), `BGPPeer`, `BGPFilter`, `BFDProfile`, `IPPool` |
//! | `projectcalico.org/v3` | the same kinds, accepted with a warning so Calico manifests can be dropped in unchanged |
//! | `v1` | `Node` (identity via `petrel.dev/*` annotations or `status.addresses`), `Secret` (BGP passwords; namespace ignored), `Service` (service advertisement) |
//! | `discovery.k8s.io/v1` | `EndpointSlice` (which nodes have local endpoints) |
//!
//! Anything else is an error. [`load_dir`] reports every error it finds, each
//! naming the file, document, object and field; [`resolve`] derives one node's
//! [`resolved::NodeConfig`] with Calico's semantics; [`watch_dir`] polls the
//! directory and publishes new configurations.
//!
//! Related RFCs: RFC 4271, RFC 4456, RFC 4724, RFC 2385, RFC 5082, RFC 1997,
//! RFC 8092 (see the submodules).

mod error;
pub mod kube;
mod load;
mod node;
mod resolve;
pub mod resolved;
mod validate;
mod watch;

pub use error::{DatastoreError, ManifestError, ObjectRef};
pub use load::assemble_values;
pub use node::{
    ANNOTATION_AS_NUMBER, ANNOTATION_IPV4_ADDRESS, ANNOTATION_IPV6_ADDRESS, ANNOTATION_ROUTER_ID,
    ANNOTATION_RR_CLUSTER_ID,
};
pub use resolve::{
    DEFAULT_AS_NUMBER, DEFAULT_HOLD_TIME, DEFAULT_MAX_RESTART_TIME, DEFAULT_PORT, resolve,
    resolve_with,
};
pub use watch::publish_changed;
pub use watch::{resolve_snapshots, watch_dir, watch_snapshots};

use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use petrel_crd::{BFDProfile, BGPConfiguration, BGPFilter, BGPPeer, IPPool};
use std::path::Path;

/// Every object of the datastore, validated.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The `default` BGPConfiguration, if present (defaults apply otherwise).
    pub bgp_configuration: Option<BGPConfiguration>,
    pub peers: Vec<BGPPeer>,
    pub filters: Vec<BGPFilter>,
    /// BFD parameters that peers and the mesh name.
    pub bfd_profiles: Vec<BFDProfile>,
    pub nodes: Vec<Node>,
    pub secrets: Vec<Secret>,
    /// IP pools: where IPAM takes pod address blocks from.
    pub ip_pools: Vec<IPPool>,
    /// Services, for service address advertisement (`petrel_services`).
    pub services: Vec<Service>,
    /// EndpointSlices: which nodes have ready endpoints of a Service.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Objects left out or replaced by their last valid version when the
    /// snapshot was assembled (the Kubernetes datastore); resolution adds
    /// its own and reports them all in [`resolved::NodeConfig::problems`].
    pub problems: Vec<resolved::ConfigProblem>,
    /// Secrets the agent may not read (the API server said 403): resolution
    /// names them forbidden rather than "not found".
    pub forbidden_secrets: std::collections::BTreeSet<String>,
}

/// Parses and validates the text of one manifest file named `name`, as
/// [`load_dir`] does for each file of a directory (used by the fuzz targets
/// and by tools that read manifests from elsewhere).
pub fn parse_manifest(name: &str, content: &str) -> Result<Snapshot, DatastoreError> {
    let file = load::SourceFile {
        name: name.to_string(),
        content: content.to_string(),
    };
    load::parse_files(&[file], Vec::new())
}

/// Loads and validates every manifest in `dir`. Collects all the errors it
/// can find (in every file) rather than stopping at the first.
pub fn load_dir(dir: &Path) -> Result<Snapshot, DatastoreError> {
    let (files, errors) = load::read_dir_files(dir)?;
    load::parse_files(&files, errors)
}

#[cfg(test)]
mod tests;
