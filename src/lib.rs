//! petrel: a BGP-based layer-3 routing agent for Kubernetes.
//!
//! Data flows one way:
//!
//! ```text
//! datastore (file dir / Kubernetes) ──► config for this node ──► speaker (sessions, RIB) ──► dataplane (kernel)
//!                                                                     │
//!                                               api (gRPC) ◄── status ┘
//! ```

pub mod agent;
pub mod api;
pub mod bgp;
pub mod cli;
pub mod cni;
pub mod dataplane;
pub mod datastore;
pub mod ipam;
pub mod k8s;
pub mod metrics;
pub mod services;
#[allow(unsafe_code)] // the one documented socket-options module
pub mod sockopt;
