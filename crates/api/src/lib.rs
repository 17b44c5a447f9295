//! gRPC management API (`proto/petrel/v1/*.proto`) served on a Unix socket, and
//! the client the CLI uses. Status flows back to users only through here:
//! sessions (RFC 4271 §8), the Loc-RIB and per-peer Adj-RIBs (RFC 4271
//! §3.2), kernel routes ([`kernel`]), IPAM ([`ipam`]), service advertisement
//! and the run-time log filter ([`log`]).

use petrel_bgp::wire::Family;
use petrel_dataplane::{DataplaneConfig, DataplaneHandle};
pub use petrel_proto::pb;
use petrel_speaker::SpeakerHandle;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

pub mod convert;
pub mod ipam;
pub mod kernel;
pub mod log;

/// Errors of the management API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot create API socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API server on {path} failed: {source}")]
    Serve {
        path: PathBuf,
        source: tonic::transport::Error,
    },
}

/// Everything the API reports on: the owners of state, read at each request.
#[derive(Clone)]
pub struct Sources {
    /// This node's name.
    pub node_name: String,
    pub speaker: SpeakerHandle,
    pub dataplane: Option<(DataplaneHandle, DataplaneConfig)>,
    /// IPAM (also serves `petrel-ipam`).
    pub ipam: Option<std::sync::Arc<dyn petrel_ipam::backend::IpamBackend>>,
    /// What the service engine advertises and rejects.
    pub services: Option<tokio::sync::watch::Receiver<petrel_services::ServicesView>>,
    /// The state of this node's configuration (`GetConfigStatus`); `None`
    /// serves "not loaded".
    pub config: Option<ConfigStatusFn>,
}

/// One object the configuration could not use as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub kind: String,
    pub name: String,
    pub reason: String,
}

/// Reads the configuration's state: `None` before a configuration is
/// loaded, else the invalid objects.
pub type ConfigStatusFn = std::sync::Arc<dyn Fn() -> Option<Vec<ConfigProblem>> + Send + Sync>;

struct Service {
    speaker: SpeakerHandle,
    config: Option<ConfigStatusFn>,
    dataplane: Option<(DataplaneHandle, DataplaneConfig)>,
    services: Option<tokio::sync::watch::Receiver<petrel_services::ServicesView>>,
    /// Ends event streams when the server shuts down.
    shutdown: CancellationToken,
}

/// The stream of `WatchEvents`.
type EventStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::WatchEventsResponse, tonic::Status>> + Send>,
>;

/// Follows the speaker's events until `shutdown`; a receiver that fell
/// behind gets one `dropped` event saying how many it lost.
fn event_stream(
    rx: tokio::sync::broadcast::Receiver<petrel_speaker::SpeakerEvent>,
    sessions_only: bool,
    shutdown: CancellationToken,
) -> EventStream {
    use pb::watch_events_response::Event;
    use tokio::sync::broadcast::error::RecvError;
    Box::pin(futures::stream::unfold(rx, move |mut rx| {
        let shutdown = shutdown.clone();
        async move {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = shutdown.cancelled() => return None,
                };
                match next {
                    Ok(ev)
                        if sessions_only
                            && matches!(ev.kind, petrel_speaker::EventKind::Route(_)) => {}
                    Ok(ev) => return Some((Ok(convert::event(&ev)), rx)),
                    Err(RecvError::Lagged(n)) => {
                        let ev = pb::WatchEventsResponse {
                            time_unix_ms: convert::unix_ms(std::time::SystemTime::now()),
                            event: Some(Event::Dropped(n)),
                        };
                        return Some((Ok(ev), rx));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }))
}

/// Parses the `family` field of requests.
fn parse_family(family: &str) -> Result<Option<Family>, tonic::Status> {
    match family {
        "" => Ok(None),
        "ipv4" | "ipv4-unicast" => Ok(Some(Family::Ipv4Unicast)),
        "ipv6" | "ipv6-unicast" => Ok(Some(Family::Ipv6Unicast)),
        other => Err(tonic::Status::invalid_argument(format!(
            "unknown family {other:?}: use ipv4 or ipv6"
        ))),
    }
}

/// Stable reason code of a service rejection (`ServiceRejection.reason`).
pub fn reject_code(r: &petrel_services::RejectReason) -> &'static str {
    use petrel_services::RejectReason as R;
    match r {
        R::InvalidAddress => "invalid-address",
        R::NotEnabled => "not-enabled",
        R::OutsideCidrs => "outside-cidrs",
        R::NoReadyLocalEndpoint { .. } => "no-ready-local-endpoint",
        R::NoReadyEndpoint { .. } => "no-ready-endpoint",
        R::Headless => "headless",
        R::NoClusterIp => "no-cluster-ip",
        R::ExternalName => "external-name",
        R::UnsupportedType(_) => "unsupported-type",
        R::NotLoadBalancerType => "not-load-balancer-type",
        R::HostnameOnly => "hostname-only",
        R::ProxyIpMode => "proxy-ip-mode",
        R::NodeExcluded => "node-excluded",
    }
}

/// The API form of the service advertisement outcome.
pub fn services_view(view: Option<&petrel_services::ServicesView>) -> pb::ListServicesResponse {
    use petrel_services::AddressKind;
    let Some(v) = view else {
        return pb::ListServicesResponse::default();
    };
    let mut advertised: Vec<_> = v.advertised.clone();
    advertised.sort();
    let mut rejections: Vec<_> = v.rejections.iter().collect();
    rejections.sort();
    pb::ListServicesResponse {
        enabled: true,
        advertised: advertised.iter().map(|p| p.to_string()).collect(),
        rejections: rejections
            .into_iter()
            .map(|r| pb::ServiceRejection {
                service: r.service.to_string(),
                kind: match r.kind {
                    AddressKind::ClusterIp => "cluster-ip",
                    AddressKind::ExternalIp => "external-ip",
                    AddressKind::LoadBalancerIp => "load-balancer-ip",
                }
                .to_string(),
                address: r.address.clone(),
                reason: reject_code(&r.reason).to_string(),
                message: r.reason.describe(r.kind),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for Service {
    async fn get_config_status(
        &self,
        _req: tonic::Request<pb::GetConfigStatusRequest>,
    ) -> Result<tonic::Response<pb::GetConfigStatusResponse>, tonic::Status> {
        let state = self.config.as_ref().and_then(|f| f());
        Ok(tonic::Response::new(pb::GetConfigStatusResponse {
            loaded: state.is_some(),
            problems: state
                .unwrap_or_default()
                .into_iter()
                .map(|p| pb::ConfigProblem {
                    kind: p.kind,
                    name: p.name,
                    reason: p.reason,
                })
                .collect(),
            draining: self.speaker.draining().unwrap_or_default(),
        }))
    }

    async fn list_bfd_sessions(
        &self,
        _req: tonic::Request<pb::ListBfdSessionsRequest>,
    ) -> Result<tonic::Response<pb::ListBfdSessionsResponse>, tonic::Status> {
        Ok(tonic::Response::new(convert::bfd_sessions(
            &self.speaker.bfd().await,
        )))
    }

    async fn list_peers(
        &self,
        _req: tonic::Request<pb::ListPeersRequest>,
    ) -> Result<tonic::Response<pb::ListPeersResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ListPeersResponse {
            peers: self
                .speaker
                .peers()
                .await
                .iter()
                .map(convert::peer)
                .collect(),
        }))
    }

    async fn list_routes(
        &self,
        req: tonic::Request<pb::ListRoutesRequest>,
    ) -> Result<tonic::Response<pb::ListRoutesResponse>, tonic::Status> {
        let family = parse_family(&req.get_ref().family)?;
        Ok(tonic::Response::new(pb::ListRoutesResponse {
            routes: self
                .speaker
                .routes(family)
                .await
                .iter()
                .map(convert::route)
                .collect(),
        }))
    }

    async fn list_peer_routes(
        &self,
        req: tonic::Request<pb::ListPeerRoutesRequest>,
    ) -> Result<tonic::Response<pb::ListPeerRoutesResponse>, tonic::Status> {
        let r = req.into_inner();
        let family = parse_family(&r.family)?;
        let received = match pb::RibDirection::try_from(r.direction) {
            Ok(pb::RibDirection::Received) => true,
            Ok(pb::RibDirection::Advertised) => false,
            _ => {
                return Err(tonic::Status::invalid_argument(
                    "direction must be RIB_DIRECTION_RECEIVED or RIB_DIRECTION_ADVERTISED",
                ));
            }
        };
        let peer = (!r.peer.is_empty()).then_some(r.peer);
        Ok(tonic::Response::new(pb::ListPeerRoutesResponse {
            routes: self
                .speaker
                .peer_routes(peer, received, family)
                .await
                .iter()
                .map(convert::adj_rib_route)
                .collect(),
        }))
    }

    async fn list_kernel_routes(
        &self,
        req: tonic::Request<pb::ListKernelRoutesRequest>,
    ) -> Result<tonic::Response<pb::ListKernelRoutesResponse>, tonic::Status> {
        let r = req.into_inner();
        let family = parse_family(&r.family)?;
        let lookup = match r.lookup.as_str() {
            "" => None,
            s => Some(s.parse::<std::net::IpAddr>().map_err(|_| {
                tonic::Status::invalid_argument(format!("lookup {s:?} is not an IP address"))
            })?),
        };
        let Some((_, config)) = &self.dataplane else {
            return Err(tonic::Status::unavailable(
                "this agent runs without a dataplane",
            ));
        };
        kernel::list(config.table, config.protocol, family, lookup)
            .await
            .map(tonic::Response::new)
            .map_err(tonic::Status::unavailable)
    }

    async fn list_services(
        &self,
        _req: tonic::Request<pb::ListServicesRequest>,
    ) -> Result<tonic::Response<pb::ListServicesResponse>, tonic::Status> {
        let view = self.services.as_ref().map(|rx| rx.borrow().clone());
        Ok(tonic::Response::new(services_view(view.as_ref())))
    }

    async fn set_log_level(
        &self,
        req: tonic::Request<pb::SetLogLevelRequest>,
    ) -> Result<tonic::Response<pb::SetLogLevelResponse>, tonic::Status> {
        let filter = req.into_inner().filter;
        match log::set_filter(&filter) {
            None => Err(tonic::Status::unimplemented(
                "this agent's logging cannot be changed at run time",
            )),
            Some(Err(e)) => Err(tonic::Status::invalid_argument(e)),
            Some(Ok(previous)) => {
                tracing::info!(%previous, current = %filter, "log filter changed");
                Ok(tonic::Response::new(pb::SetLogLevelResponse {
                    previous,
                    current: filter,
                }))
            }
        }
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: tonic::Request<pb::WatchEventsRequest>,
    ) -> Result<tonic::Response<EventStream>, tonic::Status> {
        let sessions_only = req.into_inner().sessions_only;
        Ok(tonic::Response::new(event_stream(
            self.speaker.subscribe(),
            sessions_only,
            self.shutdown.clone(),
        )))
    }

    async fn get_dataplane(
        &self,
        _req: tonic::Request<pb::GetDataplaneRequest>,
    ) -> Result<tonic::Response<pb::GetDataplaneResponse>, tonic::Status> {
        let Some((handle, config)) = &self.dataplane else {
            return Err(tonic::Status::unavailable(
                "this agent runs without a dataplane",
            ));
        };
        let s = handle
            .status()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(tonic::Response::new(pb::GetDataplaneResponse {
            desired: s.desired as u64,
            installed: s.installed as u64,
            stale: s.stale as u64,
            unresolved: s
                .unresolved
                .iter()
                .map(|(p, h)| pb::Unresolved {
                    prefix: p.to_string(),
                    next_hop: h.to_string(),
                })
                .collect(),
            conflicts: s.conflicts.iter().map(|p| p.to_string()).collect(),
            errors: s
                .errors
                .iter()
                .map(|(p, e)| pb::KernelError {
                    prefix: p.to_string(),
                    error: e.clone(),
                })
                .collect(),
            converged: s.converged,
            resyncs: s.resyncs,
            operations: s.operations,
            table: config.table,
            protocol: u32::from(config.protocol),
        }))
    }
}

/// Serve the API on `path` until `shutdown`; removes a stale socket first.
pub async fn serve(
    path: PathBuf,
    sources: Sources,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let Sources {
        speaker,
        dataplane,
        ipam,
        services,
        config,
        ..
    } = sources;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ApiError::Bind {
            path: path.clone(),
            source,
        })?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|source| ApiError::Bind {
        path: path.clone(),
        source,
    })?;
    // The API shows the whole routing state: only root (the agent's user)
    // may connect.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ApiError::Bind {
                path: path.clone(),
                source,
            },
        )?;
    }
    tracing::info!(socket = %path.display(), "management API listening");
    let result = tonic::transport::Server::builder()
        .add_service(pb::agent_service_server::AgentServiceServer::new(Service {
            speaker,
            config,
            dataplane,
            services,
            shutdown: shutdown.clone(),
        }))
        .add_optional_service(ipam.map(ipam::service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(|source| ApiError::Serve { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_services::{AddressKind, IpFamily, ObjectKey, RejectReason, Rejection};

    #[test]
    fn services_view_sorts_and_names_reasons() {
        let view = petrel_services::ServicesView {
            advertised: vec![
                "10.96.0.0/12".parse().unwrap(),
                "10.0.0.5/32".parse().unwrap(),
            ],
            rejections: vec![Rejection {
                service: ObjectKey::new("default", "lb"),
                kind: AddressKind::LoadBalancerIp,
                address: "192.0.2.10".into(),
                reason: RejectReason::NoReadyLocalEndpoint {
                    family: IpFamily::V4,
                },
            }],
        };
        let r = services_view(Some(&view));
        assert!(r.enabled);
        assert_eq!(r.advertised, vec!["10.0.0.5/32", "10.96.0.0/12"]);
        let x = &r.rejections[0];
        assert_eq!(x.service, "default/lb");
        assert_eq!(x.kind, "load-balancer-ip");
        assert_eq!(x.reason, "no-ready-local-endpoint");
        assert!(
            x.message.contains("no ready IPv4 endpoint"),
            "{}",
            x.message
        );
        assert!(!services_view(None).enabled);
    }

    #[tokio::test]
    async fn event_stream_filters_reports_drops_and_ends_on_shutdown() {
        use futures::StreamExt;
        use pb::watch_events_response::Event;
        let (tx, rx) = tokio::sync::broadcast::channel(2);
        let shutdown = CancellationToken::new();
        let mut s = event_stream(rx, true, shutdown.clone());
        use petrel_speaker::{EventKind, RouteChange, SessionTransition, SpeakerEvent};
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(2);
        let route = |p: &str| SpeakerEvent {
            time: t,
            kind: EventKind::Route(RouteChange {
                prefix: p.parse().unwrap(),
                best: None,
            }),
        };
        let session = SpeakerEvent {
            time: t,
            kind: EventKind::Session(SessionTransition {
                peer: "mesh/node2".into(),
                address: "10.0.0.2".parse().unwrap(),
                from: petrel_bgp::fsm::State::Established,
                to: petrel_bgp::fsm::State::Idle,
                reason: String::new(),
            }),
        };
        // Three sends into a backlog of two: the first is lost.
        tx.send(session.clone()).unwrap();
        tx.send(route("10.0.0.0/24")).unwrap();
        tx.send(session.clone()).unwrap();
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(first.event, Some(Event::Dropped(1)));
        // The route change is skipped (sessions only).
        assert_eq!(s.next().await.unwrap().unwrap(), convert::event(&session));
        shutdown.cancel();
        assert!(s.next().await.is_none());
    }

    #[test]
    fn families_parse_or_are_rejected() {
        assert_eq!(parse_family("").unwrap(), None);
        assert_eq!(parse_family("ipv6").unwrap(), Some(Family::Ipv6Unicast));
        assert_eq!(
            parse_family("ipv4-unicast").unwrap(),
            Some(Family::Ipv4Unicast)
        );
        assert_eq!(
            parse_family("l2vpn").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
