//! Reading a directory of YAML manifests into a [`Snapshot`], collecting every
//! error with its file, document, object and field.

use super::Snapshot;
use super::error::{DatastoreError, ManifestError, ObjectRef, improve_serde_message};
use super::node::node_info;
use super::validate::{self, FieldError};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use petrel_crd::{
    API_VERSION, BFDProfile, BGPConfiguration, BGPFilter, BGPPeer, CALICO_API_VERSION, IPPool,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One manifest file, read into memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SourceFile {
    /// File name relative to the directory.
    pub name: String,
    pub content: String,
}

/// Whether a directory entry is a manifest: `*.yaml` / `*.yml`, not hidden.
/// Hidden entries include Kubernetes ConfigMap volumes' `..data` and
/// `..<timestamp>` directories and editors' swap files.
fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Reads every manifest of `dir` (not recursing), sorted by name. Files that
/// cannot be read become errors; a directory that cannot be listed is fatal.
pub(crate) fn read_dir_files(
    dir: &Path,
) -> Result<(Vec<SourceFile>, Vec<ManifestError>), DatastoreError> {
    let io_err = |e: std::io::Error| DatastoreError::Io {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_manifest_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        // Follows symlinks (ConfigMap volumes link each file into ..data/).
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => continue,
            _ => {}
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(content) => files.push(SourceFile { name, content }),
                Err(_) => errors.push(file_error(&name, "not valid UTF-8")),
            },
            Err(e) => errors.push(file_error(&name, format!("cannot read: {e}"))),
        }
    }
    Ok((files, errors))
}

fn file_error(file: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError {
        file: file.to_string(),
        document: None,
        object: None,
        field: None,
        reason: reason.into(),
    }
}

/// Where an object came from.
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    /// 1-based YAML document index; `None` for objects from an API.
    document: Option<usize>,
    object: ObjectRef,
}

impl Origin {
    fn error(&self, field: Option<String>, reason: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            document: self.document,
            object: Some(self.object.clone()),
            field,
            reason: reason.into(),
        }
    }
    fn field_errors(&self, errs: Vec<FieldError>) -> impl Iterator<Item = ManifestError> + '_ {
        errs.into_iter().map(|(f, r)| self.error(Some(f), r))
    }
}

enum Object {
    Config(Box<BGPConfiguration>),
    Peer(Box<BGPPeer>),
    Filter(Box<BGPFilter>),
    BfdProfile(Box<BFDProfile>),
    Node(Box<Node>),
    Secret(Box<Secret>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Pool(Box<IPPool>),
}

/// 1-based index of the document whose content starts on `line` (1-based):
/// counts the implicit first document and every `---` marker before the line.
fn document_index(content: &str, line: u64) -> usize {
    let mut count = 0usize;
    let mut seen_meaningful = false;
    for (i, l) in content.lines().enumerate() {
        if (i as u64) + 1 >= line {
            break;
        }
        let is_marker =
            l.starts_with("---") && l[3..].chars().next().is_none_or(char::is_whitespace);
        if is_marker {
            count += 1;
            seen_meaningful = true;
        } else if !seen_meaningful {
            let t = l.trim();
            if !(t.is_empty() || t.starts_with('#') || t.starts_with('%')) {
                // Content before any marker: an implicit first document.
                count += 1;
                seen_meaningful = true;
            }
        }
    }
    // Content on the marker's own line ("--- a: 1") belongs to that marker.
    let own = content
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("");
    if line > 0 && own.starts_with("--- ") {
        count += 1;
        seen_meaningful = true;
    }
    if !seen_meaningful {
        // The document starts on the first meaningful line with no marker.
        count = 1;
    }
    count.max(1)
}

/// Parses all files; collects every error. `errors` holds those found while reading.
pub(crate) fn parse_files(
    files: &[SourceFile],
    mut errors: Vec<ManifestError>,
) -> Result<Snapshot, DatastoreError> {
    let mut objects: Vec<(Origin, Object)> = Vec::new();
    for file in files {
        // YAML 1.2 booleans only: `name: n` or `key: y` stay strings (YAML 1.1
        // would read them as booleans); numbers with leading zeros or
        // underscores stay strings too.
        let options = serde_saphyr::options! {
            strict_booleans: true,
            leading_zero_numbers_as_strings: true,
            underscored_numbers_as_strings: true,
        };
        let docs: Vec<serde_saphyr::Spanned<Value>> =
            match serde_saphyr::from_str_multiple_with_options::<serde_saphyr::Spanned<Value>, Vec<_>>(
                &file.content,
                options,
            ) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(file_error(&file.name, format!("invalid YAML: {e}")));
                    continue;
                }
            };
        for doc in docs {
            let index = document_index(&file.content, doc.referenced.line());
            match parse_object(&file.name, Some(index), doc.value) {
                Ok(obj) => objects.push(obj),
                Err(e) => errors.extend(e),
            }
        }
    }
    let snapshot = check_and_assemble(objects, &mut errors, true);
    if errors.is_empty() {
        Ok(snapshot)
    } else {
        Err(DatastoreError::Invalid(errors))
    }
}

/// Validates objects that come from an API rather than from files (the
/// Kubernetes datastore): each value is a whole object as the API server
/// returns it, labelled with `source` in errors (for example `kubernetes`).
/// Unlike `parse_files`, invalid objects are left out of the snapshot and
/// returned with the errors, so one bad object does not hold back the rest;
/// the caller decides what to keep for them.
pub fn assemble_values(source: &str, values: Vec<Value>) -> (Snapshot, Vec<ManifestError>) {
    assemble_values_with(source, values, false)
}

/// [`assemble_values`]; with `references`, a peer's or the mesh's missing
/// Secret key or BGPFilter is an error of the object too.
pub(crate) fn assemble_values_with(
    source: &str,
    values: Vec<Value>,
    references: bool,
) -> (Snapshot, Vec<ManifestError>) {
    let mut errors = Vec::new();
    let mut objects = Vec::new();
    for value in values {
        match parse_object(source, None, value) {
            Ok(obj) => objects.push(obj),
            Err(e) => errors.extend(e),
        }
    }
    let mut snapshot = check_and_assemble(objects, &mut errors, references);
    let bad: std::collections::BTreeSet<(String, String)> = errors
        .iter()
        .filter_map(|e| e.object.as_ref())
        .map(|o| (o.kind.clone(), o.name.clone().unwrap_or_default()))
        .collect();
    let keep = |kind: &str, name: &Option<String>| {
        !bad.contains(&(kind.to_string(), name.clone().unwrap_or_default()))
    };
    if let Some(c) = &snapshot.bgp_configuration
        && !keep("BGPConfiguration", &c.metadata.name)
    {
        snapshot.bgp_configuration = None;
    }
    snapshot.peers.retain(|p| keep("BGPPeer", &p.metadata.name));
    snapshot
        .filters
        .retain(|f| keep("BGPFilter", &f.metadata.name));
    snapshot
        .bfd_profiles
        .retain(|f| keep("BFDProfile", &f.metadata.name));
    snapshot.nodes.retain(|n| keep("Node", &n.metadata.name));
    snapshot
        .ip_pools
        .retain(|p| keep("IPPool", &p.metadata.name));
    let namespaced = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        Some(format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or("")
        ))
    };
    snapshot
        .services
        .retain(|s| keep("Service", &namespaced(&s.metadata)));
    snapshot
        .endpoint_slices
        .retain(|s| keep("EndpointSlice", &namespaced(&s.metadata)));
    (snapshot, errors)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_object(
    file: &str,
    document: Option<usize>,
    mut value: Value,
) -> Result<(Origin, Object), Vec<ManifestError>> {
    let kind = str_field(&value, "kind").map(str::to_string);
    let name = value
        .get("metadata")
        .and_then(|m| str_field(m, "name"))
        .map(str::to_string);
    // Namespaced kinds are named namespace/name (so duplicates are per namespace).
    let namespaced = matches!(kind.as_deref(), Some("Service" | "EndpointSlice"));
    let namespace = value
        .get("metadata")
        .and_then(|m| str_field(m, "namespace"))
        .unwrap_or("default");
    let origin = Origin {
        file: file.to_string(),
        document,
        object: ObjectRef {
            kind: kind.clone().unwrap_or_else(|| "object".into()),
            name: match &name {
                Some(n) if namespaced => Some(format!("{namespace}/{n}")),
                _ => name.clone(),
            },
        },
    };
    let err = |field: &str, reason: String| vec![origin.error(Some(field.to_string()), reason)];
    if !value.is_object() {
        return Err(vec![ManifestError {
            file: file.to_string(),
            document,
            object: None,
            field: None,
            reason: "expected a Kubernetes object (a mapping with apiVersion, kind, metadata)"
                .into(),
        }]);
    }
    let Some(kind) = kind else {
        return Err(err("kind", "missing or not a string".into()));
    };
    let api_version = str_field(&value, "apiVersion").unwrap_or("").to_string();
    let ours = matches!(
        kind.as_str(),
        "BGPConfiguration" | "BGPPeer" | "BGPFilter" | "BFDProfile" | "IPPool"
    );
    let core = matches!(kind.as_str(), "Node" | "Secret" | "Service");
    let discovery = kind == "EndpointSlice";
    if !ours && !core && !discovery {
        return Err(err(
            "kind",
            format!(
                "unsupported kind {kind:?} (apiVersion {api_version:?}); expected BGPConfiguration, BGPPeer, BGPFilter, BFDProfile, IPPool ({API_VERSION}), Node, Secret, Service (v1) or EndpointSlice (discovery.k8s.io/v1)"
            ),
        ));
    }
    if discovery && api_version != "discovery.k8s.io/v1" {
        return Err(err(
            "apiVersion",
            format!("expected discovery.k8s.io/v1 for kind {kind}, found {api_version:?}"),
        ));
    }
    if ours && api_version == CALICO_API_VERSION {
        tracing::warn!(
            file,
            document,
            kind = kind.as_str(),
            name = name.as_deref().unwrap_or(""),
            "apiVersion {CALICO_API_VERSION} accepted as {API_VERSION}; change it to {API_VERSION}"
        );
    } else if ours && api_version != API_VERSION {
        return Err(err(
            "apiVersion",
            format!(
                "expected {API_VERSION} for kind {kind} (or {CALICO_API_VERSION}), found {api_version:?}"
            ),
        ));
    } else if core && api_version != "v1" {
        return Err(err(
            "apiVersion",
            format!("expected v1 for kind {kind}, found {api_version:?}"),
        ));
    }
    match &name {
        None => return Err(err("metadata.name", "missing or not a string".into())),
        Some(n) if n.is_empty() => return Err(err("metadata.name", "must not be empty".into())),
        _ => {}
    }
    if ours {
        // Kubernetes accepts objects without a spec for these kinds.
        if let Some(obj) = value.as_object_mut() {
            if obj.get("spec").is_none_or(Value::is_null) {
                obj.insert("spec".into(), Value::Object(Default::default()));
            }
            obj.insert("apiVersion".into(), Value::String(API_VERSION.into()));
        }
    }
    let deser_err = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        vec![origin.error(field, improve_serde_message(&e.inner().to_string()))]
    };
    let object = match kind.as_str() {
        "BGPConfiguration" => Object::Config(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "BGPPeer" => Object::Peer(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "BGPFilter" => Object::Filter(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "BFDProfile" => Object::BfdProfile(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "Node" => Object::Node(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "IPPool" => Object::Pool(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "Service" => Object::Service(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        "EndpointSlice" => Object::EndpointSlice(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
        _ => Object::Secret(Box::new(
            serde_path_to_error::deserialize(value).map_err(deser_err)?,
        )),
    };
    Ok((origin, object))
}

/// Per-object validation, duplicates and references between objects.
/// With `references` false (the Kubernetes datastore), a peer's or the mesh's
/// missing Secret key or BGPFilter is not an error of the object: resolution
/// keeps the peer's last resolved password and filters and reports it
/// ([`crate::resolve_with`]), so the session is not taken down.
fn check_and_assemble(
    objects: Vec<(Origin, Object)>,
    errors: &mut Vec<ManifestError>,
    references: bool,
) -> Snapshot {
    let mut seen: BTreeMap<(String, String), Origin> = BTreeMap::new();
    let mut snapshot = Snapshot::default();
    let mut peer_origins = Vec::new();
    let mut config_origin = None;
    let mut node_origins = Vec::new();
    let mut pool_origins = Vec::new();
    for (origin, obj) in objects {
        let key = (
            origin.object.kind.clone(),
            origin.object.name.clone().unwrap_or_default(),
        );
        if let Some(first) = seen.get(&key) {
            errors.push(origin.error(
                None,
                format!(
                    "duplicate {} {:?}: already defined in {}{}",
                    key.0,
                    key.1,
                    first.file,
                    first.document.map(|d| format!(" document {d}")).unwrap_or_default()
                ),
            ));
            continue;
        }
        seen.insert(key, origin.clone());
        match obj {
            Object::Config(c) => {
                if c.metadata.name.as_deref() != Some("default") {
                    errors.push(origin.error(
                        Some("metadata.name".into()),
                        "only the BGPConfiguration named \"default\" is supported (per-node configurations \
                         are not; use petrel.dev/* annotations on the Node)",
                    ));
                    continue;
                }
                errors.extend(origin.field_errors(validate::validate_config(&c.spec)));
                config_origin = Some(origin);
                snapshot.bgp_configuration = Some(*c);
            }
            Object::Peer(p) => {
                errors.extend(origin.field_errors(validate::validate_peer(&p.spec)));
                if p.spec.reachable_by.is_some() {
                    tracing::warn!(
                        file = origin.file.as_str(),
                        document = origin.document.unwrap_or(0),
                        peer = p.metadata.name.as_deref().unwrap_or(""),
                        "spec.reachableBy is accepted for Calico compatibility but ignored: \
                         add the static route to the peer yourself"
                    );
                }
                peer_origins.push(origin);
                snapshot.peers.push(*p);
            }
            Object::Filter(f) => {
                errors.extend(origin.field_errors(validate::validate_filter(&f.spec)));
                snapshot.filters.push(*f);
            }
            Object::BfdProfile(b) => {
                errors.extend(origin.field_errors(b.spec.validate()));
                snapshot.bfd_profiles.push(*b);
            }
            Object::Node(n) => {
                if let Err(errs) = node_info(&n) {
                    errors.extend(origin.field_errors(errs));
                }
                node_origins.push(origin);
                snapshot.nodes.push(*n);
            }
            Object::Secret(s) => snapshot.secrets.push(*s),
            Object::Pool(p) => {
                errors.extend(origin.field_errors(p.spec.validate()));
                pool_origins.push(origin);
                snapshot.ip_pools.push(*p);
            }
            Object::Service(s) => snapshot.services.push(*s),
            Object::EndpointSlice(s) => snapshot.endpoint_slices.push(*s),
        }
    }
    // References from peers: filters and secrets.
    let peer_refs = if references { &peer_origins[..] } else { &[] };
    let has_profile = |name: &str| {
        snapshot
            .bfd_profiles
            .iter()
            .any(|b| b.metadata.name.as_deref() == Some(name))
    };
    for (peer, origin) in snapshot.peers.iter().zip(peer_refs) {
        if let Some(b) = peer.spec.bfd_profile.as_deref()
            && !has_profile(b)
        {
            errors.push(origin.error(
                Some("spec.bfdProfile".into()),
                format!("BFDProfile {b:?} not found"),
            ));
        }
        for (i, f) in peer.spec.filters.iter().enumerate() {
            if !f.is_empty()
                && !snapshot
                    .filters
                    .iter()
                    .any(|x| x.metadata.name.as_deref() == Some(f.as_str()))
            {
                errors.push(origin.error(
                    Some(format!("spec.filters[{i}]")),
                    format!("BGPFilter {f:?} not found"),
                ));
            }
        }
        if let Some(sel) = peer
            .spec
            .password
            .as_ref()
            .and_then(|p| p.secret_key_ref.as_ref())
            && let Err(r) = validate::lookup_secret(&snapshot.secrets, sel)
        {
            errors.push(origin.error(Some("spec.password.secretKeyRef".into()), r));
        }
    }
    if let (Some(cfg), Some(origin), true) =
        (&snapshot.bgp_configuration, &config_origin, references)
        && let Some(sel) = cfg
            .spec
            .node_mesh_password
            .as_ref()
            .and_then(|p| p.secret_key_ref.as_ref())
        && let Err(r) = validate::lookup_secret(&snapshot.secrets, sel)
    {
        errors.push(origin.error(Some("spec.nodeMeshPassword.secretKeyRef".into()), r));
    }
    if let (Some(cfg), Some(origin), true) =
        (&snapshot.bgp_configuration, &config_origin, references)
        && let Some(b) = cfg.spec.node_mesh_bfd_profile.as_deref()
        && !has_profile(b)
    {
        errors.push(origin.error(
            Some("spec.nodeMeshBFDProfile".into()),
            format!("BFDProfile {b:?} not found"),
        ));
    }
    check_router_ids(&snapshot.nodes, &node_origins, errors);
    for overlap in petrel_crd::check_pool_overlaps(&snapshot.ip_pools) {
        if let Some(origin) = snapshot
            .ip_pools
            .iter()
            .zip(&pool_origins)
            .find(|(p, _)| p.metadata.name.as_deref() == Some(overlap.pool.as_str()))
            .map(|(_, o)| o)
        {
            errors.push(origin.error(Some("spec.cidr".into()), overlap.to_string()));
        }
    }
    snapshot
}

/// Two nodes with the same BGP identifier cannot peer (RFC 4271 §6.2) and
/// confuse route reflection; report every repeat.
fn check_router_ids(nodes: &[Node], origins: &[Origin], errors: &mut Vec<ManifestError>) {
    let mut ids: BTreeMap<std::net::Ipv4Addr, &str> = BTreeMap::new();
    for (node, origin) in nodes.iter().zip(origins) {
        let Ok(info) = node_info(node) else { continue };
        let Some(id) = info.router_id.or(info.ipv4.map(|n| n.addr())) else {
            continue;
        };
        let name = node.metadata.name.as_deref().unwrap_or("");
        if let Some(first) = ids.get(&id) {
            errors.push(origin.error(
                Some(format!("metadata.annotations[{:?}]", super::node::ANNOTATION_ROUTER_ID)),
                format!("router ID {id} is also used by node {first:?}; set a unique petrel.dev/router-id"),
            ));
        } else {
            ids.insert(id, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_indexes() {
        assert_eq!(document_index("a: 1\n", 1), 1);
        assert_eq!(document_index("a: 1\n---\nb: 2\n", 3), 2);
        assert_eq!(document_index("---\na: 1\n---\nb: 2\n", 2), 1);
        assert_eq!(document_index("---\na: 1\n---\nb: 2\n", 4), 2);
        assert_eq!(document_index("# c\n\n---\na: 1\n", 4), 1);
        assert_eq!(document_index("---\n---\na: 1\n", 3), 2);
        assert_eq!(document_index("# only comment\na: 1\n", 2), 1);
        assert_eq!(document_index("a: |\n  ---x\n---\nb: 1\n", 4), 2);
        assert_eq!(document_index("a: 1\n--- {b: 1}\n", 2), 2);
    }

    #[test]
    fn manifest_names() {
        assert!(is_manifest_name("peers.yaml"));
        assert!(is_manifest_name("peers.yml"));
        assert!(!is_manifest_name("..data"));
        assert!(!is_manifest_name(".peers.yaml.swp"));
        assert!(!is_manifest_name(".hidden.yaml"));
        assert!(!is_manifest_name("peers.yaml~"));
        assert!(!is_manifest_name("README.md"));
    }
}
