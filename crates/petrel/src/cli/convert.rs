//! `petrel convert-calico`: turns Calico `projectcalico.org/v3` manifests
//! (BGPPeer, BGPConfiguration, BGPFilter, IPPool) into `petrel.dev/v1`
//! manifests.
//!
//! The field lists are not repeated here: every object is deserialized into
//! petrel's own typed resources ([`petrel_crd`]), which reject unknown fields,
//! and each field they reject is removed with a warning, then the typed object
//! is printed. On top of that come the few Calico fields the types accept but
//! the datastore rejects or ignores (see `datastore/validate.rs`); a unit test
//! checks that the datastore really does reject the ones removed here.
//! Related RFCs: none directly (configuration translation); the fields carry
//! RFC 4271 / RFC 2385 / RFC 5082 / RFC 1997 settings unchanged.

use petrel_crd::{
    API_VERSION, AssignmentMode, BGPConfiguration, BGPFilter, BGPPeer, CALICO_API_VERSION,
    EncapsulationMode, IPPool, SecretKeySelector,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Result of a conversion: the petrel manifests and one warning per field or
/// object that could not be carried over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversion {
    /// `petrel.dev/v1` documents separated by `---`.
    pub yaml: String,
    /// One line each, naming the file and line, object and field.
    pub warnings: Vec<String>,
    /// Number of objects written to `yaml`.
    pub objects: usize,
}

/// Input that cannot be converted at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{file}: invalid YAML: {reason}")]
    Yaml { file: String, reason: String },
    #[error("{file}: cannot encode {kind} {name:?} as YAML: {reason}")]
    Encode {
        file: String,
        kind: String,
        name: String,
        reason: String,
    },
}

/// Metadata kept in the output; the rest (resourceVersion, uid,
/// creationTimestamp, managedFields, namespace, ...) is set by the API server
/// of the old cluster and must not be applied to a new one.
const KEPT_METADATA: [&str; 3] = ["name", "labels", "annotations"];

/// Annotations of the old cluster's own bookkeeping, not carried over:
/// Calico's API server keeps the v3 object's metadata in this one.
const DROPPED_ANNOTATIONS: [&str; 1] = ["projectcalico.org/metadata"];

/// The Secrets the shipped `manifests/rbac.yaml` lets the agent read (Role
/// petrel-secrets, `resourceNames`); a unit test keeps the two in step.
pub(crate) const RBAC_SECRET_NAMES: [&str; 1] = ["bgp-passwords"];

/// Most fields removed from one object before giving up on it.
const MAX_REMOVALS: usize = 64;

/// Converts the documents of `inputs` (file name, content), in order.
pub fn convert_calico(inputs: &[(String, String)]) -> Result<Conversion, ConvertError> {
    let mut out = Conversion::default();
    for (file, content) in inputs {
        let options = serde_saphyr::options! {
            strict_booleans: true,
            leading_zero_numbers_as_strings: true,
            underscored_numbers_as_strings: true,
        };
        let docs: Vec<serde_saphyr::Spanned<Value>> =
            serde_saphyr::from_str_multiple_with_options(content, options).map_err(|e| {
                ConvertError::Yaml {
                    file: file.clone(),
                    reason: e.to_string().lines().next().unwrap_or_default().to_string(),
                }
            })?;
        for doc in docs {
            if doc.value.is_null() {
                continue;
            }
            // `file:line` of the document's first line, as compilers do.
            let at = format!("{file}:{}", doc.referenced.line());
            let doc = doc.value;
            if let Some(yaml) = convert_object(file, &at, doc, &mut out.warnings)? {
                if out.objects > 0 {
                    out.yaml.push_str("---\n");
                }
                out.yaml.push_str(&yaml);
                out.objects += 1;
            }
        }
    }
    Ok(out)
}

/// One document of `file`: `Ok(None)` when it is skipped (with a warning).
fn convert_object(
    file: &str,
    at: &str,
    doc: Value,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, ConvertError> {
    let Value::Object(mut obj) = doc else {
        warnings.push(format!(
            "{at}: not a Kubernetes object (expected a mapping with apiVersion, kind, metadata); skipped"
        ));
        return Ok(None);
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = kind.to_string();
    let at = format!("{at}: {kind} {name:?}");
    match kind.as_str() {
        "BGPPeer" | "BGPConfiguration" | "BGPFilter" | "IPPool" => {}
        "" => {
            warnings.push(format!("{at}: no kind; skipped"));
            return Ok(None);
        }
        _ => {
            warnings.push(format!(
                "{at}: skipped: only BGPPeer, BGPConfiguration, BGPFilter and IPPool are converted"
            ));
            return Ok(None);
        }
    }
    if api_version != CALICO_API_VERSION && api_version != API_VERSION {
        warnings.push(format!(
            "{at}: skipped: apiVersion {api_version:?} is neither {CALICO_API_VERSION} nor {API_VERSION}"
        ));
        return Ok(None);
    }
    if name.is_empty() {
        warnings.push(format!("{at}: skipped: metadata.name is missing"));
        return Ok(None);
    }
    if kind == "BGPConfiguration" && name != "default" {
        warnings.push(format!(
            "{at}: skipped: only the BGPConfiguration named \"default\" is supported (per-node settings \
             go in petrel.dev/* annotations on the Node)"
        ));
        return Ok(None);
    }
    // Keep only what a new cluster should get.
    let mut metadata = Map::new();
    if let Some(Value::Object(m)) = obj.remove("metadata") {
        for (k, v) in m {
            if KEPT_METADATA.contains(&k.as_str()) && !v.is_null() {
                metadata.insert(k, v);
            }
        }
    }
    if let Some(Value::Object(a)) = metadata.get_mut("annotations") {
        a.retain(|k, _| !DROPPED_ANNOTATIONS.contains(&k.as_str()));
        if a.is_empty() {
            metadata.remove("annotations");
        }
    }
    let spec = match obj.remove("spec") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(s) => s,
    };
    let mut value = Value::Object(Map::from_iter([
        ("apiVersion".to_string(), Value::String(API_VERSION.into())),
        ("kind".to_string(), Value::String(kind.clone())),
        ("metadata".to_string(), Value::Object(metadata)),
        ("spec".to_string(), spec),
    ]));
    let encoded = match kind.as_str() {
        "BGPPeer" => typed::<BGPPeer>(&at, &mut value, warnings).map(|mut p| {
            peer_semantics(&at, &mut p, warnings);
            encode(&p)
        }),
        "BGPConfiguration" => typed::<BGPConfiguration>(&at, &mut value, warnings).map(|mut c| {
            config_semantics(&at, &mut c, warnings);
            encode(&c)
        }),
        "IPPool" => typed::<IPPool>(&at, &mut value, warnings)
            .and_then(|p| pool_semantics(&at, p, warnings))
            .map(|p| encode(&p)),
        _ => typed::<BGPFilter>(&at, &mut value, warnings).map(|f| encode(&f)),
    };
    match encoded {
        None => Ok(None),
        Some(Ok(yaml)) => Ok(Some(yaml)),
        Some(Err(reason)) => Err(ConvertError::Encode {
            file: file.to_string(),
            kind,
            name,
            reason,
        }),
    }
}

fn encode<T: Serialize>(v: &T) -> Result<String, String> {
    serde_saphyr::to_string(v).map_err(|e| e.to_string())
}

/// Deserializes `value`, removing each field the type rejects (with a
/// warning) until it fits; `None` (with a warning) when it cannot.
fn typed<T: DeserializeOwned>(
    at: &str,
    value: &mut Value,
    warnings: &mut Vec<String>,
) -> Option<T> {
    for _ in 0..MAX_REMOVALS {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let msg = err.inner().to_string();
        let mut path: Vec<String> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let (reason, removable) = match unknown_field(&msg) {
            Some(field) => {
                // serde_path_to_error usually ends the path with the field already.
                if path.last().map(String::as_str) != Some(field) {
                    path.push(field.to_string());
                }
                ("not supported by petrel".to_string(), true)
            }
            // A missing required field, or a bad element of a list (dropping
            // a filter rule would change what the filter does).
            None => (
                format!("{msg}; not accepted by petrel"),
                !msg.starts_with("missing field")
                    && path.last().is_some_and(|p| p.parse::<usize>().is_err()),
            ),
        };
        let shown = display_path(&path);
        if !removable || path.len() < 2 || !remove_at(value, &path) {
            // A required field or the object itself: nothing sensible to drop.
            warnings.push(format!("{at}: {shown}: {reason}; object skipped"));
            return None;
        }
        warnings.push(format!("{at}: {shown}: {reason}; removed"));
    }
    warnings.push(format!(
        "{at}: more than {MAX_REMOVALS} unsupported fields; object skipped"
    ));
    None
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("unknown field `")?
        .split_once('`')
        .map(|(f, _)| f)
}

/// `spec.filters[0]` style, as the datastore reports fields.
fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            s.push_str(&format!("[{p}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(p);
        }
    }
    if s.is_empty() { ".".into() } else { s }
}

fn remove_at(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for p in parents {
        let next = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match cur {
        Value::Object(m) => m.remove(last).is_some(),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Calico BGPPeer fields the type accepts but petrel rejects or ignores.
fn peer_semantics(at: &str, p: &mut BGPPeer, warnings: &mut Vec<String>) {
    if p.spec.local_workload_selector.take().is_some() {
        warnings.push(format!(
            "{at}: spec.localWorkloadSelector: peering with local workloads is not supported by petrel; removed"
        ));
    }
    if p.spec.reachable_by.is_some() {
        warnings.push(format!(
            "{at}: spec.reachableBy: accepted but ignored by petrel (add the static route to the peer yourself); kept"
        ));
    }
    let secret = p
        .spec
        .password
        .as_ref()
        .and_then(|p| p.secret_key_ref.as_ref());
    secret_rbac(at, "spec.password.secretKeyRef", secret, warnings);
}

/// Warns when the agent may not read the Secret `sel` names with the shipped
/// RBAC (it would leave the peer out, as forbidden).
fn secret_rbac(at: &str, field: &str, sel: Option<&SecretKeySelector>, warnings: &mut Vec<String>) {
    let Some(sel) = sel else { return };
    if !RBAC_SECRET_NAMES.contains(&sel.name.as_str()) {
        warnings.push(format!(
            "{at}: {field}: Secret {:?} is not one the shipped manifests/rbac.yaml lets the agent read \
             (Role petrel-secrets lists {}): add it to that Role's resourceNames, and create the Secret \
             in petrel's namespace (petrel-system); kept",
            sel.name,
            RBAC_SECRET_NAMES.map(|n| format!("{n:?}")).join(", ")
        ));
    }
}

/// Calico BGPConfiguration fields the type accepts but petrel rejects or ignores.
fn config_semantics(at: &str, c: &mut BGPConfiguration, warnings: &mut Vec<String>) {
    if c.spec.log_severity_screen.is_some() {
        warnings.push(format!(
            "{at}: spec.logSeverityScreen: accepted but ignored by petrel (set RUST_LOG instead); kept"
        ));
    }
    // The CRD rejects the mesh's settings with the mesh disabled (Calico
    // ignores them).
    if c.spec.node_to_node_mesh_enabled == Some(false) {
        if c.spec.node_mesh_max_restart_time.take().is_some() {
            warnings.push(format!(
                "{at}: spec.nodeMeshMaxRestartTime: cannot be set when nodeToNodeMeshEnabled is false \
                 (the CRD rejects it); removed"
            ));
        }
        if c.spec.node_mesh_password.take().is_some() {
            warnings.push(format!(
                "{at}: spec.nodeMeshPassword: cannot be set when nodeToNodeMeshEnabled is false \
                 (the CRD rejects it); removed"
            ));
        }
    }
    let secret = c
        .spec
        .node_mesh_password
        .as_ref()
        .and_then(|p| p.secret_key_ref.as_ref());
    secret_rbac(at, "spec.nodeMeshPassword.secretKeyRef", secret, warnings);
}

/// Calico IPPool fields petrel's datastore rejects: encapsulation and NAT
/// (petrel routes pod addresses natively), per-namespace pools. `None` (with
/// a warning) when the pool would still be rejected.
fn pool_semantics(at: &str, mut p: IPPool, warnings: &mut Vec<String>) -> Option<IPPool> {
    for (field, mode) in [
        ("spec.ipipMode", &mut p.spec.ipip_mode),
        ("spec.vxlanMode", &mut p.spec.vxlan_mode),
    ] {
        if let Some(m) = *mode
            && m != EncapsulationMode::Never
        {
            *mode = None;
            warnings.push(format!(
                "{at}: {field}: {m}: petrel does not encapsulate; pod addresses are routed natively, so \
                 the network between the nodes must route them (peer the routers with petrel); removed"
            ));
        }
    }
    if p.spec.nat_outgoing {
        p.spec.nat_outgoing = false;
        warnings.push(format!(
            "{at}: spec.natOutgoing: true: petrel does not NAT; pod addresses must be reachable from \
             outside (or NAT them at the edge); removed"
        ));
    }
    if let Some(s) = p.spec.namespace_selector.as_deref()
        && !matches!(s.trim(), "" | "all()")
    {
        warnings.push(format!(
            "{at}: spec.namespaceSelector: {s:?}: petrel chooses pools per node only; removed (the pool \
             serves every namespace)"
        ));
        p.spec.namespace_selector = None;
    }
    if p.spec.assignment_mode == Some(AssignmentMode::Manual) {
        warnings.push(format!(
            "{at}: spec.assignmentMode: Manual is not supported (petrel would hand out its addresses \
             automatically); object skipped"
        ));
        return None;
    }
    let errors = p.spec.validate();
    if errors.is_empty() {
        return Some(p);
    }
    for (field, reason) in errors {
        warnings.push(format!("{at}: {field}: {reason}; object skipped"));
    }
    None
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
