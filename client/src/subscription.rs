//! [`Subscription`], a `Stream` of the [`Message`]s matching its filters,
//! fed by the connection task through a bounded channel (what happens when
//! it is full is the client's [`SlowConsumer`](crate::SlowConsumer) policy).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::Stream;
use midge_protocol::{ByteStr, PacketId, Publish, QoS, SubscribeReturnCode};
use tokio::sync::{mpsc, oneshot};

use crate::connection::Command;
use crate::error::UnsubscribeError;

/// An application message received from the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to.
    pub topic: ByteStr,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was delivered with (the lower of the publish QoS and the
    /// granted QoS).
    pub qos: QoS,
    /// Whether it is a retained message sent because of a new subscription.
    pub retain: bool,
    /// Whether the broker marked it as a possible re-delivery.
    pub dup: bool,
    /// The packet id it arrived with (QoS 1 and 2 only), for logging.
    pub pkid: Option<PacketId>,
}

impl Message {
    /// A message, for tests and tools.
    pub fn new(
        topic: impl Into<ByteStr>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            dup: false,
            pkid: None,
        }
    }
}

impl From<Publish> for Message {
    fn from(p: Publish) -> Message {
        Message {
            qos: p.qos(),
            pkid: p.pkid(),
            topic: p.topic,
            payload: p.payload,
            retain: p.retain,
            dup: p.dup,
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("dup", &self.dup)
            .field("pkid", &self.pkid)
            .finish()
    }
}

/// The messages matching one subscription's filters, as a `Stream`.
///
/// The stream ends when the filters are unsubscribed or the client closes.
/// Dropping it unsubscribes its filters that no other subscription uses; with
/// a persistent session, call [`Client::disconnect`](crate::Client::disconnect)
/// first if the broker should keep the subscription.
pub struct Subscription {
    sid: u64,
    granted: Vec<(ByteStr, SubscribeReturnCode)>,
    messages: mpsc::Receiver<Message>,
    dropped: Arc<AtomicU64>,
    commands: mpsc::Sender<Command>,
    detached: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("granted", &self.granted)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        sid: u64,
        granted: Vec<(ByteStr, SubscribeReturnCode)>,
        messages: mpsc::Receiver<Message>,
        dropped: Arc<AtomicU64>,
        commands: mpsc::Sender<Command>,
    ) -> Subscription {
        Subscription {
            sid,
            granted,
            messages,
            dropped,
            commands,
            detached: false,
        }
    }

    /// The QoS the broker granted for the first filter that it accepted.
    pub fn granted_qos(&self) -> QoS {
        self.granted
            .iter()
            .find_map(|(_, code)| match code {
                SubscribeReturnCode::Success(qos) => Some(*qos),
                SubscribeReturnCode::Failure => None,
            })
            .unwrap_or_default()
    }

    /// Each filter with the broker's answer, in the order subscribed.
    pub fn granted(&self) -> &[(ByteStr, SubscribeReturnCode)] {
        &self.granted
    }

    /// Messages dropped because this subscription was full under
    /// [`SlowConsumer::DropNewest`](crate::SlowConsumer::DropNewest).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next message; `None` once the subscription has ended.
    pub async fn recv(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// Unsubscribes this subscription's filters (those no other subscription
    /// uses) and waits for UNSUBACK.
    pub async fn unsubscribe(mut self) -> Result<(), UnsubscribeError> {
        self.detached = true;
        let (reply, rx) = oneshot::channel();
        let command = Command::DropSubscription {
            sid: self.sid,
            reply: Some(reply),
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| UnsubscribeError::Closed)?;
        rx.await.unwrap_or(Err(UnsubscribeError::Closed))
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.messages.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.detached {
            // Best effort: if the queue is full, the task notices the closed
            // channel at the next message for this subscription instead.
            let _ = self.commands.try_send(Command::DropSubscription {
                sid: self.sid,
                reply: None,
            });
        }
    }
}
