//! `petrel-ipam`, a CNI IPAM plugin (CNI spec 1.1.0 and 1.0.0; configurations
//! at 0.3.0, 0.3.1 and 0.4.0 are accepted too) that asks the local petrel
//! agent for pod addresses over the agent's API socket
//! (`petrel.v1.IpamService`, served by `petrel_api::ipam`).
//!
//! It is meant to be delegated to by the reference `ptp` plugin, which makes
//! the veth pair, puts the gateway on the host side and routes the pod's
//! /32 (or /128) to it, the way Calico wires pods; no bridge, no overlay:
//!
//! ```json
//! { "cniVersion": "1.0.0", "name": "petrel", "plugins": [
//!   { "type": "ptp", "mtu": 1500,
//!     "ipam": { "type": "petrel-ipam", "socket": "/run/petrel/petrel.sock" } } ] }
//! ```
//!
//! Commands (`CNI_COMMAND`):
//! - `ADD`: allocate (idempotent per `(CNI_CONTAINERID, CNI_IFNAME)`), print
//!   the IPAM result: `ips` (address with its block's prefix length, and the
//!   gateway) and a default route per family via the gateway (or the
//!   configured `routes`). See [`result`].
//! - `DEL`: release; succeeds when nothing is allocated, but fails with 11
//!   when the agent cannot be reached, so that the runtime retries instead
//!   of leaking the addresses.
//! - `CHECK`: the allocation must exist and match `prevResult`.
//! - `GC`: release every allocation of the network not in
//!   `cni.dev/valid-attachments`.
//! - `STATUS`: 50 unless the agent answers and its IPAM is ready.
//! - `VERSION`: the supported versions.
//!
//! Errors are CNI error results on stdout with a non-zero exit status
//! ([`error::code`]): an agent that is not running, is starting, or has
//! exhausted its pools gives 11 ("try again later") with a message saying
//! so; a bad configuration 6 (undecodable), 7 (invalid) or 2 (unknown field).

mod agent;
pub mod config;
pub mod error;
pub mod result;

pub(crate) use petrel_proto::pb;

use agent::Agent;
use config::{CniEnv, Command, NetConf};
use error::CniError;
use result::{ErrorResult, VersionResult};

/// Spec versions petrel-ipam speaks, as VERSION reports them.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest, used to label output when the input has no version.
pub const LATEST_VERSION: &str = "1.1.0";

/// What the plugin prints and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// JSON for stdout (empty when the command prints nothing).
    pub stdout: String,
    /// The process exit status.
    pub exit_code: u8,
    /// A line for stderr, on failure.
    pub log: Option<String>,
}

/// Runs one invocation: `get` reads the environment, `stdin` is the
/// network configuration. Never panics on input.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let prefix = match get("CNI_COMMAND") {
        Some(c) if !c.is_empty() => format!("petrel-ipam {c}"),
        _ => "petrel-ipam".to_string(),
    };
    match execute(get, stdin) {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
            log: None,
        },
        Err(e) => {
            let r = ErrorResult::new(config::output_version(stdin), &e);
            Outcome {
                stdout: to_json(&r),
                exit_code: 1,
                log: Some(format!("{prefix}: {e}")),
            }
        }
    }
}

/// [`run`] for the binary: a failure to read stdin is CNI error 5.
pub fn run_io(get: impl Fn(&str) -> Option<String>, stdin: std::io::Result<Vec<u8>>) -> Outcome {
    match stdin {
        Ok(bytes) => run(get, &bytes),
        Err(e) => {
            let e = CniError::Io(e);
            Outcome {
                stdout: to_json(&ErrorResult::new(LATEST_VERSION.into(), &e)),
                exit_code: 1,
                log: Some(format!("petrel-ipam: {e}")),
            }
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising these plain structs cannot fail; an empty object keeps the
    // output JSON if it ever did.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into()) + "\n"
}

fn execute(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<String, CniError> {
    let env = CniEnv::from_lookup(get)?;
    if env.command == Command::Version {
        return Ok(to_json(&VersionResult::new(config::output_version(stdin))));
    }
    let conf = config::parse_netconf(stdin)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CniError::Io)?;
    rt.block_on(dispatch(&env, &conf))
}

async fn dispatch(env: &CniEnv, conf: &NetConf) -> Result<String, CniError> {
    match env.command {
        Command::Add => add(env, conf).await,
        Command::Del => del(env, conf).await.map(|()| String::new()),
        Command::Check => check(env, conf).await.map(|()| String::new()),
        Command::Gc => gc(conf).await.map(|()| String::new()),
        Command::Status => status(conf).await.map(|()| String::new()),
        Command::Version => Ok(to_json(&VersionResult::new(conf.cni_version.clone()))),
    }
}

async fn connect(conf: &NetConf) -> Result<Agent, CniError> {
    Agent::connect(&conf.ipam.socket, conf.ipam.timeout).await
}

fn bad_answer(agent: &Agent, op: &'static str, message: String) -> CniError {
    CniError::Agent {
        socket: agent.socket().to_path_buf(),
        op,
        message: format!("invalid answer: {message}"),
    }
}

async fn add(env: &CniEnv, conf: &NetConf) -> Result<String, CniError> {
    let key = env.attachment()?;
    let netns = env.required_netns()?;
    let (pod_namespace, pod_name) = env.pod();
    let agent = connect(conf).await?;
    let resp = agent
        .allocate(pb::AllocateRequest {
            container_id: key.container_id.clone(),
            ifname: key.ifname.clone(),
            network: conf.name.clone(),
            pod_namespace: pod_namespace.unwrap_or_default(),
            pod_name: pod_name.unwrap_or_default(),
            netns,
        })
        .await?;
    let addrs = match result::check_addresses(&resp.addresses) {
        Ok(a) => a,
        Err(m) => {
            // Do not keep what the pod will never use; the runtime's DEL
            // would release it too, this just does not wait for it.
            let _ = agent
                .release(pb::ReleaseRequest {
                    container_id: key.container_id,
                    ifname: key.ifname,
                    network: conf.name.clone(),
                })
                .await;
            return Err(bad_answer(&agent, "Allocate", m));
        }
    };
    let r = result::ipam_result(
        &conf.cni_version,
        &addrs,
        conf.ipam.routes.as_deref(),
        conf.ipam.dns.as_ref(),
    );
    Ok(to_json(&r))
}

async fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let key = env.attachment()?;
    let agent = connect(conf).await?;
    agent
        .release(pb::ReleaseRequest {
            container_id: key.container_id,
            ifname: key.ifname,
            network: conf.name.clone(),
        })
        .await?;
    Ok(())
}

async fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let key = env.attachment()?;
    let agent = connect(conf).await?;
    let Some(alloc) = agent
        .check(pb::CheckRequest {
            container_id: key.container_id.clone(),
            ifname: key.ifname.clone(),
            network: conf.name.clone(),
        })
        .await?
    else {
        return Err(CniError::AllocationMismatch(format!(
            "no address is allocated to container {} interface {}",
            key.container_id, key.ifname
        )));
    };
    let addrs =
        result::check_addresses(&alloc.addresses).map_err(|m| bad_answer(&agent, "Check", m))?;
    let Some(prev) = &conf.prev_result else {
        return Ok(());
    };
    let prev_ips = result::prev_result_addresses(prev).map_err(CniError::Decode)?;
    for a in &addrs {
        if !prev_ips.contains(&a.address.addr()) {
            return Err(CniError::AllocationMismatch(format!(
                "container {} interface {} holds {} but prevResult does not list it",
                key.container_id,
                key.ifname,
                a.address.addr()
            )));
        }
    }
    Ok(())
}

async fn gc(conf: &NetConf) -> Result<(), CniError> {
    let keep = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::InvalidConfig(
            "GC without cni.dev/valid-attachments: refusing to release every allocation".into(),
        )
    })?;
    let agent = connect(conf).await?;
    agent
        .garbage_collect(pb::GarbageCollectRequest {
            network: conf.name.clone(),
            keep: keep
                .iter()
                .map(|k| pb::Attachment {
                    container_id: k.container_id.clone(),
                    ifname: k.ifname.clone(),
                })
                .collect(),
        })
        .await?;
    Ok(())
}

async fn status(conf: &NetConf) -> Result<(), CniError> {
    let not_available = |e: CniError| CniError::NotAvailable(e.to_string());
    let agent = connect(conf).await.map_err(not_available)?;
    let s = agent.status().await.map_err(not_available)?;
    if !s.ready {
        return Err(CniError::NotAvailable(format!(
            "petrel agent at {}: IPAM is not ready: {}",
            conf.ipam.socket.display(),
            if s.not_ready_reason.is_empty() {
                "no reason given"
            } else {
                &s.not_ready_reason
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
