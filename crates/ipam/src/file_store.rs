//! [`IpamStore`] in a directory (the agent's `--ipam-dir`), safe for many
//! agents (processes) on one host sharing it.
//!
//! Layout: `ipamblocks/<name>.yaml` and `blockaffinities/<name>.yaml`, each a
//! whole `IPAMBlock` / `BlockAffinity` object whose `metadata.resourceVersion`
//! is its version; `.revision` holds the directory-wide revision counter that
//! versions come from (so a re-created object never reuses a version); `.lock`
//! is the lock file and `.lock.turnstile` orders who gets it.
//!
//! Every write takes an exclusive `flock(2)` on `.lock`, checks the stored
//! version, and writes with write → fsync → rename → fsync(directory), so a
//! crash leaves either the old or the new file, never a torn one. Reads of a
//! single file need no lock (rename is atomic); listings take a shared lock so
//! they see one consistent state. `flock(2)` does not queue: with many agents
//! listing every half second, shared holders overlap and a writer waiting for
//! the exclusive lock can starve (20 agents on a loaded host: some never got
//! to claim a block in 60 s). So every locker first takes `.lock.turnstile`
//! exclusively, only until it holds `.lock`: a waiting writer holds the
//! turnstile, new readers queue behind it, and the readers already in finish.
//! Blocking file work runs on tokio's blocking
//! pool. The objects are IPAM blocks (RFC 4632 prefixes) and block affinities
//! of Calico's block affinity model.

use super::store::{IpamStore, ObjectKind, StoreError, Stored, StoredAffinity, StoredBlock};
use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use petrel_crd::{
    BlockAffinity, BlockAffinitySpec, IPAMBlock, IpamBlockSpec, is_valid_object_name,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = ".lock";
/// Taken exclusively while waiting for [`LOCK_FILE`] (writer fairness).
const TURNSTILE_FILE: &str = ".lock.turnstile";
const REVISION_FILE: &str = ".revision";

/// The IPAM store in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

/// Mapping between a spec and the object written to its file.
trait FileKind {
    type Spec: Clone + Send + Sync + 'static;
    type Object: Serialize + DeserializeOwned;
    const KIND: ObjectKind;
    const SUBDIR: &'static str;
    fn to_object(name: &str, version: &str, spec: &Self::Spec) -> Self::Object;
    fn from_object(o: Self::Object) -> (Option<String>, Option<String>, Self::Spec);
}

struct Blocks;
struct Affinities;

impl FileKind for Blocks {
    type Spec = IpamBlockSpec;
    type Object = IPAMBlock;
    const KIND: ObjectKind = ObjectKind::Block;
    const SUBDIR: &'static str = "ipamblocks";
    fn to_object(name: &str, version: &str, spec: &IpamBlockSpec) -> IPAMBlock {
        let mut o = IPAMBlock::new(name, spec.clone());
        o.metadata.resource_version = Some(version.to_string());
        o
    }
    fn from_object(o: IPAMBlock) -> (Option<String>, Option<String>, IpamBlockSpec) {
        (o.metadata.name, o.metadata.resource_version, o.spec)
    }
}

impl FileKind for Affinities {
    type Spec = BlockAffinitySpec;
    type Object = BlockAffinity;
    const KIND: ObjectKind = ObjectKind::Affinity;
    const SUBDIR: &'static str = "blockaffinities";
    fn to_object(name: &str, version: &str, spec: &BlockAffinitySpec) -> BlockAffinity {
        let mut o = BlockAffinity::new(name, spec.clone());
        o.metadata.resource_version = Some(version.to_string());
        o
    }
    fn from_object(o: BlockAffinity) -> (Option<String>, Option<String>, BlockAffinitySpec) {
        (o.metadata.name, o.metadata.resource_version, o.spec)
    }
}

fn backend(context: String, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        context,
        source: Box::new(e),
    }
}

/// Writes `data` to `path` atomically and durably.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        for sub in [Blocks::SUBDIR, Affinities::SUBDIR] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| backend(format!("creating {}", d.display()), e))?;
        }
        Ok(FileStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn open_lock_file(&self, name: &str) -> Result<File, StoreError> {
        let path = self.dir.join(name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| backend(format!("opening {}", path.display()), e))
    }

    /// Takes `.lock` (`arg`: shared or exclusive), passing through the
    /// turnstile so that writers are not starved by overlapping readers.
    fn lock(&self, arg: FlockArg) -> Result<Flock<File>, StoreError> {
        let locked = |name: &str, file: File, arg| {
            Flock::lock(file, arg).map_err(|(_, errno)| {
                backend(format!("locking {}", self.dir.join(name).display()), errno)
            })
        };
        let turnstile = locked(
            TURNSTILE_FILE,
            self.open_lock_file(TURNSTILE_FILE)?,
            FlockArg::LockExclusive,
        )?;
        let lock = locked(LOCK_FILE, self.open_lock_file(LOCK_FILE)?, arg)?;
        drop(turnstile);
        Ok(lock)
    }

    /// Increments the directory's revision (under the exclusive lock).
    fn next_revision(&self) -> Result<String, StoreError> {
        let path = self.dir.join(REVISION_FILE);
        let current = match fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|e| backend(format!("{} is not a number", path.display()), e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(backend(format!("reading {}", path.display()), e)),
        };
        let next = current + 1;
        write_atomic(&path, format!("{next}\n").as_bytes())
            .map_err(|e| backend(format!("writing {}", path.display()), e))?;
        Ok(next.to_string())
    }

    fn path<K: FileKind>(&self, name: &str) -> Result<PathBuf, StoreError> {
        if !is_valid_object_name(name) {
            return Err(StoreError::Invalid {
                kind: K::KIND,
                name: name.to_string(),
                reason: "not a valid Kubernetes object name".into(),
            });
        }
        Ok(self.dir.join(K::SUBDIR).join(format!("{name}.yaml")))
    }

    fn read<K: FileKind>(&self, name: &str) -> Result<Option<Stored<K::Spec>>, StoreError> {
        let path = self.path::<K>(name)?;
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(backend(format!("reading {}", path.display()), e)),
        };
        let invalid = |reason: String| StoreError::Invalid {
            kind: K::KIND,
            name: name.to_string(),
            reason: format!("{}: {reason}", path.display()),
        };
        let object: K::Object =
            serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let (stored_name, version, spec) = K::from_object(object);
        if stored_name.as_deref() != Some(name) {
            return Err(invalid(format!(
                "metadata.name is {stored_name:?}, expected {name}"
            )));
        }
        let version = version
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid("metadata.resourceVersion is missing".into()))?;
        Ok(Some(Stored {
            name: name.to_string(),
            version,
            spec,
        }))
    }

    fn write<K: FileKind>(
        &self,
        name: &str,
        version: &str,
        spec: &K::Spec,
    ) -> Result<(), StoreError> {
        let path = self.path::<K>(name)?;
        let text = serde_saphyr::to_string(&K::to_object(name, version, spec)).map_err(|e| {
            StoreError::Invalid {
                kind: K::KIND,
                name: name.to_string(),
                reason: format!("cannot serialize: {e}"),
            }
        })?;
        write_atomic(&path, text.as_bytes())
            .map_err(|e| backend(format!("writing {}", path.display()), e))
    }

    fn list_sync<K: FileKind>(&self) -> Result<Vec<Stored<K::Spec>>, StoreError> {
        let _lock = self.lock(FlockArg::LockShared)?;
        let dir = self.dir.join(K::SUBDIR);
        let entries =
            fs::read_dir(&dir).map_err(|e| backend(format!("listing {}", dir.display()), e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| backend(format!("listing {}", dir.display()), e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".yaml")
                && !file.starts_with('.')
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(o) = self.read::<K>(&name)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    fn get_sync<K: FileKind>(&self, name: &str) -> Result<Option<Stored<K::Spec>>, StoreError> {
        self.read::<K>(name)
    }

    fn create_sync<K: FileKind>(
        &self,
        name: &str,
        spec: &K::Spec,
    ) -> Result<Stored<K::Spec>, StoreError> {
        let path = self.path::<K>(name)?;
        let _lock = self.lock(FlockArg::LockExclusive)?;
        if path.exists() {
            return Err(StoreError::AlreadyExists {
                kind: K::KIND,
                name: name.to_string(),
            });
        }
        let version = self.next_revision()?;
        self.write::<K>(name, &version, spec)?;
        Ok(Stored {
            name: name.to_string(),
            version,
            spec: spec.clone(),
        })
    }

    /// Checks the stored version under the exclusive lock.
    fn check_version<K: FileKind>(&self, name: &str, expected: &str) -> Result<(), StoreError> {
        match self.read::<K>(name)? {
            None => Err(StoreError::NotFound {
                kind: K::KIND,
                name: name.to_string(),
            }),
            Some(current) if current.version != expected => Err(StoreError::Conflict {
                kind: K::KIND,
                name: name.to_string(),
                expected: expected.to_string(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn update_sync<K: FileKind>(
        &self,
        name: &str,
        spec: &K::Spec,
        expected: &str,
    ) -> Result<Stored<K::Spec>, StoreError> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        self.check_version::<K>(name, expected)?;
        let version = self.next_revision()?;
        self.write::<K>(name, &version, spec)?;
        Ok(Stored {
            name: name.to_string(),
            version,
            spec: spec.clone(),
        })
    }

    fn delete_sync<K: FileKind>(&self, name: &str, expected: &str) -> Result<(), StoreError> {
        let path = self.path::<K>(name)?;
        let _lock = self.lock(FlockArg::LockExclusive)?;
        self.check_version::<K>(name, expected)?;
        // Bump the revision so that versions stay unique after a re-create.
        self.next_revision()?;
        fs::remove_file(&path).map_err(|e| backend(format!("removing {}", path.display()), e))?;
        let dir = self.dir.join(K::SUBDIR);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| backend(format!("syncing {}", dir.display()), e))
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(FileStore) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| backend("IPAM file store task".into(), e))?
    }
}

#[async_trait]
impl IpamStore for FileStore {
    async fn list_blocks(&self) -> Result<Vec<StoredBlock>, StoreError> {
        self.blocking(|s| s.list_sync::<Blocks>()).await
    }
    async fn get_block(&self, name: &str) -> Result<Option<StoredBlock>, StoreError> {
        let name = name.to_string();
        self.blocking(move |s| s.get_sync::<Blocks>(&name)).await
    }
    async fn create_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
    ) -> Result<StoredBlock, StoreError> {
        let (name, spec) = (name.to_string(), spec.clone());
        self.blocking(move |s| s.create_sync::<Blocks>(&name, &spec))
            .await
    }
    async fn update_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
        expected_version: &str,
    ) -> Result<StoredBlock, StoreError> {
        let (name, spec, v) = (name.to_string(), spec.clone(), expected_version.to_string());
        self.blocking(move |s| s.update_sync::<Blocks>(&name, &spec, &v))
            .await
    }
    async fn delete_block(&self, name: &str, expected_version: &str) -> Result<(), StoreError> {
        let (name, v) = (name.to_string(), expected_version.to_string());
        self.blocking(move |s| s.delete_sync::<Blocks>(&name, &v))
            .await
    }
    async fn list_affinities(&self) -> Result<Vec<StoredAffinity>, StoreError> {
        self.blocking(|s| s.list_sync::<Affinities>()).await
    }
    async fn get_affinity(&self, name: &str) -> Result<Option<StoredAffinity>, StoreError> {
        let name = name.to_string();
        self.blocking(move |s| s.get_sync::<Affinities>(&name))
            .await
    }
    async fn create_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
    ) -> Result<StoredAffinity, StoreError> {
        let (name, spec) = (name.to_string(), spec.clone());
        self.blocking(move |s| s.create_sync::<Affinities>(&name, &spec))
            .await
    }
    async fn update_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
        expected_version: &str,
    ) -> Result<StoredAffinity, StoreError> {
        let (name, spec, v) = (name.to_string(), spec.clone(), expected_version.to_string());
        self.blocking(move |s| s.update_sync::<Affinities>(&name, &spec, &v))
            .await
    }
    async fn delete_affinity(&self, name: &str, expected_version: &str) -> Result<(), StoreError> {
        let (name, v) = (name.to_string(), expected_version.to_string());
        self.blocking(move |s| s.delete_sync::<Affinities>(&name, &v))
            .await
    }
}

#[cfg(test)]
#[path = "file_store_tests.rs"]
mod tests;
