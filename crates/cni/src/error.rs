//! Errors of the `petrel-ipam` CNI plugin and their CNI error codes
//! (CNI spec 1.1.0 §5 "Error": codes 0-99 are well-known, 100+ are the
//! plugin's own).

use std::path::PathBuf;

/// Well-known CNI error codes (CNI spec 1.1.0 §5) and petrel-ipam's own.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. reading stdin.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: a transient condition.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The plugin is not available (cannot service ADD), for STATUS.
    pub const NOT_AVAILABLE: u32 = 50;
    /// petrel-ipam: CHECK found no allocation, or one that does not match
    /// `prevResult`.
    pub const ALLOCATION_MISMATCH: u32 = 100;
    /// petrel-ipam: the agent refused the request or answered nonsense.
    pub const AGENT_ERROR: u32 = 101;
}

/// Everything `petrel-ipam` can fail with. The `Display` text is the `msg`
/// of the CNI error result: one line naming the cause and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version {version:?}: petrel-ipam supports {}", super::SUPPORTED_VERSIONS.join(", "))]
    IncompatibleVersion { version: String },
    #[error("unsupported field in the ipam configuration: {key}: {value}")]
    UnsupportedField { key: String, value: String },
    #[error("invalid environment variable {name}: {reason}")]
    InvalidEnv { name: &'static str, reason: String },
    #[error("cannot read the network configuration from stdin: {0}")]
    Io(#[source] std::io::Error),
    #[error("cannot decode the network configuration: {0}")]
    Decode(String),
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// Nothing listens on the socket, or the connection broke.
    #[error(
        "the petrel agent at {} is not reachable: {reason} (is `petrel agent` running with this --api-socket?)",
        socket.display()
    )]
    AgentUnreachable { socket: PathBuf, reason: String },
    /// No answer within the configured time.
    #[error("the petrel agent at {} did not answer {op} within {secs} s", socket.display())]
    Timeout {
        socket: PathBuf,
        op: &'static str,
        secs: u64,
    },
    /// The agent cannot allocate now (exhausted pools, start-up, datastore
    /// trouble); the message is the agent's.
    #[error("petrel agent at {}: {message}", socket.display())]
    TryAgain { socket: PathBuf, message: String },
    /// STATUS: the plugin cannot service ADD.
    #[error("{0}")]
    NotAvailable(String),
    /// CHECK: the allocation is missing or differs from `prevResult`.
    #[error("{0}")]
    AllocationMismatch(String),
    /// Any other refusal or a malformed answer of the agent.
    #[error("petrel agent at {} refused {op}: {message}", socket.display())]
    Agent {
        socket: PathBuf,
        op: &'static str,
        message: String,
    },
}

impl CniError {
    /// The CNI error code of this error.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            CniError::UnsupportedField { .. } => code::UNSUPPORTED_FIELD,
            CniError::InvalidEnv { .. } => code::INVALID_ENV,
            CniError::Io(_) => code::IO,
            CniError::Decode(_) => code::DECODE,
            CniError::InvalidConfig(_) => code::INVALID_CONFIG,
            CniError::AgentUnreachable { .. }
            | CniError::Timeout { .. }
            | CniError::TryAgain { .. } => code::TRY_AGAIN_LATER,
            CniError::NotAvailable(_) => code::NOT_AVAILABLE,
            CniError::AllocationMismatch(_) => code::ALLOCATION_MISMATCH,
            CniError::Agent { .. } => code::AGENT_ERROR,
        }
    }
}
