//! Arbitrary OPEN bodies (valid header, type 1). Properties: no panic; an
//! accepted OPEN that encodes must decode back to the same Open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_bgp::wire::{Message, WireContext, decode, encode};

fuzz_target!(|body: &[u8]| {
    if body.len() > 4096 - 19 {
        return;
    }
    let mut frame = vec![0xffu8; 16];
    frame.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    frame.push(1);
    frame.extend_from_slice(body);
    let ctx = WireContext::initial();
    let Ok(rx) = decode(&frame, &ctx) else { return };
    let Message::Open(open) = &rx.message else {
        panic!("type 1 decoded as {:?}", rx.message);
    };
    if let Ok(bytes) = encode(&rx.message, &ctx) {
        let again = decode(&bytes, &ctx).expect("re-encoded OPEN must decode");
        assert_eq!(again.message, Message::Open(open.clone()));
    }
});
