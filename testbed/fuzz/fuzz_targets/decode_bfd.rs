//! Arbitrary bytes as a BFD Control packet (petrel-bfd). Properties: the
//! decoder never panics; an accepted packet encodes and decodes back to
//! itself; the full receive path (session table, then the session state
//! machine in Down, Up and AdminDown) never panics and only ever emits
//! packets that pass the receiver's checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_bfd::{
    Action, Diagnostic, PathKey, Received, SessionConfig, SessionTable, SplitMix64, decode,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn check_sent(actions: &[Action]) {
    for a in actions {
        if let Action::Send(p) = a {
            let bytes = p.encode().expect("a session emitted an unencodable packet");
            assert_eq!(decode(&bytes).expect("emitted packet must decode"), *p);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = decode(data) {
        let bytes = packet.encode().expect("an accepted packet must encode");
        assert_eq!(
            decode(&bytes).expect("re-encoded packet must decode"),
            packet
        );
    }

    let now = Instant::now();
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let mut table = SessionTable::new(SplitMix64::new(1));
    let path = PathKey::SingleHop {
        peer,
        interface: Some(2),
    };
    let Ok((discriminator, actions)) = table.insert(path, SessionConfig::default(), now) else {
        panic!("inserting the only session must succeed");
    };
    check_sent(&actions);
    let rx = Received {
        source: SocketAddr::new(peer, 49152),
        local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        interface: 2,
        ttl: 255,
        multihop: false,
    };
    // Down, then whatever the packet did, then AdminDown.
    for step in 0..3u64 {
        let t = now + Duration::from_millis(10 * step);
        if step == 2 {
            if let Some(s) = table.get_mut(discriminator) {
                check_sent(&s.admin_down(t, Diagnostic::ADMINISTRATIVELY_DOWN));
            }
        }
        if let Ok((_, actions)) = table.receive(t, data, &rx) {
            check_sent(&actions);
        }
        if let Some(s) = table.get_mut(discriminator) {
            check_sent(&s.on_tx_timer(t + Duration::from_secs(2)));
            check_sent(&s.on_detect_timer(t + Duration::from_secs(3600)));
        }
    }
});
