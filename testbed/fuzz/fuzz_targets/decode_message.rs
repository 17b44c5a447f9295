//! Arbitrary bytes through petrel's FrameCodec and decoder under several
//! negotiated contexts. Properties: no panic; every decoded message that
//! re-encodes must decode again without a fatal error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use petrel_bgp::wire::{Family, FrameCodec, WireContext, decode, encode};
use tokio_util::codec::Decoder;

fn contexts() -> [WireContext; 4] {
    [
        WireContext::initial(),
        WireContext {
            four_octet_as: true,
            ..WireContext::default()
        },
        WireContext {
            four_octet_as: true,
            add_path_rx: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            add_path_tx: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            extended_message: true,
            ebgp: false,
        },
        WireContext {
            four_octet_as: false,
            add_path_rx: vec![Family::Ipv6Unicast],
            add_path_tx: vec![Family::Ipv6Unicast],
            extended_message: true,
            ebgp: true,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    for ctx in contexts() {
        let mut codec = FrameCodec::new(ctx.max_message_len());
        let mut buf = BytesMut::new();
        // Feed the stream in pieces to exercise partial frames.
        'feed: for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        if let Ok(rx) = decode(&frame, &ctx) {
                            if let Ok(bytes) = encode(&rx.message, &ctx) {
                                if let Err(e) = decode(&bytes, &ctx) {
                                    assert!(!e.is_fatal(), "re-encoded message rejected: {e}");
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
        // Also decode the raw input directly as one frame.
        let _ = decode(stream, &ctx);
    }
});
