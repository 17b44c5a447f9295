//! Inputs of a CNI invocation: the `CNI_*` environment variables and the
//! network configuration on stdin (CNI spec 1.1.0 §1 "Network configuration
//! format" and §2 "Parameters"), with petrel-ipam's `ipam` section:
//!
//! ```json
//! "ipam": {
//!   "type": "petrel-ipam",
//!   "socket": "/run/petrel/petrel.sock",
//!   "routes": [{ "dst": "0.0.0.0/0" }],
//!   "dns": { "nameservers": ["10.96.0.10"] },
//!   "timeoutSeconds": 30
//! }
//! ```
//!
//! Only `socket` is required. Without `routes`, the result carries a default
//! route per allocated family via that family's gateway.

use super::error::CniError;
use super::{LATEST_VERSION, SUPPORTED_VERSIONS};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A CNI attachment: `(CNI_CONTAINERID, CNI_IFNAME)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

/// Default time the plugin waits for the agent, per request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    /// The name as in `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

/// The `CNI_*` environment of one invocation; which ones are required
/// depends on the command and is checked by the accessors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Option<String>,
}

impl CniEnv {
    /// Reads the environment through `get` (`std::env::var` in the binary).
    /// Empty variables count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let var = |n: &str| get(n).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(CniError::InvalidEnv {
                    name: "CNI_COMMAND",
                    reason: format!(
                        "unknown command {other:?} (ADD, DEL, CHECK, GC, STATUS or VERSION)"
                    ),
                });
            }
            None => {
                return Err(CniError::InvalidEnv {
                    name: "CNI_COMMAND",
                    reason: "not set: petrel-ipam is a CNI IPAM plugin, run by a CNI plugin \
                             such as ptp"
                        .into(),
                });
            }
        };
        Ok(CniEnv {
            command,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            path: var("CNI_PATH"),
        })
    }

    /// The attachment `(CNI_CONTAINERID, CNI_IFNAME)`, both required and
    /// validated as the spec says.
    pub fn attachment(&self) -> Result<AttachmentKey, CniError> {
        let container_id = self.container_id.clone().ok_or(CniError::InvalidEnv {
            name: "CNI_CONTAINERID",
            reason: "not set".into(),
        })?;
        validate_container_id(&container_id)?;
        let ifname = self.ifname.clone().ok_or(CniError::InvalidEnv {
            name: "CNI_IFNAME",
            reason: "not set".into(),
        })?;
        validate_ifname(&ifname)?;
        Ok(AttachmentKey {
            container_id,
            ifname,
        })
    }

    /// `CNI_NETNS`, required for ADD.
    pub fn required_netns(&self) -> Result<String, CniError> {
        self.netns.clone().ok_or(CniError::InvalidEnv {
            name: "CNI_NETNS",
            reason: "not set (required for ADD)".into(),
        })
    }

    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME` from `CNI_ARGS`.
    pub fn pod(&self) -> (Option<String>, Option<String>) {
        let Some(args) = &self.args else {
            return (None, None);
        };
        let (mut ns, mut name) = (None, None);
        // "FOO=BAR;ABC=123"; pairs without '=' carry nothing for us.
        for pair in args.split(';') {
            match pair.split_once('=') {
                Some(("K8S_POD_NAMESPACE", v)) if !v.is_empty() => ns = Some(v.to_string()),
                Some(("K8S_POD_NAME", v)) if !v.is_empty() => name = Some(v.to_string()),
                _ => {}
            }
        }
        (ns, name)
    }
}

/// CNI spec §2: starts with an alphanumeric character, then alphanumerics,
/// `_`, `.` or `-`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Ok(());
    }
    Err(CniError::InvalidEnv {
        name: "CNI_CONTAINERID",
        reason: format!(
            "{id:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
        ),
    })
}

/// A Linux interface name: 1-15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace (the kernel's `dev_valid_name`).
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        return Ok(());
    }
    Err(CniError::InvalidEnv {
        name: "CNI_IFNAME",
        reason: format!(
            "{name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)"
        ),
    })
}

/// A route to return, from the `routes` of the ipam section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConf {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// DNS settings (CNI spec §1 `dns`), passed through to the result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The `ipam` section for petrel-ipam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    /// The agent's API socket.
    pub socket: PathBuf,
    /// Routes to return instead of the default routes.
    pub routes: Option<Vec<RouteConf>>,
    pub dns: Option<Dns>,
    /// How long to wait for the agent, per request.
    pub timeout: Duration,
}

/// The request configuration (CNI spec §3 "Deriving request configuration"),
/// reduced to what petrel-ipam uses.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    /// Network name.
    pub name: String,
    pub ipam: IpamConf,
    /// The result of the previous ADD, for CHECK and DEL.
    pub prev_result: Option<Value>,
    /// GC: `cni.dev/valid-attachments`.
    pub valid_attachments: Option<Vec<AttachmentKey>>,
}

#[derive(Deserialize)]
struct RawNetConf {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default)]
    name: String,
    ipam: Option<serde_json::Map<String, Value>>,
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Deserialize)]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The `cniVersion` of `stdin`, if it is a JSON object with one; used to
/// answer VERSION and to label error results.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion")]
        cni_version: Option<String>,
    }
    serde_json::from_slice::<V>(stdin)
        .ok()
        .and_then(|v| v.cni_version)
        .filter(|v| !v.is_empty())
}

/// Checks that `version` is one petrel-ipam speaks.
pub fn check_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::IncompatibleVersion {
            version: version.to_string(),
        })
    }
}

/// Parses and validates the network configuration on stdin.
pub fn parse_netconf(stdin: &[u8]) -> Result<NetConf, CniError> {
    let raw: RawNetConf =
        serde_json::from_slice(stdin).map_err(|e| CniError::Decode(e.to_string()))?;
    // libcni treats a configuration without cniVersion as 0.1.0.
    let cni_version = raw.cni_version.unwrap_or_else(|| "0.1.0".into());
    check_version(&cni_version)?;
    let ipam = parse_ipam(
        raw.ipam
            .ok_or_else(|| CniError::InvalidConfig("no \"ipam\" section".into()))?,
    )?;
    let valid_attachments = raw
        .valid_attachments
        .map(|list| {
            list.into_iter()
                .map(|a| {
                    if a.container_id.is_empty() || a.ifname.is_empty() {
                        return Err(CniError::InvalidConfig(
                            "cni.dev/valid-attachments: containerID and ifname must not be empty"
                                .into(),
                        ));
                    }
                    Ok(AttachmentKey {
                        container_id: a.container_id,
                        ifname: a.ifname,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(NetConf {
        cni_version,
        name: raw.name,
        ipam,
        prev_result: raw.prev_result.filter(|v| !v.is_null()),
        valid_attachments,
    })
}

fn unsupported(key: &str, value: &Value) -> CniError {
    CniError::UnsupportedField {
        key: format!("ipam.{key}"),
        value: value.to_string(),
    }
}

fn parse_ipam(map: serde_json::Map<String, Value>) -> Result<IpamConf, CniError> {
    let mut socket = None;
    let mut routes = None;
    let mut dns = None;
    let mut timeout = DEFAULT_TIMEOUT;
    for (key, value) in &map {
        match key.as_str() {
            "type" => {}
            "socket" => {
                let s = value.as_str().ok_or_else(|| {
                    CniError::InvalidConfig(format!("ipam.socket must be a string, not {value}"))
                })?;
                let p = PathBuf::from(s);
                if !p.is_absolute() {
                    return Err(CniError::InvalidConfig(format!(
                        "ipam.socket {s:?} must be an absolute path to the agent's --api-socket"
                    )));
                }
                socket = Some(p);
            }
            "routes" => routes = Some(parse_routes(value)?),
            "dns" => {
                dns = Some(
                    serde_json::from_value::<Dns>(value.clone())
                        .map_err(|e| CniError::InvalidConfig(format!("ipam.dns: {e}")))?,
                )
            }
            "timeoutSeconds" => match value.as_u64() {
                Some(s) if (1..=3600).contains(&s) => timeout = Duration::from_secs(s),
                _ => {
                    return Err(CniError::InvalidConfig(format!(
                        "ipam.timeoutSeconds must be a number of seconds from 1 to 3600, not {value}"
                    )));
                }
            },
            _ => return Err(unsupported(key, value)),
        }
    }
    let socket = socket.ok_or_else(|| {
        CniError::InvalidConfig(
            "ipam.socket is missing: set it to the agent's --api-socket, e.g. \
             \"/run/petrel/petrel.sock\""
                .into(),
        )
    })?;
    Ok(IpamConf {
        socket,
        routes,
        dns,
        timeout,
    })
}

fn parse_routes(value: &Value) -> Result<Vec<RouteConf>, CniError> {
    let list = value.as_array().ok_or_else(|| {
        CniError::InvalidConfig(format!("ipam.routes must be a list, not {value}"))
    })?;
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let obj = r.as_object().ok_or_else(|| {
                CniError::InvalidConfig(format!("ipam.routes[{i}] must be an object, not {r}"))
            })?;
            let mut dst = None;
            let mut gw = None;
            for (k, v) in obj {
                let s = v.as_str().ok_or_else(|| {
                    CniError::InvalidConfig(format!("ipam.routes[{i}].{k} must be a string"))
                })?;
                match k.as_str() {
                    "dst" => {
                        dst = Some(s.parse::<IpNet>().map_err(|_| {
                            CniError::InvalidConfig(format!(
                                "ipam.routes[{i}].dst {s:?} is not a prefix such as 0.0.0.0/0"
                            ))
                        })?)
                    }
                    "gw" => {
                        gw = Some(s.parse::<IpAddr>().map_err(|_| {
                            CniError::InvalidConfig(format!(
                                "ipam.routes[{i}].gw {s:?} is not an IP address"
                            ))
                        })?)
                    }
                    _ => return Err(unsupported(&format!("routes[{i}].{k}"), v)),
                }
            }
            let dst = dst.ok_or_else(|| {
                CniError::InvalidConfig(format!("ipam.routes[{i}] has no \"dst\""))
            })?;
            if gw.is_some_and(|g| g.is_ipv4() != dst.addr().is_ipv4()) {
                return Err(CniError::InvalidConfig(format!(
                    "ipam.routes[{i}]: gw and dst are of different address families"
                )));
            }
            Ok(RouteConf { dst, gw })
        })
        .collect()
}

/// The version to label output with: the configuration's when readable.
pub fn output_version(stdin: &[u8]) -> String {
    peek_version(stdin).unwrap_or_else(|| LATEST_VERSION.to_string())
}
