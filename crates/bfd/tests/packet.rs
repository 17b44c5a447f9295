//! Control packet codec: byte-exact vectors built from the RFC 5880 §4.1
//! field layout, one test per §6.8.6 discard rule, and robustness.

mod common;

use petrel_bfd::packet::{MANDATORY_LEN, MAX_LEN};
use petrel_bfd::{
    AuthSection, AuthType, ControlPacket, DecodeError, Diagnostic, EncodeError, RandomSource,
    SplitMix64, State, decode,
};

/// Down, no diagnostic, Detect Mult 3, My Discriminator 1, Your 0,
/// Desired Min TX 1 s, Required Min RX 300 ms, no Echo.
const DOWN: [u8; 24] = [
    0x20, // Vers 1, Diag 0
    0x40, // Sta Down, no flags
    0x03, // Detect Mult
    0x18, // Length 24
    0x00, 0x00, 0x00, 0x01, // My Discriminator
    0x00, 0x00, 0x00, 0x00, // Your Discriminator
    0x00, 0x0f, 0x42, 0x40, // Desired Min TX 1 000 000 µs
    0x00, 0x04, 0x93, 0xe0, // Required Min RX 300 000 µs
    0x00, 0x00, 0x00, 0x00, // Required Min Echo RX 0
];

fn down_packet() -> ControlPacket {
    ControlPacket {
        diagnostic: Diagnostic::NONE,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 1,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
        auth: None,
    }
}

fn with(bytes: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = bytes.to_vec();
    edit(&mut v);
    v
}

#[test]
fn down_packet_encodes_to_the_rfc_layout() {
    assert_eq!(down_packet().encode().unwrap(), DOWN);
    assert_eq!(decode(&DOWN).unwrap(), down_packet());
}

#[test]
fn up_packet_with_poll_encodes_state_and_poll_bits() {
    let p = ControlPacket {
        state: State::Up,
        poll: true,
        your_discriminator: 0xdead_beef,
        desired_min_tx_us: 300_000,
        ..down_packet()
    };
    let bytes = [
        0x20, 0xe0, 0x03, 0x18, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x04, 0x93, 0xe0, 0x00,
        0x04, 0x93, 0xe0, 0, 0, 0, 0,
    ];
    assert_eq!(p.encode().unwrap(), bytes);
    assert_eq!(decode(&bytes).unwrap(), p);
}

#[test]
fn final_and_control_plane_independent_bits_have_their_own_positions() {
    let p = ControlPacket {
        state: State::Up,
        final_: true,
        control_plane_independent: true,
        your_discriminator: 7,
        ..down_packet()
    };
    let bytes = p.encode().unwrap();
    assert_eq!(bytes[1], 0xc0 | 0x10 | 0x08);
    assert_eq!(decode(&bytes).unwrap(), p);
}

#[test]
fn demand_bit_round_trips() {
    let p = ControlPacket {
        state: State::Up,
        demand: true,
        your_discriminator: 9,
        ..down_packet()
    };
    let bytes = p.encode().unwrap();
    assert_eq!(bytes[1], 0xc0 | 0x02);
    assert!(decode(&bytes).unwrap().demand);
}

#[test]
fn diagnostic_and_admin_down_state_share_the_first_two_bytes() {
    let p = ControlPacket {
        diagnostic: Diagnostic::ADMINISTRATIVELY_DOWN,
        state: State::AdminDown,
        ..down_packet()
    };
    let bytes = p.encode().unwrap();
    assert_eq!(&bytes[..2], &[0x27, 0x00]);
    let p = ControlPacket {
        diagnostic: Diagnostic::CONTROL_DETECTION_TIME_EXPIRED,
        ..down_packet()
    };
    assert_eq!(p.encode().unwrap()[0], 0x21);
}

#[test]
fn unassigned_diagnostics_are_carried_as_received() {
    let bytes = with(&DOWN, |b| b[0] = 0x20 | 31);
    let p = decode(&bytes).unwrap();
    assert_eq!(p.diagnostic.to_wire(), 31);
    assert_eq!(p.diagnostic.to_string(), "unassigned (31)");
    assert_eq!(p.encode().unwrap(), bytes);
    assert_eq!(Diagnostic::new(32), None);
}

#[test]
fn simple_password_auth_section_is_parsed_and_re_encoded() {
    // A bit, Length 24 + 7: Auth Type 1, Auth Len 7, Key ID 5, "abcd".
    let bytes = with(&DOWN, |b| {
        b[1] |= 0x04;
        b[3] = 31;
        b.extend_from_slice(&[1, 7, 5, b'a', b'b', b'c', b'd']);
    });
    let p = decode(&bytes).unwrap();
    let auth = p.auth.clone().expect("auth section");
    assert_eq!(auth.auth_type, AuthType::SIMPLE_PASSWORD);
    assert_eq!(auth.key_id(), Some(5));
    assert_eq!(auth.auth_len(), 7);
    assert_eq!(p.encode().unwrap(), bytes);
}

#[test]
fn keyed_sha1_auth_section_of_28_bytes_is_accepted() {
    let bytes = with(&DOWN, |b| {
        b[1] |= 0x04;
        b[3] = 24 + 28;
        b.extend_from_slice(&[4, 28, 1, 0]);
        b.extend_from_slice(&[0u8; 24]);
    });
    let p = decode(&bytes).unwrap();
    assert_eq!(p.auth.as_ref().unwrap().auth_type, AuthType::KEYED_SHA1);
    assert_eq!(p.encoded_len(), 52);
}

#[test]
fn bytes_after_length_are_ignored() {
    let bytes = with(&DOWN, |b| b.extend_from_slice(&[0xff; 8]));
    assert_eq!(decode(&bytes).unwrap(), down_packet());
}

// --- RFC 5880 §6.8.6 discard rules, in order -------------------------------

#[test]
fn payload_shorter_than_the_mandatory_section_is_truncated() {
    for len in 0..MANDATORY_LEN {
        assert_eq!(
            decode(&DOWN[..len]),
            Err(DecodeError::Truncated { payload: len })
        );
    }
}

#[test]
fn version_other_than_one_is_discarded() {
    for v in [0u8, 2, 3, 7] {
        let bytes = with(&DOWN, |b| b[0] = (v << 5) | (b[0] & 0x1f));
        assert_eq!(decode(&bytes), Err(DecodeError::BadVersion(v)));
    }
}

#[test]
fn length_below_24_is_discarded() {
    let bytes = with(&DOWN, |b| b[3] = 23);
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::LengthBelowMinimum {
            length: 23,
            minimum: 24
        })
    );
}

#[test]
fn length_below_26_with_the_a_bit_is_discarded() {
    let bytes = with(&DOWN, |b| {
        b[1] |= 0x04;
        b[3] = 25;
        b.push(1);
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::LengthBelowMinimum {
            length: 25,
            minimum: 26
        })
    );
}

#[test]
fn length_beyond_the_payload_is_discarded() {
    let bytes = with(&DOWN, |b| b[3] = 25);
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::LengthExceedsPayload {
            length: 25,
            payload: 24
        })
    );
}

#[test]
fn zero_detect_mult_is_discarded() {
    let bytes = with(&DOWN, |b| b[2] = 0);
    assert_eq!(decode(&bytes), Err(DecodeError::ZeroDetectMult));
}

#[test]
fn multipoint_bit_is_discarded() {
    let bytes = with(&DOWN, |b| b[1] |= 0x01);
    assert_eq!(decode(&bytes), Err(DecodeError::Multipoint));
}

#[test]
fn zero_my_discriminator_is_discarded() {
    let bytes = with(&DOWN, |b| b[7] = 0);
    assert_eq!(decode(&bytes), Err(DecodeError::ZeroMyDiscriminator));
}

#[test]
fn zero_your_discriminator_is_accepted_only_in_down_and_admin_down() {
    for (sta, state) in [
        (0u8, State::AdminDown),
        (1, State::Down),
        (2, State::Init),
        (3, State::Up),
    ] {
        let bytes = with(&DOWN, |b| b[1] = sta << 6);
        let result = decode(&bytes);
        match state {
            State::AdminDown | State::Down => assert_eq!(result.unwrap().state, state),
            _ => assert_eq!(result, Err(DecodeError::ZeroYourDiscriminator { state })),
        }
    }
}

#[test]
fn poll_and_final_together_are_discarded() {
    let bytes = with(&DOWN, |b| b[1] |= 0x30);
    assert_eq!(decode(&bytes), Err(DecodeError::PollAndFinal));
}

#[test]
fn reserved_auth_type_zero_is_discarded() {
    let bytes = with(&DOWN, |b| {
        b[1] |= 0x04;
        b[3] = 28;
        b.extend_from_slice(&[0, 4, 1, 0]);
    });
    assert_eq!(decode(&bytes), Err(DecodeError::ReservedAuthType));
}

#[test]
fn auth_len_running_past_length_is_discarded() {
    let bytes = with(&DOWN, |b| {
        b[1] |= 0x04;
        b[3] = 28;
        b.extend_from_slice(&[1, 5, 1, b'x', 0xee]);
    });
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::BadAuthLength {
            auth_len: 5,
            room: 4
        })
    );
}

#[test]
fn auth_len_below_two_is_discarded() {
    for auth_len in [0u8, 1] {
        let bytes = with(&DOWN, |b| {
            b[1] |= 0x04;
            b[3] = 26;
            b.extend_from_slice(&[1, auth_len]);
        });
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::BadAuthLength { auth_len, room: 2 })
        );
    }
}

#[test]
fn checks_apply_in_rfc_order() {
    // Bad version wins over everything else that is wrong.
    let bytes = with(&DOWN, |b| {
        b[0] = 0x40;
        b[2] = 0;
        b[1] |= 0x01;
    });
    assert_eq!(decode(&bytes), Err(DecodeError::BadVersion(2)));
    // Length before Detect Mult.
    let bytes = with(&DOWN, |b| {
        b[3] = 20;
        b[2] = 0;
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::LengthBelowMinimum { .. })
    ));
    // Detect Mult before Multipoint before My Discriminator.
    let bytes = with(&DOWN, |b| {
        b[2] = 0;
        b[1] |= 0x01;
        b[7] = 0;
    });
    assert_eq!(decode(&bytes), Err(DecodeError::ZeroDetectMult));
}

#[test]
fn every_first_and_second_byte_is_judged_by_the_rules() {
    // All 65536 combinations of Vers/Diag and Sta/flags over a valid packet
    // with a nonzero Your Discriminator.
    let base = with(&DOWN, |b| b[11] = 9);
    for b0 in 0..=255u8 {
        for b1 in 0..=255u8 {
            let bytes = with(&base, |b| {
                b[0] = b0;
                b[1] = b1;
            });
            let expected_ok = b0 >> 5 == 1
                && b1 & 0x04 == 0 // A bit: Length 24 is below 26
                && b1 & 0x01 == 0
                && b1 & 0x30 != 0x30;
            let result = decode(&bytes);
            assert_eq!(
                result.is_ok(),
                expected_ok,
                "b0={b0:#04x} b1={b1:#04x}: {result:?}"
            );
            if let Ok(p) = result {
                assert_eq!(p.encode().unwrap(), bytes);
            }
        }
    }
}

// --- Encoding refuses what decoding rejects ---------------------------------

#[test]
fn encoder_refuses_packets_the_receiver_would_discard() {
    let p = down_packet();
    assert_eq!(
        ControlPacket {
            detect_mult: 0,
            ..p.clone()
        }
        .encode(),
        Err(EncodeError::ZeroDetectMult)
    );
    assert_eq!(
        ControlPacket {
            my_discriminator: 0,
            ..p.clone()
        }
        .encode(),
        Err(EncodeError::ZeroMyDiscriminator)
    );
    assert_eq!(
        ControlPacket {
            state: State::Up,
            ..p.clone()
        }
        .encode(),
        Err(EncodeError::ZeroYourDiscriminator { state: State::Up })
    );
    assert_eq!(
        ControlPacket {
            poll: true,
            final_: true,
            ..p.clone()
        }
        .encode(),
        Err(EncodeError::PollAndFinal)
    );
    let auth = AuthSection {
        auth_type: AuthType::KEYED_MD5,
        data: vec![0; 230],
    };
    assert_eq!(
        ControlPacket {
            auth: Some(auth),
            ..p
        }
        .encode(),
        Err(EncodeError::TooLong { len: 256 })
    );
}

#[test]
fn largest_auth_section_fills_the_length_field_exactly() {
    let auth = AuthSection {
        auth_type: AuthType::KEYED_MD5,
        data: vec![7; MAX_LEN - 26],
    };
    let p = ControlPacket {
        auth: Some(auth),
        ..down_packet()
    };
    let bytes = p.encode().unwrap();
    assert_eq!(bytes.len(), MAX_LEN);
    assert_eq!(bytes[3], 255);
    assert_eq!(decode(&bytes).unwrap(), p);
}

#[test]
fn encode_into_leaves_the_buffer_untouched_on_error() {
    let mut out = vec![1, 2, 3];
    let bad = ControlPacket {
        detect_mult: 0,
        ..down_packet()
    };
    assert!(bad.encode_into(&mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
    down_packet().encode_into(&mut out).unwrap();
    assert_eq!(&out[3..], DOWN);
}

#[test]
fn random_datagrams_never_panic_and_accepted_ones_round_trip() {
    let mut rng = SplitMix64::new(0x5eed);
    let mut accepted = 0;
    for _ in 0..200_000 {
        let len = (rng.next_u32() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        // Bias towards plausible headers so the deeper checks run.
        if len > 3 && rng.next_u32() & 1 == 0 {
            bytes[0] = 0x20 | (bytes[0] & 0x1f);
            bytes[1] &= !0x01;
            bytes[3] = (24 + rng.next_u32() % 8) as u8;
        }
        if let Ok(p) = decode(&bytes) {
            accepted += 1;
            let again = p.encode().expect("an accepted packet encodes");
            assert_eq!(decode(&again).unwrap(), p);
        }
    }
    assert!(
        accepted > 1_000,
        "only {accepted} random packets were valid"
    );
}
