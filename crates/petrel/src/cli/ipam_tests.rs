use super::*;

fn addr(a: &str, block: &str) -> pb::AllocatedAddress {
    pb::AllocatedAddress {
        address: a.into(),
        gateway: "10.65.0.1".into(),
        family: pb::IpFamily::Ipv4 as i32,
        block: block.into(),
        pool: "default".into(),
    }
}

fn alloc(cid: &str, addrs: Vec<pb::AllocatedAddress>) -> pb::Allocation {
    pb::Allocation {
        container_id: cid.into(),
        ifname: "eth0".into(),
        network: "petrel".into(),
        pod_namespace: "default".into(),
        pod_name: format!("pod-{cid}"),
        netns: format!("/var/run/netns/{cid}"),
        addresses: addrs,
    }
}

fn block(cidr: &str, owner: &str, state: pb::BlockState, gw: &str) -> pb::IpamBlock {
    pb::IpamBlock {
        cidr: cidr.into(),
        pool: "default".into(),
        owner_node: owner.into(),
        state: state as i32,
        used: 1,
        free: 61,
        export: true,
        gateway: gw.into(),
    }
}

fn status(allocations: Vec<pb::Allocation>) -> pb::GetIpamStatusResponse {
    pb::GetIpamStatusResponse {
        node: "node1".into(),
        ready: true,
        pools: vec![pb::IpPoolStatus {
            name: "default".into(),
            cidr: "10.65.0.0/16".into(),
            block_size: 26,
            family: pb::IpFamily::Ipv4 as i32,
            export: true,
            selected: true,
            blocks_total: 1024,
            blocks_claimed: 3,
            addresses_used: 1,
            addresses_free: 61,
            ..Default::default()
        }],
        blocks: vec![
            block(
                "10.65.0.0/26",
                "node1",
                pb::BlockState::Confirmed,
                "10.65.0.1",
            ),
            block(
                "10.65.0.64/26",
                "node1",
                pb::BlockState::Pending,
                "10.65.0.65",
            ),
            block(
                "10.65.1.0/26",
                "node2",
                pb::BlockState::Confirmed,
                "10.65.1.1",
            ),
        ],
        allocations,
        ..Default::default()
    }
}

#[test]
fn show_json_uses_enum_names() {
    let s = status(vec![alloc(
        "c1",
        vec![addr("10.65.0.5/26", "10.65.0.0/26")],
    )]);
    let j = serde_json::to_value(show_json(&s)).unwrap();
    assert_eq!(j["pools"][0]["family"], "IP_FAMILY_IPV4");
    assert_eq!(j["blocks"][0]["state"], "BLOCK_STATE_CONFIRMED");
    assert_eq!(j["blocks"][1]["state"], "BLOCK_STATE_PENDING");
    assert_eq!(
        j["allocations"][0]["addresses"][0]["family"],
        "IP_FAMILY_IPV4"
    );
    assert_eq!(j["allocations"][0]["pod_name"], "pod-c1");
    assert_eq!(j["node"], "node1");
}

#[test]
fn show_text_marks_own_blocks_and_lists_allocations() {
    let mut a = alloc(
        "0123456789abcdef",
        vec![addr("10.65.0.5/26", "10.65.0.0/26")],
    );
    a.pod_name = "web".into();
    let s = status(vec![a]);
    let text = show_text(&show_json(&s), false);
    assert!(text.contains("IPAM on node node1: ready"), "{text}");
    assert!(text.contains("node1 (this node)"), "{text}");
    assert!(
        text.contains("confirmed") && text.contains("pending"),
        "{text}"
    );
    assert!(text.contains("default/web"), "{text}");
    // The container id is cut to 12 characters, in full with -o wide.
    assert!(
        text.contains("0123456789ab ") && !text.contains("0123456789abc"),
        "{text}"
    );
    let wide = show_text(&show_json(&s), true);
    assert!(
        wide.contains("0123456789abcdef") && wide.contains("NETNS"),
        "{wide}"
    );
}

#[test]
fn check_accepts_a_consistent_state() {
    let s = status(vec![
        alloc("c1", vec![addr("10.65.0.5/26", "10.65.0.0/26")]),
        alloc("c2", vec![addr("10.65.0.6/26", "10.65.0.0/26")]),
    ]);
    let r = check(&s);
    assert!(r.ok, "{r:?}");
    assert_eq!((r.allocations, r.addresses), (2, 2));
    assert!(check_text(&r).contains("is consistent: 2 addresses"));
}

#[test]
fn check_finds_each_kind_of_problem() {
    let s = status(vec![
        // In another node's block.
        alloc("c1", vec![addr("10.65.1.5/26", "10.65.1.0/26")]),
        // In a block of ours that is not confirmed.
        alloc("c2", vec![addr("10.65.0.70/26", "10.65.0.64/26")]),
        // The gateway.
        alloc("c3", vec![addr("10.65.0.1/26", "10.65.0.0/26")]),
        // Twice.
        alloc("c4", vec![addr("10.65.0.9/26", "10.65.0.0/26")]),
        alloc("c5", vec![addr("10.65.0.9/26", "10.65.0.0/26")]),
        alloc("c6", vec![addr("bogus", "10.65.0.0/26")]),
    ]);
    let r = check(&s);
    assert!(!r.ok);
    let kinds: Vec<(&str, &str)> = r
        .problems
        .iter()
        .map(|p| (p.kind, p.container_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("outside-blocks", "c1"),
            ("outside-blocks", "c2"),
            ("gateway", "c3"),
            ("invalid-address", "c6"),
            ("duplicate", "c4"),
            ("duplicate", "c5"),
        ]
    );
    assert!(
        r.problems[0].message.contains("owned by node2"),
        "{:?}",
        r.problems[0]
    );
    assert!(
        r.problems[1].message.contains("(pending)"),
        "{:?}",
        r.problems[1]
    );
    let text = check_text(&r);
    assert!(text.contains("6 problems in 6 addresses"), "{text}");
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["problems"][2]["kind"], "gateway");
}

#[test]
fn huge_ipv6_pools_show_their_block_count_as_a_power_of_two() {
    let mut s = status(Vec::new());
    s.pools.push(pb::IpPoolStatus {
        name: "v6".into(),
        cidr: "fd00:65::/48".into(),
        block_size: 122,
        family: pb::IpFamily::Ipv6 as i32,
        selected: true,
        blocks_total: u64::MAX,
        blocks_claimed: 2,
        ..Default::default()
    });
    let text = show_text(&show_json(&s), false);
    assert!(text.contains("2/2^74"), "{text}");
    assert!(text.contains("3/1024"), "{text}");
    assert!(!text.contains(&u64::MAX.to_string()), "{text}");
}
