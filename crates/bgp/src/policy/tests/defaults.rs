//! petrel's default import rules: from cluster nodes only their own pool
//! blocks and service prefixes; from external peers anything except
//! prefixes inside the cluster's IP pools.

use super::net;
use crate::policy::{
    ClusterView, ImportVerdict, RejectReason, default_import_from_external,
    default_import_from_node,
};

fn cluster() -> ClusterView {
    ClusterView {
        pools: vec![net("10.244.0.0/16"), net("fd00:244::/48")],
        blocks: vec![
            (net("10.244.1.0/26"), "node-a".into()),
            (net("10.244.1.64/26"), "node-b".into()),
            (net("fd00:244::/122"), "node-a".into()),
            (net("fd00:244::40/122"), "node-b".into()),
        ],
        service_cidrs: vec![net("10.96.0.0/12"), net("fd00:96::/112")],
        router_ids: vec![
            ("10.0.0.1".parse().unwrap(), "node-a".into()),
            ("10.0.0.2".parse().unwrap(), "node-b".into()),
            ("10.0.0.9".parse().unwrap(), "rr".into()),
        ],
        reflectors: vec!["rr".into()],
    }
}

/// A route reflected by a route-reflector node is judged as coming from its
/// originator; ORIGINATOR_ID from any other node is not trusted.
#[test]
fn reflected_routes_are_judged_by_their_originator() {
    let view = cluster();
    let a = Some("10.0.0.1".parse().unwrap());
    assert_eq!(view.originating_node("rr", a), "node-a");
    assert_eq!(view.originating_node("rr", None), "rr");
    assert_eq!(
        view.originating_node("rr", Some("192.0.2.1".parse().unwrap())),
        "rr",
        "an unknown originator is judged as the reflector itself"
    );
    assert_eq!(view.originating_node("node-b", a), "node-b");
    let from = view.originating_node("rr", a);
    assert_eq!(
        default_import_from_node(&view, from, net("10.244.1.0/26")),
        ImportVerdict::Accept
    );
    let forged = view.originating_node("node-b", a);
    assert_eq!(
        default_import_from_node(&view, forged, net("10.244.1.0/26")),
        not_owner("10.244.1.0/26", "node-a")
    );
}

fn not_owner(block: &str, owner: &str) -> ImportVerdict {
    ImportVerdict::Reject(RejectReason::NotOwner {
        block: net(block),
        owner: owner.into(),
    })
}

fn not_senders(pool: &str) -> ImportVerdict {
    ImportVerdict::Reject(RejectReason::NotSendersBlock { pool: net(pool) })
}

#[test]
fn import_from_node() {
    let view = cluster();
    let not_allowed = ImportVerdict::Reject(RejectReason::NotAllowed);
    let rows = [
        ("node-a", "10.244.1.0/26", ImportVerdict::Accept),
        ("node-a", "10.244.1.5/32", ImportVerdict::Accept),
        ("node-b", "10.244.1.64/26", ImportVerdict::Accept),
        // Hijack attempts: another node's block, or a more specific inside it.
        (
            "node-b",
            "10.244.1.0/26",
            not_owner("10.244.1.0/26", "node-a"),
        ),
        (
            "node-b",
            "10.244.1.5/32",
            not_owner("10.244.1.0/26", "node-a"),
        ),
        (
            "node-b",
            "10.244.1.0/27",
            not_owner("10.244.1.0/26", "node-a"),
        ),
        (
            "node-z",
            "10.244.1.64/26",
            not_owner("10.244.1.64/26", "node-b"),
        ),
        // In a pool but in no block of the sender (also aggregates over blocks).
        ("node-a", "10.244.1.0/25", not_senders("10.244.0.0/16")),
        ("node-a", "10.244.0.0/16", not_senders("10.244.0.0/16")),
        ("node-a", "10.244.9.0/26", not_senders("10.244.0.0/16")),
        // Service prefixes, from any node.
        ("node-a", "10.96.0.10/32", ImportVerdict::Accept),
        ("node-z", "10.96.0.0/12", ImportVerdict::Accept),
        // Anything else.
        ("node-a", "10.0.0.0/8", not_allowed.clone()),
        ("node-a", "0.0.0.0/0", not_allowed.clone()),
        ("node-a", "192.168.0.0/24", not_allowed.clone()),
        // IPv6.
        ("node-a", "fd00:244::/122", ImportVerdict::Accept),
        ("node-a", "fd00:244::7/128", ImportVerdict::Accept),
        (
            "node-b",
            "fd00:244::7/128",
            not_owner("fd00:244::/122", "node-a"),
        ),
        ("node-a", "fd00:244::1:0/122", not_senders("fd00:244::/48")),
        ("node-b", "fd00:96::1/128", ImportVerdict::Accept),
        ("node-a", "2001:db8::/32", not_allowed.clone()),
        ("node-a", "::/0", not_allowed),
    ];
    for (from, prefix, want) in rows {
        assert_eq!(
            default_import_from_node(&view, from, net(prefix)),
            want,
            "{prefix} from {from}"
        );
    }
}

/// Hijack protection comes before the service allowance: a service CIDR that
/// (wrongly) overlaps a block still cannot be used to take the block over.
#[test]
fn owner_check_precedes_service_prefixes() {
    let mut view = cluster();
    view.service_cidrs.push(net("10.244.1.0/24"));
    assert_eq!(
        default_import_from_node(&view, "node-b", net("10.244.1.8/29")),
        not_owner("10.244.1.0/26", "node-a")
    );
    assert_eq!(
        default_import_from_node(&view, "node-b", net("10.244.1.200/32")),
        ImportVerdict::Accept
    );
}

#[test]
fn import_from_external() {
    let view = cluster();
    let inside = |p: &str| ImportVerdict::Reject(RejectReason::InsidePool(net(p)));
    let rows = [
        ("10.244.1.0/26", inside("10.244.0.0/16")),
        ("10.244.0.0/16", inside("10.244.0.0/16")),
        ("10.244.200.7/32", inside("10.244.0.0/16")),
        ("fd00:244::5/128", inside("fd00:244::/48")),
        ("10.0.0.0/8", ImportVerdict::Accept),
        ("0.0.0.0/0", ImportVerdict::Accept),
        ("10.96.0.0/12", ImportVerdict::Accept),
        ("192.168.1.0/24", ImportVerdict::Accept),
        ("fd00::/16", ImportVerdict::Accept),
        ("::/0", ImportVerdict::Accept),
    ];
    for (prefix, want) in rows {
        assert_eq!(
            default_import_from_external(&view, net(prefix)),
            want,
            "{prefix}"
        );
    }
    assert_eq!(
        default_import_from_external(&ClusterView::default(), net("10.244.1.0/26")),
        ImportVerdict::Accept
    );
}

#[test]
fn reject_reasons_display_and_label() {
    let rows = [
        (
            RejectReason::NotOwner {
                block: net("10.244.1.0/26"),
                owner: "node-a".into(),
            },
            "inside block 10.244.1.0/26, which belongs to node node-a",
            "not_owner",
        ),
        (
            RejectReason::NotSendersBlock {
                pool: net("10.244.0.0/16"),
            },
            "inside IP pool 10.244.0.0/16 but not inside a block of the sending node",
            "not_senders_block",
        ),
        (
            RejectReason::InsidePool(net("fd00:244::/48")),
            "inside IP pool fd00:244::/48, announced by an external peer",
            "inside_pool",
        ),
        (
            RejectReason::NotAllowed,
            "neither a block of the sending node nor a service prefix",
            "not_allowed",
        ),
    ];
    for (reason, text, label) in rows {
        assert_eq!(reason.to_string(), text);
        assert_eq!(reason.label(), label);
    }
}
