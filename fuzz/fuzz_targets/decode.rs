//! Fuzz target for `midge_protocol::decode`: arbitrary bytes, fed as one read
//! and again as two reads, with a small packet limit.
//!
//! Checked on every input:
//! - the decoder never panics;
//! - one read and two reads give the same packets and the same first error;
//! - `Ok(None)` consumes nothing, and the decoder never grows the buffer past
//!   the limit;
//! - every decoded packet re-encodes, and the encoding decodes to the same
//!   packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use midge_protocol::{decode, encode, DecodeError, Packet};

/// Small, so that the limit is often hit.
const MAX: usize = 4096;

/// Feeds `reads` one after the other and decodes until the input runs out or
/// the first error.
fn decode_reads(reads: &[&[u8]]) -> (Vec<Packet>, Option<DecodeError>) {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            let before = buf.clone();
            let capacity = buf.capacity();
            let next = decode(&mut buf, MAX);
            assert!(
                buf.capacity() <= capacity.max(MAX),
                "decode grew the buffer from {capacity} to {}",
                buf.capacity()
            );
            match next {
                Ok(Some(packet)) => {
                    check_roundtrip(&packet);
                    packets.push(packet);
                }
                Ok(None) => {
                    assert_eq!(buf, before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => return (packets, Some(e)),
            }
        }
    }
    (packets, None)
}

fn check_roundtrip(packet: &Packet) {
    let mut out = BytesMut::new();
    if let Err(e) = encode(packet, &mut out) {
        panic!("decoded {packet:?} does not re-encode: {e}");
    }
    // The encoding is never longer than what was read: the limit holds.
    let len = out.len();
    match decode(&mut out, MAX) {
        Ok(Some(again)) => assert_eq!(&again, packet, "re-encoding changed the packet"),
        other => panic!("re-encoded {packet:?} ({len} bytes) decodes as {other:?}"),
    }
    assert!(out.is_empty(), "re-encoding has trailing bytes");
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the second read starts.
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let (first, second) = data.split_at(usize::from(split).min(data.len()));
    let whole = decode_reads(&[data]);
    let split = decode_reads(&[first, second]);
    assert_eq!(whole, split, "split at {} changed the result", first.len());
});
