//! The IPAM store: where blocks and block affinities live, written only by
//! compare-and-swap on a per-object version.
//!
//! Implemented for a shared directory by [`crate::file_store::FileStore`]
//! and for Kubernetes custom resources (with `resourceVersion`) by the
//! Kubernetes datastore. The allocator never assumes that a read is fresh:
//! every decision it takes from a read is committed with a conditional write,
//! and a [`StoreError::Conflict`] or [`StoreError::AlreadyExists`] makes it
//! re-read and decide again.
//!
//! # Semantics every implementation must follow
//!
//! * **Objects** are named: a block by [`petrel_crd::block_name`] of its CIDR,
//!   an affinity by [`petrel_crd::affinity_name`] of its node and CIDR. Names
//!   are valid Kubernetes object names. An implementation may refuse a name
//!   that does not match its spec with [`StoreError::Invalid`].
//! * **Versions** are opaque, non-empty strings. Every successful create or
//!   update returns the object's new version, different from every version
//!   the object (under that name) had before, including before a delete and
//!   re-create (so a stale writer can never succeed: no ABA). Kubernetes'
//!   `resourceVersion` has this property; the file store uses a counter for the
//!   whole directory.
//! * **get** returns `Ok(None)` when the object does not exist.
//! * **list** returns every object of the kind with its version. It may be
//!   stale (a cache), but each entry is a whole object as it was at its version.
//! * **create** fails with [`StoreError::AlreadyExists`] if an object of that
//!   name exists, whatever its content. Exactly one of several concurrent
//!   creates of one name succeeds.
//! * **update** replaces the spec if and only if the stored version equals
//!   `expected_version`; otherwise [`StoreError::Conflict`]. A missing object
//!   gives [`StoreError::NotFound`].
//! * **delete** removes the object if and only if the stored version equals
//!   `expected_version` (Kubernetes: a delete precondition on
//!   `resourceVersion`); otherwise [`StoreError::Conflict`], or
//!   [`StoreError::NotFound`] if it does not exist.
//! * Any other failure (I/O, API server unreachable, undecodable object) is
//!   [`StoreError::Backend`] or [`StoreError::Invalid`]; the caller retries
//!   later. A failed write must not have been applied partially.
//!
//! Never use a forced apply, a merge patch or an unconditional delete on these
//! objects.

use async_trait::async_trait;
use petrel_crd::{BlockAffinitySpec, IpamBlockSpec};
use std::fmt;

/// One object as read from (or written to) the store, with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    /// Object name (see the module docs for the naming rules).
    pub name: String,
    /// Opaque version (`resourceVersion` in Kubernetes).
    pub version: String,
    pub spec: T,
}

/// A stored `IPAMBlock`.
pub type StoredBlock = Stored<IpamBlockSpec>;
/// A stored `BlockAffinity`.
pub type StoredAffinity = Stored<BlockAffinitySpec>;

/// The two kinds of IPAM objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Block,
    Affinity,
}

impl ObjectKind {
    /// The Kubernetes kind name.
    pub fn kind(self) -> &'static str {
        match self {
            ObjectKind::Block => "IPAMBlock",
            ObjectKind::Affinity => "BlockAffinity",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Errors of an [`IpamStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a name that exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: ObjectKind, name: String },
    /// `update`/`delete` with a version that is not the stored one.
    #[error("{kind} {name} was changed concurrently (expected version {expected})")]
    Conflict {
        kind: ObjectKind,
        name: String,
        expected: String,
    },
    /// `update`/`delete` of a name that does not exist.
    #[error("{kind} {name} does not exist")]
    NotFound { kind: ObjectKind, name: String },
    /// A stored object that cannot be decoded, or a name that does not match.
    #[error("{kind} {name} is invalid: {reason}")]
    Invalid {
        kind: ObjectKind,
        name: String,
        reason: String,
    },
    /// The backend failed (I/O, API server); retry later.
    #[error("IPAM store: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether a re-read and retry may succeed (a lost compare-and-swap race).
    pub fn is_race(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. }
        )
    }
}

/// Storage of IPAM blocks and block affinities with compare-and-swap writes.
/// See the module documentation for the exact semantics.
#[async_trait]
pub trait IpamStore: Send + Sync + fmt::Debug {
    /// A token that changes whenever any block or affinity changes, when the
    /// store can tell cheaply; `None` when it cannot (callers then list).
    /// Read before a listing, an unchanged token means the listing would be
    /// the same as the previous one.
    async fn revision(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// The names of blocks as they are written or deleted (by any node), if
    /// the store can tell; [`crate::file_watch::OVERFLOW`] when some were
    /// missed. `None`: the owner task learns of changes at its resyncs only.
    fn watch_blocks(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        None
    }

    /// Every block.
    async fn list_blocks(&self) -> Result<Vec<StoredBlock>, StoreError>;
    /// The block `name`, or `None`.
    async fn get_block(&self, name: &str) -> Result<Option<StoredBlock>, StoreError>;
    /// Creates the block `name`; [`StoreError::AlreadyExists`] if it exists.
    async fn create_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
    ) -> Result<StoredBlock, StoreError>;
    /// Replaces the block's spec if its version is `expected_version`.
    async fn update_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
        expected_version: &str,
    ) -> Result<StoredBlock, StoreError>;
    /// Deletes the block if its version is `expected_version`.
    async fn delete_block(&self, name: &str, expected_version: &str) -> Result<(), StoreError>;

    /// Every block affinity (of every node).
    async fn list_affinities(&self) -> Result<Vec<StoredAffinity>, StoreError>;
    /// The affinity `name`, or `None`.
    async fn get_affinity(&self, name: &str) -> Result<Option<StoredAffinity>, StoreError>;
    /// Creates the affinity `name`; [`StoreError::AlreadyExists`] if it exists.
    async fn create_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
    ) -> Result<StoredAffinity, StoreError>;
    /// Replaces the affinity's spec if its version is `expected_version`.
    async fn update_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
        expected_version: &str,
    ) -> Result<StoredAffinity, StoreError>;
    /// Deletes the affinity if its version is `expected_version`.
    async fn delete_affinity(&self, name: &str, expected_version: &str) -> Result<(), StoreError>;
}

/// A conformance check of the semantics above, for every implementation's
/// tests: `petrel_ipam::store::conformance::check(&store).await` (with the
/// `conformance` feature outside this crate). The store must be empty.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use super::*;
    use petrel_crd::{AffinityState, BlockState, affinity_for, affinity_name, block_name};

    fn block(cidr: &str, node: &str) -> IpamBlockSpec {
        IpamBlockSpec {
            cidr: cidr.parse().unwrap(),
            affinity: affinity_for(node),
            state: BlockState::Pending,
            allocations: Default::default(),
            reserved: Vec::new(),
        }
    }

    pub async fn check(store: &dyn IpamStore) {
        let spec = block("10.9.0.0/26", "a");
        let name = block_name(&spec.cidr);
        assert!(store.list_blocks().await.unwrap().is_empty());
        assert!(store.get_block(&name).await.unwrap().is_none());

        let v1 = store.create_block(&name, &spec).await.unwrap();
        assert_eq!(v1.spec, spec);
        assert!(!v1.version.is_empty());
        let err = store.create_block(&name, &block("10.9.0.0/26", "b")).await;
        assert!(
            matches!(err, Err(StoreError::AlreadyExists { .. })),
            "{err:?}"
        );
        let read = store.get_block(&name).await.unwrap().unwrap();
        assert_eq!(read, v1);

        let mut confirmed = spec.clone();
        confirmed.state = BlockState::Confirmed;
        let v2 = store
            .update_block(&name, &confirmed, &v1.version)
            .await
            .unwrap();
        assert_ne!(v2.version, v1.version);
        let stale = store.update_block(&name, &spec, &v1.version).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { .. })),
            "{stale:?}"
        );
        let stale = store.delete_block(&name, &v1.version).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { .. })),
            "{stale:?}"
        );
        assert_eq!(
            store.get_block(&name).await.unwrap().unwrap().spec.state,
            BlockState::Confirmed
        );
        let listed = store.list_blocks().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0], v2);

        store.delete_block(&name, &v2.version).await.unwrap();
        assert!(store.get_block(&name).await.unwrap().is_none());
        let gone = store.delete_block(&name, &v2.version).await;
        assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
        let gone = store.update_block(&name, &spec, &v2.version).await;
        assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");

        // Re-created: no earlier version may match (no ABA).
        let v3 = store.create_block(&name, &spec).await.unwrap();
        for old in [&v1.version, &v2.version] {
            assert_ne!(&v3.version, old);
            let r = store.update_block(&name, &spec, old).await;
            assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
        }

        // Affinities.
        let aspec = BlockAffinitySpec {
            node: "a".into(),
            cidr: spec.cidr,
            state: AffinityState::Pending,
        };
        let aname = affinity_name("a", &spec.cidr);
        assert!(store.get_affinity(&aname).await.unwrap().is_none());
        let a1 = store.create_affinity(&aname, &aspec).await.unwrap();
        let dup = store.create_affinity(&aname, &aspec).await;
        assert!(
            matches!(dup, Err(StoreError::AlreadyExists { .. })),
            "{dup:?}"
        );
        let mut aconf = aspec.clone();
        aconf.state = AffinityState::Confirmed;
        let a2 = store
            .update_affinity(&aname, &aconf, &a1.version)
            .await
            .unwrap();
        assert_ne!(a1.version, a2.version);
        let stale = store.update_affinity(&aname, &aspec, &a1.version).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { .. })),
            "{stale:?}"
        );
        assert_eq!(store.list_affinities().await.unwrap(), vec![a2.clone()]);
        let stale = store.delete_affinity(&aname, &a1.version).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { .. })),
            "{stale:?}"
        );
        store.delete_affinity(&aname, &a2.version).await.unwrap();
        assert!(store.list_affinities().await.unwrap().is_empty());
        let gone = store.delete_affinity(&aname, &a2.version).await;
        assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    }
}
