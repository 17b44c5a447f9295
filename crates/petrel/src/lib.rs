//! petrel: a BGP-based layer-3 routing agent for Kubernetes. This crate is
//! the `petrel` binary: the node agent that wires the other crates together
//! ([`agent`], whose module documentation has the architecture diagram and
//! the crate graph), its command-line client ([`cli`]) and its Prometheus
//! metrics and health endpoints ([`metrics`]).
//!
//! Data flows one way:
//!
//! ```text
//! datastore (file dir / Kubernetes) ──► config for this node ──► speaker (sessions, RIB) ──► dataplane (kernel)
//!                                                                     │
//!                                               api (gRPC) ◄── status ┘
//! ```

pub mod agent;
pub mod cli;
pub mod logfilter;
pub mod metrics;
