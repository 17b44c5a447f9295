//! [`IpamStore`] in a directory (the agent's `--ipam-dir`), safe for many
//! agents (processes) on one host sharing it.
//!
//! Layout: `ipamblocks/<name>.yaml` and `blockaffinities/<name>.yaml`, each a
//! whole `IPAMBlock` / `BlockAffinity` object whose `metadata.resourceVersion`
//! is its version; `.revision` holds the directory-wide revision that
//! versions come from (the wall clock in microseconds, strictly increasing,
//! so a re-created object never reuses a version); `.lock` is the lock file
//! and `.lock.turnstile` orders who gets it.
//!
//! Every write takes an exclusive `flock(2)` on `.lock`, checks the stored
//! version, and writes with write → fsync → rename → fsync(directory), so a
//! crash leaves either the old or the new file, never a torn one. Reads of a
//! single file need no lock (rename is atomic); listings take a shared lock
//! while they read the names, so that no file being replaced is missed, and
//! parse the files after releasing it. `flock(2)` does not queue: with many agents
//! listing every half second, shared holders overlap and a writer waiting for
//! the exclusive lock can starve (20 agents on a loaded host: some never got
//! to claim a block in 60 s). So every locker first takes `.lock.turnstile`
//! exclusively, only until it holds `.lock`: a waiting writer holds the
//! turnstile, new readers queue behind it, and the readers already in finish.
//!
//! Nothing waits for a lock without bound: locks are polled (non-blocking
//! `flock`, a short growing pause with jitter), a wait longer than 5 s is
//! logged, and one longer than the lock timeout ([`DEFAULT_LOCK_TIMEOUT`]) is
//! a [`StoreError::Backend`] naming the lock, which the caller logs and
//! retries. Listing stays cheap at scale (200 agents each listing 400 blocks
//! every half second overloaded two cores and starved the writers): a listing
//! parses only the files whose inode, size or modification time changed
//! since this store's previous listing, and [`IpamStore::revision`] (the
//! directory's revision counter) lets an idle agent skip the listing
//! altogether. Blocking file work runs on tokio's blocking
//! pool. The objects are IPAM blocks (RFC 4632 prefixes) and block affinities
//! of Calico's block affinity model.

use super::store::{IpamStore, ObjectKind, StoreError, Stored, StoredAffinity, StoredBlock};
use async_trait::async_trait;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use petrel_crd::{
    BlockAffinity, BlockAffinitySpec, IPAMBlock, IpamBlockSpec, is_valid_object_name,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

const LOCK_FILE: &str = ".lock";
/// Taken exclusively while waiting for [`LOCK_FILE`] (writer fairness).
const TURNSTILE_FILE: &str = ".lock.turnstile";
const REVISION_FILE: &str = ".revision";

/// How long a store operation waits for the lock before failing.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// A wait for the lock is logged every this long.
const LOCK_WAIT_REPORT: Duration = Duration::from_secs(5);
/// Longest pause between two tries of the lock.
const LOCK_POLL_MAX: Duration = Duration::from_millis(10);

/// The IPAM store in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    lock_timeout: Duration,
    /// Objects parsed by earlier listings (shared by the clones of this
    /// store, i.e. by one agent).
    cache: Arc<Mutex<ListCache>>,
}

/// What identifies one version of a file without reading it: every write
/// renames a new file into place (a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn of(m: &fs::Metadata) -> FileId {
        FileId {
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// Parsed files of one kind, by object name.
#[derive(Debug)]
struct KindCache<S> {
    files: HashMap<String, (FileId, Stored<S>)>,
}

impl<S> Default for KindCache<S> {
    fn default() -> Self {
        KindCache {
            files: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct ListCache {
    blocks: KindCache<IpamBlockSpec>,
    affinities: KindCache<BlockAffinitySpec>,
}

/// The lock was not free within the store's lock timeout.
#[derive(Debug, thiserror::Error)]
#[error("not acquired within {waited:?} (another agent holds it)")]
pub struct LockTimeout {
    pub waited: Duration,
}

/// Mapping between a spec and the object written to its file.
trait FileKind {
    type Spec: Clone + Send + Sync + 'static;
    type Object: Serialize + DeserializeOwned;
    const KIND: ObjectKind;
    const SUBDIR: &'static str;
    fn to_object(name: &str, version: &str, spec: &Self::Spec) -> Self::Object;
    fn from_object(o: Self::Object) -> (Option<String>, Option<String>, Self::Spec);
    fn cache(c: &mut ListCache) -> &mut KindCache<Self::Spec>;
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
    fn cache(c: &mut ListCache) -> &mut KindCache<IpamBlockSpec> {
        &mut c.blocks
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
    fn cache(c: &mut ListCache) -> &mut KindCache<BlockAffinitySpec> {
        &mut c.affinities
    }
}

fn backend(context: String, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        context,
        source: Box::new(e),
    }
}

/// Writes `data` to `path` atomically, and durably if `durable` (fsync of
/// the file before the rename and of the directory after it).
fn write_atomic(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
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
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        for sub in [Blocks::SUBDIR, Affinities::SUBDIR] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| backend(format!("creating {}", d.display()), e))?;
        }
        Ok(FileStore {
            dir,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            cache: Arc::default(),
        })
    }

    /// Sets how long an operation waits for the lock before it fails
    /// (default [`DEFAULT_LOCK_TIMEOUT`]).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> FileStore {
        self.lock_timeout = timeout;
        self
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

    /// Takes `.lock` (shared or exclusive), passing through the turnstile so
    /// that writers are not starved by overlapping readers. Fails after the
    /// lock timeout.
    fn lock(&self, shared: bool) -> Result<Flock<File>, StoreError> {
        let start = Instant::now();
        let deadline = start + self.lock_timeout;
        let turnstile = self.flock_until(
            TURNSTILE_FILE,
            FlockArg::LockExclusiveNonblock,
            start,
            deadline,
        )?;
        let arg = if shared {
            FlockArg::LockSharedNonblock
        } else {
            FlockArg::LockExclusiveNonblock
        };
        let lock = self.flock_until(LOCK_FILE, arg, start, deadline)?;
        drop(turnstile);
        Ok(lock)
    }

    /// Tries the non-blocking lock `arg` on `name` until `deadline`, with a
    /// growing pause (and jitter, so that waiters do not retry in step).
    fn flock_until(
        &self,
        name: &str,
        arg: FlockArg,
        start: Instant,
        deadline: Instant,
    ) -> Result<Flock<File>, StoreError> {
        let path = self.dir.join(name);
        let mut file = self.open_lock_file(name)?;
        let mut pause = Duration::from_micros(200);
        let mut next_report = start + LOCK_WAIT_REPORT;
        loop {
            match Flock::lock(file, arg) {
                Ok(lock) => return Ok(lock),
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(backend(format!("locking {}", path.display()), errno));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(backend(
                    format!("locking {}", path.display()),
                    LockTimeout {
                        waited: now.saturating_duration_since(start),
                    },
                ));
            }
            if now >= next_report {
                warn!(lock = %path.display(), waited = ?now.saturating_duration_since(start),
                    "still waiting for the IPAM store lock (another agent holds it)");
                next_report += LOCK_WAIT_REPORT;
            }
            let jitter = rand::random_range(0..=pause.as_micros() as u64 / 2);
            let sleep = (pause + Duration::from_micros(jitter)).min(deadline - now);
            std::thread::sleep(sleep);
            pause = (pause * 2).min(LOCK_POLL_MAX);
        }
    }

    /// The directory's revision counter (0 before the first write).
    fn read_revision(&self) -> Result<u64, StoreError> {
        let path = self.dir.join(REVISION_FILE);
        match fs::read_to_string(&path) {
            // Empty after a crash (it is written without fsync): the clock
            // gives the next revision.
            Ok(s) if s.trim().is_empty() => Ok(0),
            Ok(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|e| backend(format!("{} is not a number", path.display()), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(backend(format!("reading {}", path.display()), e)),
        }
    }

    /// A token that changes with every write through any store on this
    /// directory: the revision counter, plus the identity of both object
    /// directories (so a file added or removed by hand is noticed too).
    fn revision_sync(&self) -> Result<String, StoreError> {
        let mut token = self.read_revision()?.to_string();
        for sub in [Blocks::SUBDIR, Affinities::SUBDIR] {
            let d = self.dir.join(sub);
            let m = fs::metadata(&d).map_err(|e| backend(format!("reading {}", d.display()), e))?;
            let id = FileId::of(&m);
            token.push_str(&format!(
                "/{}.{}.{}.{}",
                id.ino, id.size, id.mtime, id.mtime_nsec
            ));
        }
        Ok(token)
    }

    /// Advances the directory's revision (under the exclusive lock): the
    /// wall clock in microseconds, or one more than the last revision if the
    /// clock has not moved past it. The file is not fsynced (that halves the
    /// fsyncs of a write, which bound how fast 200 agents claim their
    /// blocks): a revision lost in a crash is never issued again, because
    /// the next one comes from the clock, past every earlier one.
    fn next_revision(&self) -> Result<String, StoreError> {
        let path = self.dir.join(REVISION_FILE);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let next = (self.read_revision()? + 1).max(now);
        write_atomic(&path, format!("{next}\n").as_bytes(), false)
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
        write_atomic(&path, text.as_bytes(), true)
            .map_err(|e| backend(format!("writing {}", path.display()), e))
    }

    /// Every object of kind `K`, under the shared lock (one consistent
    /// state). Files unchanged since the previous listing are not parsed
    /// again.
    fn list_sync<K: FileKind>(&self) -> Result<Vec<Stored<K::Spec>>, StoreError> {
        let lock = self.lock(true)?;
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
        // The names and file identities under the lock (one consistent
        // state); the files are parsed after it is released: a file replaced
        // meanwhile is read whole in its newer version, one deleted is left
        // out (a listing may be stale, never torn).
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(format!("{name}.yaml"));
            match fs::metadata(&path) {
                Ok(m) => ids.push((name, FileId::of(&m))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(backend(format!("reading {}", path.display()), e)),
            }
        }
        drop(lock);
        let previous = std::mem::take(&mut K::cache(&mut self.cache()).files);
        let mut files = HashMap::with_capacity(ids.len());
        let mut out = Vec::with_capacity(ids.len());
        for (name, id) in ids {
            let object = match previous.get(&name) {
                Some((seen, o)) if *seen == id => o.clone(),
                _ => match self.read::<K>(&name)? {
                    Some(o) => o,
                    None => continue,
                },
            };
            files.insert(name, (id, object.clone()));
            out.push(object);
        }
        K::cache(&mut self.cache()).files = files;
        Ok(out)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ListCache> {
        // The cache holds plain data: a panic elsewhere leaves it usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
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
        let _lock = self.lock(false)?;
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
        let _lock = self.lock(false)?;
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
        let _lock = self.lock(false)?;
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
    async fn revision(&self) -> Result<Option<String>, StoreError> {
        self.blocking(|s| s.revision_sync().map(Some)).await
    }
    fn watch_blocks(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        let dir = self.dir.join(Blocks::SUBDIR);
        match crate::file_watch::watch_blocks(&dir) {
            Ok(rx) => Some(rx),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "IPAM: cannot watch the block files; relying on the periodic resync");
                None
            }
        }
    }
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
