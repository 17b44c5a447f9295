//! The local cache of the last published configuration, so that a node can
//! start with its last good configuration while the API server is down.
//!
//! The file is JSON: `{"version": 1, "node": "<node>", "objects": [...]}`,
//! the objects exactly as they were assembled into the published snapshot
//! (BGP passwords included, so the file is written with mode 0600). It is
//! replaced atomically: written to a temporary file in the same directory,
//! fsynced, renamed over the old file, and the directory fsynced.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version of the cache file.
const CACHE_VERSION: u32 = 1;

/// Why the cache could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache file {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("cache file {}: not a petrel cache: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("cache file {}: format version {found}, expected {CACHE_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    node: String,
    objects: Vec<Value>,
}

/// Writes `objects` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write(path: &Path, node: &str, objects: &[Value]) -> Result<(), CacheError> {
    let io = |e: std::io::Error| CacheError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let body = serde_json::to_vec(&CacheFile {
        version: CACHE_VERSION,
        node: node.to_string(),
        objects: objects.to_vec(),
    })
    .map_err(|e| CacheError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Reads the objects of a cache file written by [`write()`]. `Ok(None)` when
/// the file does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<Value>>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CacheError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    #[derive(Deserialize)]
    struct Header {
        version: u32,
    }
    let format = |e: serde_json::Error| CacheError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(format)?;
    if header.version != CACHE_VERSION {
        return Err(CacheError::Version {
            path: path.to_path_buf(),
            found: header.version,
        });
    }
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(format)?;
    Ok(Some(file.objects))
}
