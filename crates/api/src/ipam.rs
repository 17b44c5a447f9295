//! The `petrel.v1.IpamService` gRPC service (`proto/petrel/v1/ipam.proto`):
//! pod address allocation for the `petrel-ipam` CNI plugin (CNI spec
//! 1.0.0/1.1.0 ADD, DEL, CHECK, GC, STATUS) and IPAM status for the CLI.
//!
//! The service is a thin translation layer: it validates requests, calls an
//! [`IpamBackend`] with plain Rust types, and maps [`IpamBackendError`] to
//! gRPC status codes so that clients can tell the cases apart:
//! exhaustion is `RESOURCE_EXHAUSTED`, not-ready or datastore trouble is
//! `UNAVAILABLE` (retry later), a missing allocation on Check is `NOT_FOUND`.
//! Addresses follow RFC 4632 (IPv4 CIDR) and RFC 4291 (IPv6) notation.

use ipnet::IpNet;
use petrel_ipam::backend::{
    AllocateArgs, AllocationInfo, AttachmentKey, BlockClaimState, IpamBackend, IpamBackendError,
    IpamStatusInfo, PodAddress,
};
use petrel_proto::pb;
use petrel_proto::pb::ipam_service_server::{IpamService, IpamServiceServer};
use std::net::IpAddr;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The gRPC status of a backend failure: clients tell the cases apart by code.
pub fn backend_status(e: IpamBackendError) -> Status {
    {
        match e {
            IpamBackendError::Exhausted(m) => Status::resource_exhausted(m),
            IpamBackendError::NotReady(m) | IpamBackendError::Datastore(m) => {
                Status::unavailable(m)
            }
            IpamBackendError::Invalid(m) => Status::invalid_argument(m),
            IpamBackendError::Internal(m) => Status::internal(m),
        }
    }
}

/// The gRPC service for `backend`, to add to the agent's tonic router:
/// `Server::builder().add_service(api::ipam::service(backend))`.
pub fn service(backend: Arc<dyn IpamBackend>) -> IpamServiceServer<IpamApi> {
    IpamServiceServer::new(IpamApi { backend })
}

/// The tonic service implementation; build it with [`service`].
pub struct IpamApi {
    backend: Arc<dyn IpamBackend>,
}

/// Checks the attachment fields every request carries.
fn attachment(container_id: String, ifname: String) -> Result<AttachmentKey, Status> {
    if container_id.is_empty() {
        return Err(Status::invalid_argument("container_id must not be empty"));
    }
    if ifname.is_empty() {
        return Err(Status::invalid_argument("ifname must not be empty"));
    }
    Ok(AttachmentKey {
        container_id,
        ifname,
    })
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn family(a: &IpAddr) -> pb::IpFamily {
    match a {
        IpAddr::V4(_) => pb::IpFamily::Ipv4,
        IpAddr::V6(_) => pb::IpFamily::Ipv6,
    }
}

fn net_family(n: &IpNet) -> pb::IpFamily {
    family(&n.addr())
}

/// Addresses in wire form, IPv4 first (stable within a family).
pub(crate) fn addresses_to_pb(mut addrs: Vec<PodAddress>) -> Vec<pb::AllocatedAddress> {
    addrs.sort_by_key(|a| a.address.addr().is_ipv6());
    addrs
        .into_iter()
        .map(|a| pb::AllocatedAddress {
            address: a.address.to_string(),
            gateway: a.gateway.to_string(),
            family: family(&a.address.addr()) as i32,
            block: a.block.to_string(),
            pool: a.pool,
        })
        .collect()
}

fn allocation_to_pb(a: AllocationInfo) -> pb::Allocation {
    pb::Allocation {
        container_id: a.attachment.container_id,
        ifname: a.attachment.ifname,
        network: a.network,
        pod_namespace: a.pod_namespace.unwrap_or_default(),
        pod_name: a.pod_name.unwrap_or_default(),
        netns: a.netns,
        addresses: addresses_to_pb(a.addresses),
    }
}

fn status_to_pb(s: IpamStatusInfo) -> pb::GetIpamStatusResponse {
    let node = s.node.clone();
    let mut blocks = s.blocks;
    // This node's blocks first, then by owner and CIDR.
    blocks.sort_by(|a, b| {
        (a.owner_node != node, &a.owner_node, a.cidr).cmp(&(
            b.owner_node != node,
            &b.owner_node,
            b.cidr,
        ))
    });
    pb::GetIpamStatusResponse {
        node: s.node,
        ready: s.ready,
        not_ready_reason: s.not_ready_reason.unwrap_or_default(),
        pools: s
            .pools
            .into_iter()
            .map(|p| pb::IpPoolStatus {
                family: net_family(&p.cidr) as i32,
                name: p.name,
                cidr: p.cidr.to_string(),
                block_size: u32::from(p.block_size),
                disabled: p.disabled,
                export: p.export,
                selected: p.selected,
                blocks_total: p.blocks_total,
                blocks_claimed: p.blocks_claimed,
                addresses_used: p.addresses_used,
                addresses_free: p.addresses_free,
            })
            .collect(),
        blocks: blocks
            .into_iter()
            .map(|b| pb::IpamBlock {
                cidr: b.cidr.to_string(),
                pool: b.pool,
                owner_node: b.owner_node,
                state: match b.state {
                    BlockClaimState::Pending => pb::BlockState::Pending,
                    BlockClaimState::Confirmed => pb::BlockState::Confirmed,
                    BlockClaimState::Releasing => pb::BlockState::Releasing,
                } as i32,
                used: b.used,
                free: b.free,
                export: b.export,
                gateway: b.gateway.map(|g| g.to_string()).unwrap_or_default(),
            })
            .collect(),
        allocations: s.allocations.into_iter().map(allocation_to_pb).collect(),
        last_error: s.last_error.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl IpamService for IpamApi {
    async fn allocate(
        &self,
        req: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let r = req.into_inner();
        let args = AllocateArgs {
            attachment: attachment(r.container_id, r.ifname)?,
            network: r.network,
            pod_namespace: non_empty(r.pod_namespace),
            pod_name: non_empty(r.pod_name),
            netns: r.netns,
        };
        let span = tracing::info_span!(
            "ipam_allocate",
            container = %args.attachment.container_id,
            ifname = %args.attachment.ifname
        );
        let _g = span.enter();
        let addrs = self.backend.allocate(args).await.map_err(|e| {
            tracing::warn!(error = %e, "allocation failed");
            backend_status(e)
        })?;
        if addrs.is_empty() {
            // A backend must either allocate or say why not.
            return Err(Status::internal("IPAM backend allocated no address"));
        }
        Ok(Response::new(pb::AllocateResponse {
            addresses: addresses_to_pb(addrs),
        }))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = req.into_inner();
        let key = attachment(r.container_id, r.ifname)?;
        let released = self
            .backend
            .release(key, r.network)
            .await
            .map_err(backend_status)?;
        Ok(Response::new(pb::ReleaseResponse {
            released: addresses_to_pb(released),
        }))
    }

    async fn check(
        &self,
        req: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let r = req.into_inner();
        let key = attachment(r.container_id, r.ifname)?;
        match self
            .backend
            .check(key.clone(), r.network)
            .await
            .map_err(backend_status)?
        {
            Some(a) => Ok(Response::new(pb::CheckResponse {
                allocation: Some(allocation_to_pb(a)),
            })),
            None => Err(Status::not_found(format!(
                "no address is allocated to container {} interface {}",
                key.container_id, key.ifname
            ))),
        }
    }

    async fn garbage_collect(
        &self,
        req: Request<pb::GarbageCollectRequest>,
    ) -> Result<Response<pb::GarbageCollectResponse>, Status> {
        let r = req.into_inner();
        let keep = r
            .keep
            .into_iter()
            .map(|a| attachment(a.container_id, a.ifname))
            .collect::<Result<Vec<_>, _>>()?;
        let released = self
            .backend
            .gc(r.network, keep)
            .await
            .map_err(backend_status)?;
        Ok(Response::new(pb::GarbageCollectResponse {
            released: released.into_iter().map(allocation_to_pb).collect(),
        }))
    }

    async fn get_ipam_status(
        &self,
        _req: Request<pb::GetIpamStatusRequest>,
    ) -> Result<Response<pb::GetIpamStatusResponse>, Status> {
        Ok(Response::new(status_to_pb(
            self.backend.status().await.map_err(backend_status)?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_ipam::backend::{BlockInfo, PoolInfo};
    use std::sync::Mutex;

    /// Records calls and answers from canned values.
    #[derive(Default)]
    struct Fake {
        addrs: Vec<PodAddress>,
        fail: Option<IpamBackendError>,
        calls: Mutex<Vec<String>>,
        held: Option<AllocationInfo>,
        status: IpamStatusInfo,
    }

    #[async_trait::async_trait]
    impl IpamBackend for Fake {
        async fn allocate(&self, a: AllocateArgs) -> Result<Vec<PodAddress>, IpamBackendError> {
            self.calls.lock().unwrap().push(format!(
                "allocate {} {} {} {:?}/{:?} {}",
                a.attachment.container_id,
                a.attachment.ifname,
                a.network,
                a.pod_namespace,
                a.pod_name,
                a.netns
            ));
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => Ok(self.addrs.clone()),
            }
        }
        async fn release(
            &self,
            k: AttachmentKey,
            network: String,
        ) -> Result<Vec<PodAddress>, IpamBackendError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("release {} {} {network}", k.container_id, k.ifname));
            Ok(self.addrs.clone())
        }
        async fn check(
            &self,
            _k: AttachmentKey,
            _network: String,
        ) -> Result<Option<AllocationInfo>, IpamBackendError> {
            Ok(self.held.clone())
        }
        async fn gc(
            &self,
            network: String,
            keep: Vec<AttachmentKey>,
        ) -> Result<Vec<AllocationInfo>, IpamBackendError> {
            let keep: Vec<String> = keep
                .iter()
                .map(|k| format!("{}/{}", k.container_id, k.ifname))
                .collect();
            self.calls
                .lock()
                .unwrap()
                .push(format!("gc {network} {}", keep.join(",")));
            Ok(self.held.clone().into_iter().collect())
        }
        async fn status(&self) -> Result<IpamStatusInfo, IpamBackendError> {
            Ok(self.status.clone())
        }
    }

    fn pod(addr: &str, gw: &str, block: &str) -> PodAddress {
        PodAddress {
            address: addr.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            block: block.parse().unwrap(),
            pool: "default".into(),
        }
    }

    fn dual() -> Vec<PodAddress> {
        vec![
            pod("fd00:65::5/122", "fd00:65::1", "fd00:65::/122"),
            pod("10.65.0.5/26", "10.65.0.1", "10.65.0.0/26"),
        ]
    }

    fn api(f: Fake) -> (IpamApi, Arc<Fake>) {
        let f = Arc::new(f);
        (IpamApi { backend: f.clone() }, f)
    }

    fn alloc_req(container: &str) -> Request<pb::AllocateRequest> {
        Request::new(pb::AllocateRequest {
            container_id: container.into(),
            ifname: "eth0".into(),
            network: "k8s-pod-network".into(),
            pod_namespace: "default".into(),
            pod_name: String::new(),
            netns: "/run/netns/p1".into(),
        })
    }

    #[tokio::test]
    async fn allocate_returns_ipv4_first_with_block_prefix_and_family() {
        let (api, fake) = api(Fake {
            addrs: dual(),
            ..Default::default()
        });
        let r = api.allocate(alloc_req("c1")).await.unwrap().into_inner();
        assert_eq!(r.addresses.len(), 2);
        assert_eq!(r.addresses[0].address, "10.65.0.5/26");
        assert_eq!(r.addresses[0].gateway, "10.65.0.1");
        assert_eq!(r.addresses[0].family, pb::IpFamily::Ipv4 as i32);
        assert_eq!(r.addresses[0].block, "10.65.0.0/26");
        assert_eq!(r.addresses[1].address, "fd00:65::5/122");
        assert_eq!(r.addresses[1].family, pb::IpFamily::Ipv6 as i32);
        // Empty strings become None; the rest passes through.
        assert_eq!(
            fake.calls.lock().unwrap().as_slice(),
            ["allocate c1 eth0 k8s-pod-network Some(\"default\")/None /run/netns/p1"]
        );
    }

    #[tokio::test]
    async fn allocate_rejects_an_empty_attachment_without_calling_the_backend() {
        let (api, fake) = api(Fake::default());
        let e = api.allocate(alloc_req("")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("container_id"), "{e}");
        assert!(fake.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn backend_errors_map_to_distinct_codes() {
        for (err, code) in [
            (
                IpamBackendError::Exhausted("pool default (10.65.0.0/24) is exhausted".into()),
                tonic::Code::ResourceExhausted,
            ),
            (
                IpamBackendError::NotReady("starting".into()),
                tonic::Code::Unavailable,
            ),
            (
                IpamBackendError::Datastore("down".into()),
                tonic::Code::Unavailable,
            ),
            (
                IpamBackendError::Invalid("bad".into()),
                tonic::Code::InvalidArgument,
            ),
            (
                IpamBackendError::Internal("bug".into()),
                tonic::Code::Internal,
            ),
        ] {
            let msg = err.to_string();
            let (api, _) = api(Fake {
                fail: Some(err),
                ..Default::default()
            });
            let e = api.allocate(alloc_req("c1")).await.unwrap_err();
            assert_eq!(e.code(), code);
            assert_eq!(e.message(), msg);
        }
    }

    #[tokio::test]
    async fn allocate_with_no_address_is_an_internal_error() {
        let (api, _) = api(Fake::default());
        let e = api.allocate(alloc_req("c1")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn check_without_allocation_is_not_found() {
        let (api, _) = api(Fake::default());
        let e = api
            .check(Request::new(pb::CheckRequest {
                container_id: "c9".into(),
                ifname: "eth0".into(),
                network: "n".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("c9"), "{e}");
    }

    #[tokio::test]
    async fn check_and_gc_return_allocations() {
        let held = AllocationInfo {
            attachment: AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
            network: "n".into(),
            pod_namespace: None,
            pod_name: Some("web".into()),
            netns: "/run/netns/p1".into(),
            addresses: dual(),
        };
        let (api, fake) = api(Fake {
            held: Some(held),
            ..Default::default()
        });
        let a = api
            .check(Request::new(pb::CheckRequest {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                network: "n".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .allocation
            .unwrap();
        assert_eq!(a.pod_name, "web");
        assert_eq!(a.pod_namespace, "");
        assert_eq!(a.addresses[0].address, "10.65.0.5/26");
        let r = api
            .garbage_collect(Request::new(pb::GarbageCollectRequest {
                network: "n".into(),
                keep: vec![
                    pb::Attachment {
                        container_id: "c2".into(),
                        ifname: "eth0".into(),
                    },
                    pb::Attachment {
                        container_id: "c3".into(),
                        ifname: "net1".into(),
                    },
                ],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.released.len(), 1);
        assert_eq!(r.released[0].container_id, "c1");
        assert_eq!(
            fake.calls.lock().unwrap().as_slice(),
            ["gc n c2/eth0,c3/net1"]
        );
    }

    #[tokio::test]
    async fn status_lists_this_nodes_blocks_first() {
        let block = |cidr: &str, owner: &str| BlockInfo {
            cidr: cidr.parse().unwrap(),
            pool: "default".into(),
            owner_node: owner.into(),
            state: BlockClaimState::Confirmed,
            used: 1,
            free: 62,
            export: true,
            gateway: None,
        };
        let (api, _) = api(Fake {
            status: IpamStatusInfo {
                node: "node2".into(),
                ready: true,
                blocks: vec![
                    block("10.65.0.0/26", "node1"),
                    block("10.65.0.128/26", "node2"),
                    block("10.65.0.64/26", "node2"),
                ],
                pools: vec![PoolInfo {
                    name: "default".into(),
                    cidr: "10.65.0.0/24".parse().unwrap(),
                    block_size: 26,
                    disabled: false,
                    export: true,
                    selected: true,
                    blocks_total: 4,
                    blocks_claimed: 3,
                    addresses_used: 2,
                    addresses_free: 124,
                }],
                ..Default::default()
            },
            ..Default::default()
        });
        let s = api
            .get_ipam_status(Request::new(pb::GetIpamStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        let order: Vec<&str> = s.blocks.iter().map(|b| b.cidr.as_str()).collect();
        assert_eq!(order, ["10.65.0.64/26", "10.65.0.128/26", "10.65.0.0/26"]);
        assert_eq!(s.pools[0].family, pb::IpFamily::Ipv4 as i32);
        assert_eq!(s.blocks[0].state, pb::BlockState::Confirmed as i32);
        assert!(s.ready);
    }
}
