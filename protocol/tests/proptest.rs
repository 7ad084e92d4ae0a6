//! Properties of the codec over generated input: encoding then decoding any
//! valid packet gives it back, split reads change nothing, and arbitrary bytes
//! neither panic the decoder nor make it hold more than its limit.

mod common;

use bytes::BytesMut;
use common::{decode_all, decode_in_reads, encoded, feed_in_reads};
use midge_protocol::{decode, encode, encoded_len, DecodeError, Packet};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn encode_then_decode_is_the_identity(packet in common::packet()) {
        let bytes = encoded(&packet);
        prop_assert_eq!(encoded_len(&packet), Ok(bytes.len()));
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, bytes.len()), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decode_then_encode_gives_the_same_bytes(packet in common::packet()) {
        let bytes = encoded(&packet);
        let mut buf = BytesMut::from(&bytes[..]);
        let decoded = decode(&mut buf, bytes.len())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("incomplete"))?;
        prop_assert_eq!(encoded(&decoded), bytes);
    }

    #[test]
    fn encode_appends_to_what_the_buffer_holds(
        packet in common::packet(),
        prefix in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = BytesMut::from(&prefix[..]);
        encode(&packet, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&buf[prefix.len()..], &encoded(&packet)[..]);
    }

    #[test]
    fn stream_cut_at_random_points_decodes_to_the_same_packets(
        packets in proptest::collection::vec(common::packet(), 1..12),
        sizes in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let bytes: Vec<u8> = packets.iter().flat_map(encoded).collect();
        let max = 1 << 16;
        prop_assert_eq!(decode_all(&bytes, max), Ok(packets.clone()));
        prop_assert_eq!(decode_in_reads(&bytes, &sizes, max), Ok(packets));
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_grow_the_buffer_past_the_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        max in 2usize..300,
    ) {
        // `feed_in_reads` asserts the capacity bound after every call;
        // errors are expected, panics are not. Fed whole, the same bytes give
        // the same packets up to the same first error.
        let in_reads = feed_in_reads(&bytes, &sizes, max);
        let whole = feed_in_reads(&bytes, &[bytes.len()], max);
        prop_assert_eq!(in_reads, whole);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        byte1 in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        // A well-framed packet of any type and flags with a random body
        // reaches every body parser, unlike fully random bytes.
        let mut bytes = vec![byte1];
        let mut len = body.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            bytes.push(if len > 0 { b | 0x80 } else { b });
            if len == 0 {
                break;
            }
        }
        bytes.extend_from_slice(&body);
        let mut buf = BytesMut::from(&bytes[..]);
        match decode(&mut buf, 1024) {
            Ok(Some(p)) => {
                prop_assert!(buf.is_empty());
                // Whatever is accepted re-encodes to a packet that decodes
                // the same.
                let again = encoded(&p);
                let mut buf = BytesMut::from(&again[..]);
                prop_assert_eq!(decode(&mut buf, 1024), Ok(Some(p)));
            }
            Ok(None) => prop_assert!(false, "a whole packet was buffered"),
            Err(_) => {}
        }
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone(
        byte1 in 1u8..=0xef,
        len in 300usize..268_435_455,
    ) {
        let mut header = vec![byte1];
        let mut rest = len;
        loop {
            let b = (rest & 0x7f) as u8;
            rest >>= 7;
            header.push(if rest > 0 { b | 0x80 } else { b });
            if rest == 0 {
                break;
            }
        }
        let mut buf = BytesMut::from(&header[..]);
        let cap = buf.capacity();
        match decode(&mut buf, 256) {
            Err(DecodeError::PacketTooLarge { size, max }) => {
                prop_assert_eq!((size, max), (header.len() + len, 256));
            }
            // A bad type or flags may be reported first.
            Err(DecodeError::ReservedPacketType(_) | DecodeError::InvalidFlags { .. }
                | DecodeError::InvalidQoS | DecodeError::DupOnQoS0) => {}
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert!(buf.capacity() <= cap.max(256));
    }
}

proptest! {
    // Fewer and coarser cuts: every cut copies the buffer to check that
    // `Ok(None)` consumed nothing.
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn large_publishes_split_anywhere_decode_the_same(
        publish in common::publish(40_000),
        first in 1usize..6,
        rest in proptest::collection::vec(200usize..8_000, 1..20),
    ) {
        // The first read may end inside the fixed header.
        let sizes: Vec<usize> = std::iter::once(first).chain(rest).collect();
        let packet = Packet::Publish(publish);
        let bytes = encoded(&packet);
        prop_assert_eq!(decode_in_reads(&bytes, &sizes, 1 << 16), Ok(vec![packet]));
    }
}

/// The definition of a valid topic filter, level by level [MQTT-4.7.1-2]
/// [MQTT-4.7.1-3]: the oracle for the one-pass check the codec uses.
fn filter_by_levels(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| {
            let hash_ok = !level.contains('#') || (*level == "#" && i + 1 == levels.len());
            let plus_ok = !level.contains('+') || *level == "+";
            hash_ok && plus_ok
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn topic_filter_check_agrees_with_the_level_definition(
        filter in prop_oneof!["[a/+#]{0,8}", "[^\\x00]{0,12}", "[/+#é]{0,6}"],
    ) {
        prop_assert_eq!(
            midge_protocol::topic::valid_topic_filter(&filter),
            filter_by_levels(&filter),
            "{:?}", filter
        );
        let name_ok = !filter.is_empty() && !filter.contains(['+', '#']);
        prop_assert_eq!(midge_protocol::topic::valid_topic_name(&filter), name_ok);
    }
}

/// Raw string bytes from pieces that matter to the checks on strings:
/// U+0000, wildcards, separators, ASCII, a two-byte character, a stray
/// continuation byte and an encoded surrogate.
fn raw_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b"\x00"[..]),
        Just(&b"+"[..]),
        Just(&b"#"[..]),
        Just(&b"/"[..]),
        Just(&b"a"[..]),
        Just(&b"sensor"[..]),
        Just(&b"\xc3\xa4"[..]),
        Just(&b"\x80"[..]),
        Just(&b"\xed\xa0\x80"[..]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// The error, if any, the rules on strings [MQTT-1.5.3] give for `raw`.
fn string_rules(raw: &[u8]) -> Result<&str, DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    let text = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
    if text.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    Ok(text)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn publish_topic_checks_agree_with_the_rules(raw in raw_text()) {
        let want = string_rules(&raw).and_then(|t| {
            if t.contains(['+', '#']) { Err(DecodeError::WildcardInTopicName) } else { Ok(()) }
        });
        let mut body = (raw.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&raw);
        let mut bytes = vec![0x30];
        bytes.extend(encoded_remaining_len(body.len()));
        bytes.extend_from_slice(&body);
        let got = decode(&mut BytesMut::from(&bytes[..]), 1024).map(|_| ());
        prop_assert_eq!(got, want, "{:02x?}", raw);
    }

    #[test]
    fn subscribe_filter_checks_agree_with_the_rules(raw in raw_text()) {
        let want = string_rules(&raw).and_then(|f| {
            if filter_by_levels(f) { Ok(()) } else { Err(DecodeError::InvalidTopicFilter) }
        });
        let mut body = vec![0, 1];
        body.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        body.extend_from_slice(&raw);
        body.push(1);
        let mut bytes = vec![0x82];
        bytes.extend(encoded_remaining_len(body.len()));
        bytes.extend_from_slice(&body);
        let got = decode(&mut BytesMut::from(&bytes[..]), 1024).map(|_| ());
        prop_assert_eq!(got, want, "{:02x?}", raw);
    }
}

/// The variable-length encoding of a remaining length.
fn encoded_remaining_len(mut len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len > 0 { b | 0x80 } else { b });
        if len == 0 {
            return out;
        }
    }
}
