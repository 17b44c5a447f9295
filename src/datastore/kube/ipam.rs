//! The IPAM store on the Kubernetes API server: `IPAMBlock` and
//! `BlockAffinity` custom resources (petrel.dev/v1, cluster-scoped), written
//! only with compare-and-swap on `metadata.resourceVersion`.
//!
//! - create: `POST`; an existing name is `409 AlreadyExists` →
//!   [`StoreError::AlreadyExists`].
//! - update: `PUT` with `metadata.resourceVersion` set to the expected
//!   version; a different stored version is `409 Conflict` →
//!   [`StoreError::Conflict`], a missing object `404` → [`StoreError::NotFound`].
//! - delete: `DELETE` with `preconditions.resourceVersion`; same mapping.
//!
//! Never a forced apply, a merge patch or an unconditional delete: every
//! write is conditional, so two nodes racing for a block cannot both win
//! (the API server serializes writes of one object through etcd's
//! compare-and-swap on its revision). The admission policy in
//! `manifests/admission.yaml` additionally limits each node to its own objects.
//!
//! Related RFCs: RFC 4632 (the blocks' CIDRs).

use crate::ipam::store::{IpamStore, ObjectKind, StoreError, Stored};
use crate::k8s::{
    BlockAffinity, BlockAffinitySpec, IPAMBlock, IpamBlockSpec, is_valid_object_name,
};
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// An IPAM custom resource: its spec and how to build one.
trait IpamObject:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    type Spec: Clone + Send + Sync;
    const KIND: ObjectKind;
    fn spec(&self) -> &Self::Spec;
    fn build(metadata: ObjectMeta, spec: Self::Spec) -> Self;
}

impl IpamObject for IPAMBlock {
    type Spec = IpamBlockSpec;
    const KIND: ObjectKind = ObjectKind::Block;
    fn spec(&self) -> &IpamBlockSpec {
        &self.spec
    }
    fn build(metadata: ObjectMeta, spec: IpamBlockSpec) -> Self {
        IPAMBlock { metadata, spec }
    }
}

impl IpamObject for BlockAffinity {
    type Spec = BlockAffinitySpec;
    const KIND: ObjectKind = ObjectKind::Affinity;
    fn spec(&self) -> &BlockAffinitySpec {
        &self.spec
    }
    fn build(metadata: ObjectMeta, spec: BlockAffinitySpec) -> Self {
        BlockAffinity { metadata, spec }
    }
}

/// [`IpamStore`] on the Kubernetes API server.
#[derive(Clone)]
pub struct KubeIpamStore {
    blocks: Api<IPAMBlock>,
    affinities: Api<BlockAffinity>,
    block_cache: Option<std::sync::Arc<ListCache>>,
    affinity_cache: Option<std::sync::Arc<ListCache>>,
}

/// The last successful list of one kind, on disk, answered when the API
/// server cannot be reached: an agent that starts during an outage still
/// knows every node's blocks (its import policy accepts a block only from
/// its owner). The trait allows a stale list; writes still need the API
/// server, and their compare-and-swap catches anything stale.
struct ListCache {
    path: std::path::PathBuf,
    /// Hash of the last content written, to write only on change.
    written: std::sync::Mutex<Option<u64>>,
}

impl ListCache {
    fn save<K: Serialize>(&self, node: &str, items: &[K]) {
        let values: Vec<serde_json::Value> = items
            .iter()
            .filter_map(|i| serde_json::to_value(i).ok())
            .collect();
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&values)
                .unwrap_or_default()
                .hash(&mut h);
            h.finish()
        };
        let Ok(mut written) = self.written.lock() else {
            return;
        };
        if *written == Some(hash) {
            return;
        }
        match super::cache::write(&self.path, node, &values) {
            Ok(()) => *written = Some(hash),
            Err(e) => tracing::warn!(node, "cannot cache the IPAM objects: {e}"),
        }
    }

    fn load<K: DeserializeOwned>(&self) -> Option<Vec<K>> {
        let values = super::cache::read(&self.path).ok().flatten()?;
        values
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<K>, _>>()
            .ok()
    }
}

impl Debug for KubeIpamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeIpamStore")
    }
}

impl KubeIpamStore {
    pub fn new(client: kube::Client) -> KubeIpamStore {
        KubeIpamStore {
            blocks: Api::all(client.clone()),
            affinities: Api::all(client),
            block_cache: None,
            affinity_cache: None,
        }
    }

    /// Keeps the last list of each kind in `<prefix>.ipamblocks.json` and
    /// `<prefix>.blockaffinities.json`, and answers lists from them while
    /// the API server cannot be reached.
    pub fn with_cache(mut self, prefix: &std::path::Path) -> KubeIpamStore {
        let file = |suffix: &str| {
            let mut name = prefix.as_os_str().to_owned();
            name.push(suffix);
            ListCache {
                path: name.into(),
                written: std::sync::Mutex::new(None),
            }
        };
        self.block_cache = Some(std::sync::Arc::new(file(".ipamblocks.json")));
        self.affinity_cache = Some(std::sync::Arc::new(file(".blockaffinities.json")));
        self
    }
}

fn backend(kind: ObjectKind, name: &str, op: &str, e: kube::Error) -> StoreError {
    StoreError::Backend {
        context: format!("{op} {kind} {name}"),
        source: Box::new(e),
    }
}

/// Maps an API error of a conditional write.
fn write_error(
    kind: ObjectKind,
    name: &str,
    op: &str,
    expected: Option<&str>,
    e: kube::Error,
) -> StoreError {
    let name_s = name.to_string();
    match &e {
        kube::Error::Api(s) if s.code == 404 => StoreError::NotFound { kind, name: name_s },
        kube::Error::Api(s)
            if s.code == 409 && s.reason == "AlreadyExists" && expected.is_none() =>
        {
            StoreError::AlreadyExists { kind, name: name_s }
        }
        kube::Error::Api(s) if s.code == 409 => match expected {
            Some(v) => StoreError::Conflict {
                kind,
                name: name_s,
                expected: v.to_string(),
            },
            None => StoreError::AlreadyExists { kind, name: name_s },
        },
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => StoreError::Invalid {
            kind,
            name: name_s,
            reason: s.message.clone(),
        },
        _ => backend(kind, name, op, e),
    }
}

fn stored<K: IpamObject>(obj: K) -> Result<Stored<K::Spec>, StoreError> {
    let name = obj.meta().name.clone().unwrap_or_default();
    let Some(version) = obj
        .meta()
        .resource_version
        .clone()
        .filter(|v| !v.is_empty())
    else {
        return Err(StoreError::Invalid {
            kind: K::KIND,
            name,
            reason: "no metadata.resourceVersion in the API server's answer".into(),
        });
    };
    Ok(Stored {
        name,
        version,
        spec: obj.spec().clone(),
    })
}

fn check_name(kind: ObjectKind, name: &str) -> Result<(), StoreError> {
    if is_valid_object_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            kind,
            name: name.to_string(),
            reason: "not a valid Kubernetes object name".into(),
        })
    }
}

/// An undecodable stored object is `Invalid`, other failures `Backend`.
fn read_error(kind: ObjectKind, name: &str, op: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::SerdeError(se) => StoreError::Invalid {
            kind,
            name: name.to_string(),
            reason: format!("cannot decode: {se}"),
        },
        e => backend(kind, name, op, e),
    }
}

async fn list<K: IpamObject>(
    api: &Api<K>,
    cache: Option<&ListCache>,
) -> Result<Vec<Stored<K::Spec>>, StoreError> {
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            if let Some(c) = cache {
                c.save(K::KIND.kind(), &list.items);
            }
            list.items.into_iter().map(stored).collect()
        }
        Err(e) => {
            let err = read_error(K::KIND, "(all)", "list", e);
            if matches!(err, StoreError::Backend { .. })
                && let Some(items) = cache.and_then(ListCache::load::<K>)
            {
                return items.into_iter().map(stored).collect();
            }
            Err(err)
        }
    }
}

async fn get<K: IpamObject>(
    api: &Api<K>,
    name: &str,
) -> Result<Option<Stored<K::Spec>>, StoreError> {
    check_name(K::KIND, name)?;
    match api.get_opt(name).await {
        Ok(Some(o)) => stored(o).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(read_error(K::KIND, name, "get", e)),
    }
}

async fn create<K: IpamObject>(
    api: &Api<K>,
    name: &str,
    spec: &K::Spec,
) -> Result<Stored<K::Spec>, StoreError> {
    check_name(K::KIND, name)?;
    let obj = K::build(
        ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec.clone(),
    );
    match api.create(&PostParams::default(), &obj).await {
        Ok(o) => stored(o),
        Err(e) => Err(write_error(K::KIND, name, "create", None, e)),
    }
}

async fn update<K: IpamObject>(
    api: &Api<K>,
    name: &str,
    spec: &K::Spec,
    expected: &str,
) -> Result<Stored<K::Spec>, StoreError> {
    check_name(K::KIND, name)?;
    let obj = K::build(
        ObjectMeta {
            name: Some(name.to_string()),
            // The compare-and-swap: the API server rejects the PUT with
            // 409 Conflict unless this is the stored resourceVersion.
            resource_version: Some(expected.to_string()),
            ..Default::default()
        },
        spec.clone(),
    );
    match api.replace(name, &PostParams::default(), &obj).await {
        Ok(o) => stored(o),
        Err(e) => Err(write_error(K::KIND, name, "update", Some(expected), e)),
    }
}

async fn delete<K: IpamObject>(api: &Api<K>, name: &str, expected: &str) -> Result<(), StoreError> {
    check_name(K::KIND, name)?;
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(expected.to_string()),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) => Err(write_error(K::KIND, name, "delete", Some(expected), e)),
    }
}

#[async_trait]
impl IpamStore for KubeIpamStore {
    async fn list_blocks(&self) -> Result<Vec<Stored<IpamBlockSpec>>, StoreError> {
        list(&self.blocks, self.block_cache.as_deref()).await
    }
    async fn get_block(&self, name: &str) -> Result<Option<Stored<IpamBlockSpec>>, StoreError> {
        get(&self.blocks, name).await
    }
    async fn create_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
    ) -> Result<Stored<IpamBlockSpec>, StoreError> {
        create(&self.blocks, name, spec).await
    }
    async fn update_block(
        &self,
        name: &str,
        spec: &IpamBlockSpec,
        expected_version: &str,
    ) -> Result<Stored<IpamBlockSpec>, StoreError> {
        update(&self.blocks, name, spec, expected_version).await
    }
    async fn delete_block(&self, name: &str, expected_version: &str) -> Result<(), StoreError> {
        delete(&self.blocks, name, expected_version).await
    }
    async fn list_affinities(&self) -> Result<Vec<Stored<BlockAffinitySpec>>, StoreError> {
        list(&self.affinities, self.affinity_cache.as_deref()).await
    }
    async fn get_affinity(
        &self,
        name: &str,
    ) -> Result<Option<Stored<BlockAffinitySpec>>, StoreError> {
        get(&self.affinities, name).await
    }
    async fn create_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
    ) -> Result<Stored<BlockAffinitySpec>, StoreError> {
        create(&self.affinities, name, spec).await
    }
    async fn update_affinity(
        &self,
        name: &str,
        spec: &BlockAffinitySpec,
        expected_version: &str,
    ) -> Result<Stored<BlockAffinitySpec>, StoreError> {
        update(&self.affinities, name, spec, expected_version).await
    }
    async fn delete_affinity(&self, name: &str, expected_version: &str) -> Result<(), StoreError> {
        delete(&self.affinities, name, expected_version).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("m", reason).with_code(code).boxed())
    }

    #[test]
    fn api_errors_map_to_the_store_semantics() {
        let k = ObjectKind::Block;
        let create = |e| write_error(k, "b", "create", None, e);
        let update = |e| write_error(k, "b", "update", Some("7"), e);
        assert!(matches!(
            create(api(409, "AlreadyExists")),
            StoreError::AlreadyExists { .. }
        ));
        assert!(matches!(
            update(api(409, "Conflict")),
            StoreError::Conflict { ref expected, .. } if expected == "7"
        ));
        assert!(matches!(
            update(api(404, "NotFound")),
            StoreError::NotFound { .. }
        ));
        assert!(matches!(
            create(api(422, "Invalid")),
            StoreError::Invalid { .. }
        ));
        // Forbidden (RBAC or the admission policy) is a backend failure that
        // keeps the API error for the caller.
        match update(api(403, "Forbidden")) {
            StoreError::Backend { source, .. } => assert!(matches!(
                source.downcast_ref::<kube::Error>(),
                Some(kube::Error::Api(s)) if s.code == 403
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_names_are_refused_locally() {
        assert!(check_name(ObjectKind::Block, "10-244-1-0-26").is_ok());
        assert!(matches!(
            check_name(ObjectKind::Affinity, "Bad_Name"),
            Err(StoreError::Invalid { .. })
        ));
    }

    /// A control plane started with `testbed/k8s/controlplane.sh` for this
    /// test; stopped (and its directory removed) on drop.
    struct ControlPlane {
        dir: std::path::PathBuf,
        kubeconfig: std::path::PathBuf,
    }

    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/k8s/controlplane.sh")
    }

    impl ControlPlane {
        fn start() -> ControlPlane {
            let dir = std::env::temp_dir().join(format!("petrel-k8s-ipam-{}", std::process::id()));
            let out = std::process::Command::new("bash")
                .arg(script())
                .args(["start", "--dir"])
                .arg(&dir)
                .args(["--watch-pid", &std::process::id().to_string()])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run controlplane.sh");
            assert!(
                out.status.success(),
                "controlplane.sh start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let kubeconfig = stdout
                .lines()
                .last()
                .expect("kubeconfig path")
                .trim()
                .into();
            ControlPlane { dir, kubeconfig }
        }
    }

    impl Drop for ControlPlane {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(script())
                .args(["stop", "--dir"])
                .arg(&self.dir)
                .status();
        }
    }

    /// The same conformance checks as the file store's, on a real API server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "starts a real kube-apiserver (testbed/k8s/controlplane.sh); run with --ignored"]
    async fn passes_the_store_conformance_checks_on_a_real_api_server() {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::CustomResourceExt;
        let cp = tokio::task::spawn_blocking(ControlPlane::start)
            .await
            .unwrap();
        let kc = kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(cfg).unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [IPAMBlock::crd(), BlockAffinity::crd()] {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let store = KubeIpamStore::new(client);
        // Until the CRDs are Established, their endpoints answer 404.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.list_blocks().await.is_err() || store.list_affinities().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "CRDs not served");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        crate::ipam::store::conformance::check(&store).await;
        drop(cp);
    }
}
