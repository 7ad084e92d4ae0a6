//! The values a [`Session`](super::Session) takes and gives: its limits,
//! the state that outlives a connection ([`SessionState`]), what it asks
//! the connection to send or do, and the violations that close it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use midge_protocol::{Packet, PacketId, PacketType, Publish, QoS, Subscribe, Unsubscribe};

use crate::mailbox::Delivery;

/// Limits a session enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most unacknowledged outgoing QoS 1/2 messages.
    pub max_inflight: usize,
    /// Most messages waiting behind the in-flight window.
    pub max_pending: usize,
}

/// Where an outgoing QoS 1/2 message is in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// An unacknowledged outgoing message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Its packet id.
    pub pkid: PacketId,
    /// The message and its delivery QoS.
    pub delivery: Delivery,
    /// Its handshake state.
    pub state: OutState,
}

/// The part of a session that outlives its connection when CleanSession is
/// 0: what a session store keeps.
///
/// B-tree collections, not hash ones: every idle connection carries a
/// session, and an empty B-tree is half the size of an empty hash table
/// (sessions hold a few filters and ids, where lookups cost the same).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Topic filter to granted QoS.
    pub subscriptions: BTreeMap<String, QoS>,
    /// Unacknowledged outgoing messages, oldest first.
    pub inflight: VecDeque<Outgoing>,
    /// Messages waiting for room in the in-flight window, in order.
    pub pending: VecDeque<Delivery>,
    /// Inbound QoS 2 packet ids received and not yet released.
    pub incoming_qos2: BTreeSet<PacketId>,
    /// The last packet id handed out.
    pub last_pkid: u16,
}

/// Something to send to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A control packet.
    Packet(Packet),
    /// A PUBLISH of a routed message.
    Publish {
        /// The message, its delivery QoS and RETAIN flag.
        delivery: Delivery,
        /// The packet id, for QoS 1 and 2.
        pkid: Option<PacketId>,
        /// DUP: this is a re-delivery [MQTT-3.3.1-1].
        dup: bool,
    },
}

/// A packet the connection must act on with broker state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Route this message (acknowledgement already queued).
    Publish(Publish),
    /// Subscribe, then call [`Session::subscribed`].
    Subscribe(Subscribe),
    /// Unsubscribe, then call [`Session::unsubscribed`].
    Unsubscribe(Unsubscribe),
    /// The client said goodbye: close without publishing the will.
    Disconnect,
}

/// A protocol violation or timeout: the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A second CONNECT on a connection [MQTT-3.1.0-2].
    #[error("second CONNECT on the connection [MQTT-3.1.0-2]")]
    SecondConnect,
    /// A packet only a server sends.
    #[error("client sent {0:?}, which only a server sends [MQTT-4.8.0-1]")]
    ServerPacket(PacketType),
    /// Nothing received for 1.5 times the keep alive.
    #[error("no packet for 1.5 times the keep alive of {0} s [MQTT-3.1.2-24]")]
    KeepAliveTimeout(u16),
}
