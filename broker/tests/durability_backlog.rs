//! A journal that falls behind (a stalled disk) holds publishers back by
//! not reading them, and a publisher held back is not taken for a silent
//! client by the keep-alive check [MQTT-3.1.2-24].

#[path = "ops_support.rs"]
mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_broker::Broker;
use midge_protocol::{decode, encode, Connect, Packet, Publish, QosPid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

/// The next packet from the broker; `None` once it closed the connection.
async fn next_packet(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Some(p) = decode(buf, usize::MAX).expect("valid packets") {
            return Some(p);
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_publisher_held_back_by_a_stalled_journal_is_not_timed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::config();
    config.persistence.enabled = true;
    config.persistence.dir = dir.path().join("data");
    let broker = Broker::start(config).await.expect("broker starts");
    let journal = broker.journal().expect("persistence is on");
    // The disk stalls: nothing submitted is taken.
    journal.hold_writer(true);

    let stream = TcpStream::connect(broker.local_addrs()[0])
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let mut connect = Connect::new("held-back");
    connect.keep_alive = 1;
    let mut out = BytesMut::new();
    encode(&Packet::Connect(connect), &mut out).expect("encode");
    wr.write_all(&out).await.expect("CONNECT");
    let mut inbuf = BytesMut::new();
    let connack = next_packet(&mut rd, &mut inbuf).await;
    assert!(matches!(connack, Some(Packet::ConnAck(_))), "{connack:?}");

    // 70 retained messages of 1 MB: past the journal's 64 MiB backlog
    // limit, so the broker stops reading this client; then a PINGREQ.
    let writer = tokio::spawn(async move {
        let payload = Bytes::from(vec![0x42u8; 1_000_000]);
        for i in 0..70 {
            let p = Publish {
                dup: false,
                qos_pid: QosPid::AtMostOnce,
                retain: true,
                topic: format!("backlog/{i}").as_str().into(),
                payload: payload.clone(),
            };
            let mut out = BytesMut::new();
            encode(&Packet::Publish(p), &mut out).expect("encode");
            wr.write_all(&out).await.expect("publish");
        }
        let mut out = BytesMut::new();
        encode(&Packet::PingReq, &mut out).expect("encode");
        wr.write_all(&out).await.expect("PINGREQ");
        wr
    });
    // Held back for twice the 1.5 s a silent client gets.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(journal.is_backlogged(), "the stalled journal is backlogged");
    journal.hold_writer(false);
    let pong = tokio::time::timeout(Duration::from_secs(30), next_packet(&mut rd, &mut inbuf))
        .await
        .expect("an answer in time");
    assert_eq!(
        pong,
        Some(Packet::PingResp),
        "the publisher was read again, not disconnected"
    );
    let _ = writer.await;
    broker.shutdown().await;
}
