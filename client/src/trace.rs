//! Packet tracing in mosquitto's words, for `-d`: each packet sent or
//! received is logged at debug level under the target
//! `midge_client::packet`, as `Client ID sending PUBLISH (d0, q1, r0, m1,
//! 'topic', ... (5 bytes))`.

use midge_protocol::{Packet, SubscribeReturnCode};

/// The tracing target of packet lines.
pub(crate) const TARGET: &str = "midge_client::packet";

fn name(client_id: &str) -> &str {
    if client_id.is_empty() {
        "(null)"
    } else {
        client_id
    }
}

/// Logs a packet being sent.
pub(crate) fn sending(client_id: &str, packet: &Packet) {
    if !tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        return;
    }
    let id = name(client_id);
    let what = match packet {
        Packet::Publish(p) => format!(
            "PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            u8::from(p.dup),
            p.qos() as u8,
            u8::from(p.retain),
            p.pkid().map_or(0, |id| id.get()),
            p.topic,
            p.payload.len()
        ),
        Packet::PubAck(id) => format!("PUBACK (m{id}, rc0)"),
        Packet::PubRec(id) => format!("PUBREC (m{id}, rc0)"),
        Packet::PubRel(id) => format!("PUBREL (m{id})"),
        Packet::PubComp(id) => format!("PUBCOMP (m{id})"),
        Packet::Subscribe(s) => {
            for f in &s.filters {
                tracing::debug!(
                    target: TARGET,
                    "Client {id} sending SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, Options: 0x00)",
                    s.pkid,
                    f.filter,
                    f.qos as u8
                );
            }
            return;
        }
        Packet::Unsubscribe(u) => {
            for f in &u.filters {
                tracing::debug!(target: TARGET, "Client {id} sending UNSUBSCRIBE (Mid: {}, Topic: {f})", u.pkid);
            }
            return;
        }
        other => format!("{:?}", other.packet_type()).to_uppercase(),
    };
    tracing::debug!(target: TARGET, "Client {id} sending {what}");
}

/// Logs a packet received.
pub(crate) fn received(client_id: &str, packet: &Packet) {
    if !tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        return;
    }
    let id = name(client_id);
    let what = match packet {
        Packet::ConnAck(c) => format!("CONNACK ({})", c.code as u8),
        Packet::Publish(p) => format!(
            "PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            u8::from(p.dup),
            p.qos() as u8,
            u8::from(p.retain),
            p.pkid().map_or(0, |id| id.get()),
            p.topic,
            p.payload.len()
        ),
        Packet::PubAck(id) => format!("PUBACK (Mid: {id}, RC:0)"),
        Packet::PubRec(id) => format!("PUBREC (Mid: {id})"),
        Packet::PubRel(id) => format!("PUBREL (Mid: {id})"),
        Packet::PubComp(id) => format!("PUBCOMP (Mid: {id}, RC:0)"),
        Packet::SubAck(s) => {
            tracing::debug!(target: TARGET, "Client {id} received SUBACK");
            let codes: Vec<String> = s
                .return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReturnCode::Success(q) => (*q as u8).to_string(),
                    SubscribeReturnCode::Failure => "128".to_string(),
                })
                .collect();
            tracing::debug!(target: TARGET, "Subscribed (mid: {}): {}", s.pkid, codes.join(", "));
            return;
        }
        Packet::UnsubAck(id) => format!("UNSUBACK (Mid: {id})"),
        other => format!("{:?}", other.packet_type()).to_uppercase(),
    };
    tracing::debug!(target: TARGET, "Client {id} received {what}");
}
