//! The agent's small glue tasks between the datastore snapshots and the
//! owners of state (IPAM, the speaker). Each one only derives and forwards;
//! the logic lives in pure functions (`compose`, `petrel_services`,
//! `petrel_ipam::IpamConfig::for_node`).

use super::Snapshots;
use super::compose::{IpamRoutes, compose};
use petrel_datastore::resolved::NodeConfig;
use petrel_datastore::{Snapshot, publish_changed};
use petrel_ipam::{BlockView, IpamConfig};
use petrel_services::{AdvertisementConfig, ServiceAdvertiser, ServicesView};
use petrel_speaker::SpeakerHandle;
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Label that excludes a node from service advertisement (Calico honours it too).
const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

fn node_labels(snapshot: &Snapshot, node: &str) -> BTreeMap<String, String> {
    snapshot
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}

/// The IP pools selected for `node`, following the snapshots.
pub fn ipam_config(
    mut snapshots: Snapshots,
    node: String,
) -> (watch::Receiver<IpamConfig>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(IpamConfig {
        node: node.clone(),
        pools: vec![],
    });
    let task = tokio::spawn(async move {
        loop {
            let snap = snapshots.borrow_and_update().clone();
            if let Some(snap) = snap {
                let cfg = IpamConfig::for_node(&node, &node_labels(&snap, &node), &snap.ip_pools);
                publish_changed(&tx, cfg);
            }
            if snapshots.changed().await.is_err() {
                break;
            }
        }
    });
    (rx, task)
}

/// What IPAM contributes to the speaker, from the pools and the block view.
fn ipam_routes(snapshot: Option<&Snapshot>, view: &BlockView) -> IpamRoutes {
    IpamRoutes {
        pools: snapshot
            .map(|s| s.ip_pools.iter().map(|p| p.spec.cidr.trunc()).collect())
            .unwrap_or_default(),
        own_blocks: view.local.iter().map(|b| (b.cidr, b.export)).collect(),
        all_blocks: view.all.iter().map(|b| (b.cidr, b.owner.clone())).collect(),
    }
}

/// The composed configuration and whether it holds IPAM's first view of
/// this node's blocks.
pub struct Composed {
    pub config: watch::Receiver<Option<NodeConfig>>,
    /// Turns true once a configuration composed from a synced view
    /// ([`BlockView::synced`]) is published in `config`.
    pub ipam_synced: watch::Receiver<bool>,
    pub task: JoinHandle<()>,
}

/// The speaker's configuration: the resolved configuration with IPAM's blocks.
pub fn compose_config(
    mut base: watch::Receiver<Option<NodeConfig>>,
    mut snapshots: Snapshots,
    mut blocks: watch::Receiver<BlockView>,
) -> Composed {
    let (tx, rx) = watch::channel(None);
    let (synced_tx, synced_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let (composed, synced) = {
                let base = base.borrow_and_update();
                let snap = snapshots.borrow_and_update();
                let view = blocks.borrow_and_update();
                (
                    base.as_ref()
                        .map(|b| compose(b, &ipam_routes(snap.as_deref(), &view))),
                    view.synced,
                )
            };
            if let Some(cfg) = composed {
                publish_changed(&tx, Some(cfg));
                // Only after the configuration with the blocks is out.
                if synced {
                    publish_changed(&synced_tx, true);
                }
            }
            tokio::select! {
                r = base.changed() => if r.is_err() { break },
                r = snapshots.changed() => if r.is_err() { break },
                r = blocks.changed() => if r.is_err() { break },
                _ = tx.closed() => break,
            }
        }
    });
    Composed {
        config: rx,
        ipam_synced: synced_rx,
        task,
    }
}

/// The service advertisement settings for `node` from a snapshot.
fn advertisement_config(snapshot: &Snapshot, node: &str) -> AdvertisementConfig {
    let mut cfg = snapshot
        .bgp_configuration
        .as_ref()
        .map(|c| AdvertisementConfig::from_spec(&c.spec))
        .unwrap_or_default();
    cfg.node_excluded = node_labels(snapshot, node).contains_key(EXCLUDE_LABEL);
    cfg
}

/// Follows Services and EndpointSlices and tells the speaker which service
/// prefixes this node originates. Each rejected address is logged once.
/// `view` receives the outcome after every change.
pub async fn advertise_services(
    mut snapshots: Snapshots,
    node: String,
    speaker: SpeakerHandle,
    view: watch::Sender<ServicesView>,
) {
    let mut engine: Option<ServiceAdvertiser> = None;
    let mut first = true;
    loop {
        let snap = snapshots.borrow_and_update().clone();
        if let Some(snap) = snap {
            let engine = engine.get_or_insert_with(|| {
                ServiceAdvertiser::new(node.clone(), AdvertisementConfig::default())
            });
            // Configuration first, then the objects: two deltas, applied in order.
            let deltas = [
                engine.set_config(advertisement_config(&snap, &node)),
                engine.sync(&snap.services, &snap.endpoint_slices),
            ];
            for delta in deltas {
                for r in &delta.newly_rejected {
                    if r.reason.is_routine() {
                        info!(node = %node, "service address not advertised: {r}");
                    } else {
                        warn!(node = %node, "service address not advertised: {r}");
                    }
                }
                for e in &delta.invalid {
                    warn!(node = %node, "service object ignored: {e}");
                }
                if !delta.advertise.is_empty() || !delta.withdraw.is_empty() {
                    info!(
                        node = %node,
                        advertise = delta.advertise.len(),
                        withdraw = delta.withdraw.len(),
                        "service advertisements changed"
                    );
                }
                speaker.originate(delta.advertise, delta.withdraw).await;
            }
            let now = ServicesView {
                advertised: engine.advertised(),
                rejections: engine.rejections(),
            };
            publish_changed(&view, now);
            if std::mem::take(&mut first) {
                // The first snapshot's service addresses are originated
                // (sent on the same channel before this).
                speaker
                    .release_end_of_rib(petrel_speaker::END_OF_RIB_HOLD_SERVICES)
                    .await;
            }
        }
        if snapshots.changed().await.is_err() {
            break;
        }
    }
}
