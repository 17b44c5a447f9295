//! Errors of the datastore: every problem names the file, the document, the
//! object and the field it was found in.

use std::fmt;
use std::path::PathBuf;

/// The object an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub name: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{} {n:?}", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

/// One problem in the manifests.
///
/// Displayed as `peers.yaml: document 2 (BGPPeer "tor1"): spec.asNumber: reason`,
/// leaving out the parts that are not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// File name, relative to the datastore directory.
    pub file: String,
    /// 1-based index of the YAML document in the file (empty documents count).
    pub document: Option<usize>,
    pub object: Option<ObjectRef>,
    /// Field path such as `spec.peerIP` or `spec.exportV4[0].cidr`.
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(o) = &self.object {
            if self.document.is_some() {
                write!(f, " ({o})")?;
            } else {
                write!(f, ": {o}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why the datastore could not produce a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatastoreError {
    /// The directory itself could not be read.
    #[error("cannot read datastore directory {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    /// The manifests have problems; all of those found are listed.
    #[error("{}", list(.0))]
    Invalid(Vec<ManifestError>),
    /// The manifests are valid but this node's configuration cannot be derived.
    #[error("cannot resolve the configuration of node {node:?}: {reason}")]
    Resolve { node: String, reason: String },
}

fn list(errors: &[ManifestError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{} errors in the manifests:", many.len());
            for e in many {
                s.push_str("\n  ");
                s.push_str(&e.to_string());
            }
            s
        }
    }
}

impl DatastoreError {
    /// The individual manifest errors (empty for other kinds of error).
    pub fn manifest_errors(&self) -> &[ManifestError] {
        match self {
            DatastoreError::Invalid(v) => v,
            _ => &[],
        }
    }
}

/// Makes serde's "unknown field" messages shorter and suggests the field the
/// user probably meant (`peerIp` → `peerIP`).
pub(crate) fn improve_serde_message(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((field, expected)) = rest.split_once("`, expected one of ") else {
        return msg.to_string();
    };
    let candidates: Vec<&str> = expected.split(", ").map(|c| c.trim_matches('`')).collect();
    let best = candidates
        .iter()
        .map(|c| {
            (
                edit_distance(&field.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                *c,
            )
        })
        .min();
    match best {
        Some((d, c)) if d <= 2 => format!("unknown field `{field}` (did you mean `{c}`?)"),
        _ => msg.to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let mut e = ManifestError {
            file: "peers.yaml".into(),
            document: Some(2),
            object: Some(ObjectRef {
                kind: "BGPPeer".into(),
                name: Some("tor1".into()),
            }),
            field: Some("spec.asNumber".into()),
            reason: "invalid type: string \"x\", expected u32".into(),
        };
        assert_eq!(
            e.to_string(),
            "peers.yaml: document 2 (BGPPeer \"tor1\"): spec.asNumber: invalid type: string \"x\", expected u32"
        );
        e.field = None;
        e.object = None;
        assert_eq!(
            e.to_string(),
            "peers.yaml: document 2: invalid type: string \"x\", expected u32"
        );
        e.document = None;
        e.object = Some(ObjectRef {
            kind: "Secret".into(),
            name: None,
        });
        assert_eq!(
            e.to_string(),
            "peers.yaml: Secret: invalid type: string \"x\", expected u32"
        );
        let two = DatastoreError::Invalid(vec![e.clone(), e.clone()]);
        assert!(
            two.to_string()
                .starts_with("2 errors in the manifests:\n  peers.yaml: Secret:")
        );
        assert_eq!(
            DatastoreError::Invalid(vec![e.clone()]).to_string(),
            e.to_string()
        );
        assert_eq!(two.manifest_errors().len(), 2);
    }

    #[test]
    fn suggests_fields() {
        assert_eq!(
            improve_serde_message(
                "unknown field `peerIp`, expected one of `node`, `peerIP`, `asNumber`"
            ),
            "unknown field `peerIp` (did you mean `peerIP`?)"
        );
        let far = "unknown field `zzzzzzzz`, expected one of `node`, `peerIP`";
        assert_eq!(improve_serde_message(far), far);
        assert_eq!(improve_serde_message("other"), "other");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
