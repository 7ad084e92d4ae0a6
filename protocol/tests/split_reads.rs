//! Scripted split reads: packets arriving in pieces, fed to [`decode`]
//! directly and through `tokio_util::codec::FramedRead` over a mock reader
//! whose script says what each read returns, as in tokio-util's
//! `tests/length_delimited.rs`.

mod common;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use common::{decode_all, decode_in_reads, encoded, one_of_each, pid};
use futures::task::noop_waker_ref;
use futures::Stream;
use midge_protocol::{decode, Codec, CodecError, DecodeError, Packet, Publish, QosPid};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::FramedRead;

/// Every packet type, one after the other, as one byte string.
fn stream_of_each() -> (Vec<u8>, Vec<Packet>) {
    let packets = one_of_each();
    let bytes = packets.iter().flat_map(encoded).collect();
    (bytes, packets)
}

#[test]
fn stream_fed_whole_gives_every_packet() {
    let (bytes, packets) = stream_of_each();
    assert_eq!(decode_all(&bytes, 1024), Ok(packets));
}

#[test]
fn stream_fed_byte_by_byte_gives_the_same_packets() {
    let (bytes, packets) = stream_of_each();
    // `decode_in_reads` checks that each Ok(None) consumes nothing.
    assert_eq!(decode_in_reads(&bytes, &[1], 1024), Ok(packets));
}

#[test]
fn stream_fed_in_chunks_gives_the_same_packets() {
    let (bytes, packets) = stream_of_each();
    for sizes in [&[2][..], &[3], &[7], &[64], &[5, 1, 300, 2], &[1, 1000]] {
        assert_eq!(
            decode_in_reads(&bytes, sizes, 1024),
            Ok(packets.clone()),
            "reads of {sizes:?}"
        );
    }
}

#[test]
fn ok_none_consumes_nothing_at_every_prefix() {
    let bytes = encoded(&Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(pid(9)),
        retain: false,
        topic: "a/b".into(),
        payload: vec![1; 200].into(),
    }));
    for n in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..n]);
        assert_eq!(decode(&mut buf, 1024), Ok(None), "prefix of {n} bytes");
        assert_eq!(&buf[..], &bytes[..n], "prefix of {n} bytes was consumed");
    }
}

#[test]
fn error_in_second_packet_comes_after_the_first() {
    let mut bytes = encoded(&Packet::PingReq);
    bytes.extend_from_slice(b"\x60\x02\x00\x01");
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, 64), Ok(Some(Packet::PingReq)));
    assert!(matches!(
        decode(&mut buf, 64),
        Err(DecodeError::InvalidFlags { .. })
    ));
}

// ---- FramedRead over a scripted reader ----

/// What one `poll_read` of the mock returns.
enum Read {
    Data(&'static [u8]),
    Pending,
}

use Read::{Data, Pending};

/// An `AsyncRead` that plays a script, then reports end of stream.
struct Mock {
    script: VecDeque<Read>,
}

fn mock(script: impl IntoIterator<Item = Read>) -> Mock {
    Mock {
        script: script.into_iter().collect(),
    }
}

impl AsyncRead for Mock {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.script.pop_front() {
            None => Poll::Ready(Ok(())),
            Some(Data(data)) => {
                assert!(buf.remaining() >= data.len(), "read buffer too small");
                buf.put_slice(data);
                Poll::Ready(Ok(()))
            }
            Some(Pending) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

type Framed = FramedRead<Mock, Codec>;

fn poll_next(io: &mut Framed) -> Poll<Option<Result<Packet, CodecError>>> {
    let mut cx = Context::from_waker(noop_waker_ref());
    Pin::new(io).poll_next(&mut cx)
}

#[track_caller]
fn assert_next_eq(io: &mut Framed, want: Packet) {
    match poll_next(io) {
        Poll::Ready(Some(Ok(p))) => assert_eq!(p, want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_next_pending(io: &mut Framed) {
    match poll_next(io) {
        Poll::Pending => {}
        other => panic!("expected pending, got {other:?}"),
    }
}

#[track_caller]
fn assert_next_decode_err(io: &mut Framed, want: DecodeError) {
    match poll_next(io) {
        Poll::Ready(Some(Err(CodecError::Decode(e)))) => assert_eq!(e, want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_done(io: &mut Framed) {
    match poll_next(io) {
        Poll::Ready(None) => {}
        other => panic!("expected end of stream, got {other:?}"),
    }
}

fn framed(script: impl IntoIterator<Item = Read>) -> Framed {
    FramedRead::new(mock(script), Codec::new(1024))
}

#[test]
fn read_single_packet_one_read() {
    let mut io = framed([Data(b"\x30\x0a\x00\x03a/bhello")]);
    assert_next_eq(&mut io, Packet::Publish(Publish::new("a/b", &b"hello"[..])));
    assert_done(&mut io);
}

#[test]
fn read_multi_packet_one_read() {
    let mut io = framed([Data(b"\x40\x02\x00\x01\xc0\x00\x30\x05\x00\x01tab")]);
    assert_next_eq(&mut io, Packet::PubAck(pid(1)));
    assert_next_eq(&mut io, Packet::PingReq);
    assert_next_eq(&mut io, Packet::Publish(Publish::new("t", &b"ab"[..])));
    assert_done(&mut io);
}

#[test]
fn read_single_packet_split_inside_header_and_body() {
    let mut io = framed([
        Data(b"\x30"),
        Data(b"\x0a\x00"),
        Data(b"\x03a/"),
        Data(b"bhello"),
    ]);
    assert_next_eq(&mut io, Packet::Publish(Publish::new("a/b", &b"hello"[..])));
    assert_done(&mut io);
}

#[test]
fn read_single_packet_split_with_pending_reads() {
    let mut io = framed([
        Data(b"\x30"),
        Pending,
        Data(b"\x0a\x00\x03"),
        Pending,
        Data(b"a/bhello"),
        Pending,
    ]);
    assert_next_pending(&mut io);
    assert_next_pending(&mut io);
    assert_next_eq(&mut io, Packet::Publish(Publish::new("a/b", &b"hello"[..])));
    assert_next_pending(&mut io);
    assert_done(&mut io);
}

#[test]
fn read_multi_packet_split_across_packet_boundaries() {
    let mut io = framed([
        Data(b"\x40\x02"),
        Pending,
        Data(b"\x00\x01\xc0"),
        Pending,
        Data(b"\x00\x82\x06\x00\x05\x00"),
        Data(b"\x01#\x01\xe0"),
        Pending,
        Data(b"\x00"),
    ]);
    assert_next_pending(&mut io);
    assert_next_eq(&mut io, Packet::PubAck(pid(1)));
    assert_next_pending(&mut io);
    assert_next_eq(&mut io, Packet::PingReq);
    let Poll::Ready(Some(Ok(Packet::Subscribe(s)))) = poll_next(&mut io) else {
        panic!("a subscribe");
    };
    assert_eq!((s.pkid, s.filters[0].filter.as_str()), (pid(5), "#"));
    assert_next_pending(&mut io);
    assert_next_eq(&mut io, Packet::Disconnect);
    assert_done(&mut io);
}

#[test]
fn read_oversized_packet_fails_after_the_header_without_the_body() {
    // The script holds the header only: the error must not wait for the body.
    let mut io = framed([Data(b"\x30\xe0"), Pending, Data(b"\xd4\x03"), Pending]);
    assert_next_pending(&mut io);
    assert_next_decode_err(
        &mut io,
        DecodeError::PacketTooLarge {
            size: 60_004,
            max: 1024,
        },
    );
}

#[test]
fn read_malformed_packet_after_a_good_one() {
    let mut io = framed([Data(b"\xc0\x00\x38\x05\x00\x03a/b")]);
    assert_next_eq(&mut io, Packet::PingReq);
    assert_next_decode_err(&mut io, DecodeError::DupOnQoS0);
}

#[test]
fn read_end_of_stream_inside_a_packet_is_an_error() {
    let mut io = framed([Data(b"\x30\x0a\x00\x03a/b")]);
    match poll_next(&mut io) {
        Poll::Ready(Some(Err(CodecError::Io(e)))) => {
            assert_eq!(e.kind(), io::ErrorKind::Other, "{e}");
        }
        other => panic!("expected an i/o error, got {other:?}"),
    }
}

#[test]
fn a_claimed_length_commits_memory_only_as_the_packet_arrives() {
    // A PUBLISH claiming 1,000,000 bytes, within a 2 MiB limit: the header
    // alone must not make the decoder set aside a megabyte (a thousand
    // connections claiming it would be a gigabyte).
    let size = 1_000_000usize;
    let mut body = vec![0u8, 1, b't'];
    body.resize(size, b'x');
    let mut packet = vec![0x30];
    let mut n = size;
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        packet.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    let header_len = packet.len() - size;

    let mut buf = BytesMut::from(&packet[..header_len]);
    assert_eq!(decode(&mut buf, 2 << 20), Ok(None));
    assert!(
        buf.capacity() <= 64 * 1024,
        "{} bytes set aside",
        buf.capacity()
    );
    // As it arrives, the room grows with it and never past the packet.
    let mut fed = header_len;
    let decoded = loop {
        let end = (fed + 16 * 1024).min(packet.len());
        buf.extend_from_slice(&packet[fed..end]);
        fed = end;
        match decode(&mut buf, 2 << 20).expect("valid") {
            Some(p) => break p,
            None => assert!(
                buf.capacity() <= (2 * buf.len()).max(64 * 1024).min(packet.len()),
                "{} set aside for {} received",
                buf.capacity(),
                buf.len()
            ),
        }
    };
    match decoded {
        Packet::Publish(p) => assert_eq!(p.payload.len(), size - 3),
        other => panic!("{other:?}"),
    }
}
