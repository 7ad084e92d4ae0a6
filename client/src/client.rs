//! [`Client`], the cloneable handle: every call becomes a command to the
//! client's single connection task and waits on a oneshot reply. Also the
//! connection [`Event`]s, the current [`Status`], and [`PublishToken`], the
//! pending result of a [`Client::try_publish`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream};
use midge_protocol::{ByteStr, QoS, SubscribeFilter, SubscribeReturnCode};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::connection::{Command, Connection};
use crate::error::{
    ConnectError, ConnectionError, DisconnectError, PublishError, SubscribeError, UnsubscribeError,
};
use crate::options::{ClientBuilder, Options};
use crate::state::OutgoingMessage;
use crate::subscription::Subscription;
use crate::transport;

/// Something that happened to the client's connection; see [`Client::events`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection is up (CONNACK accepted).
    Connected {
        /// Whether the broker resumed a stored session.
        session_present: bool,
    },
    /// The connection was lost.
    Disconnected {
        /// Why.
        reason: ConnectionError,
    },
    /// Waiting `delay` before reconnect attempt `attempt` (from 1).
    Reconnecting {
        /// The attempt about to be made.
        attempt: u32,
        /// The backoff before it.
        delay: Duration,
    },
    /// Reconnect attempt `attempt` failed.
    ReconnectFailed {
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: Arc<ConnectError>,
    },
    /// The client is closed for good (disconnected, dropped, or gave up).
    Closed,
}

/// Where the client's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Connected.
    Connected {
        /// Whether the broker resumed a stored session.
        session_present: bool,
    },
    /// Lost and trying again.
    Reconnecting,
    /// Closed for good.
    Closed,
}

/// A stream of connection [`Event`]s. Events that happen while nobody reads
/// are kept up to a bound of 64; older ones are skipped.
pub struct Events {
    inner: BoxStream<'static, Event>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Events")
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The result of a [`Client::try_publish`]: await it to learn when the QoS
/// flow completed, or drop it if you do not care.
#[must_use = "dropping the token is fine, but then you never learn whether the publish completed"]
#[derive(Debug)]
pub struct PublishToken {
    rx: oneshot::Receiver<Result<(), PublishError>>,
}

impl Future for PublishToken {
    type Output = Result<(), PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(PublishError::Closed)))
    }
}

pub(crate) struct Shared {
    pub commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    status: watch::Receiver<Status>,
    client_id: Arc<str>,
    next_sid: AtomicU64,
    subscription_capacity: usize,
}

/// An MQTT client: a cheap, cloneable handle to one background connection
/// task that owns the socket, reconnects, and keeps the session.
///
/// The task runs while any clone of the client or any [`Subscription`] is
/// alive; when the last one is dropped it disconnects cleanly, as
/// [`disconnect`](Self::disconnect) would.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use midge_client::{Client, QoS};
///
/// let client = Client::builder("mqtt://localhost:1883").client_id("demo").connect().await?;
/// let mut sub = client.subscribe("sensors/#", QoS::AtLeastOnce).await?;
/// client.publish("sensors/kitchen", "21.5", QoS::AtLeastOnce, false).await?;
/// while let Some(msg) = sub.next().await {
///     println!("{} {:?}", msg.topic, msg.payload);
/// }
/// client.disconnect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.shared.client_id)
            .field("status", &self.status())
            .finish()
    }
}

impl Client {
    /// Starts building a client for a broker URL:
    /// `mqtt://[user[:password]@]host[:port]` or `mqtts://…`.
    ///
    /// A URL that does not parse is reported by
    /// [`connect`](ClientBuilder::connect).
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    pub(crate) async fn connect(options: Options) -> Result<Client, ConnectError> {
        let client_id = options.client_id.clone().unwrap_or_else(random_client_id);
        options.validate(&client_id)?;
        let tls = options.tls.as_ref().map(|t| t.build()).transpose()?;
        let client_id: Arc<str> = client_id.into();
        let (io, connack) = transport::connect(&options, tls.as_ref(), &client_id).await?;
        let (commands, commands_rx) = mpsc::channel(options.request_queue);
        let (events, _) = broadcast::channel(64);
        let (status_tx, status) = watch::channel(Status::Connected {
            session_present: connack.session_present,
        });
        let subscription_capacity = options.subscription_capacity;
        let task = Connection::new(
            Arc::new(options),
            tls,
            client_id.clone(),
            commands_rx,
            events.clone(),
            status_tx,
        );
        tokio::spawn(task.run(io, connack.session_present));
        Ok(Client {
            shared: Arc::new(Shared {
                commands,
                events,
                status,
                client_id,
                next_sid: AtomicU64::new(1),
                subscription_capacity,
            }),
        })
    }

    /// The client id in use (generated as `midge-…` if none was given).
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// Where the connection stands now.
    pub fn status(&self) -> Status {
        *self.shared.status.borrow()
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        matches!(self.status(), Status::Connected { .. })
    }

    /// A stream of the connection events that happen from now on.
    pub fn events(&self) -> Events {
        let rx = self.shared.events.subscribe();
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Events {
            inner: Box::pin(inner),
        }
    }

    /// Publishes a message and waits until its QoS flow completes: written
    /// for QoS 0, PUBACK for QoS 1, PUBCOMP for QoS 2.
    ///
    /// While connected and the in-flight window and backlog are full, this
    /// waits for room. While offline (reconnecting), the message waits in the
    /// offline buffer, or fails at once with [`PublishError::BufferFull`].
    /// Messages in flight when a connection is lost are re-sent after the
    /// reconnect, so this keeps waiting; with reconnecting off it fails with
    /// [`PublishError::ConnectionLost`].
    pub async fn publish(
        &self,
        topic: impl Into<ByteStr>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), PublishError> {
        let (msg, rx) = self.prepare(topic.into(), payload.into(), qos, retain)?;
        self.shared
            .commands
            .send(msg)
            .await
            .map_err(|_| PublishError::Closed)?;
        rx.await.unwrap_or(Err(PublishError::Closed))
    }

    /// Queues a publish without waiting: fails with
    /// [`PublishError::QueueFull`] if the request queue is full. The token
    /// resolves like [`publish`](Self::publish).
    pub fn try_publish(
        &self,
        topic: impl Into<ByteStr>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PublishToken, PublishError> {
        let (msg, rx) = self.prepare(topic.into(), payload.into(), qos, retain)?;
        self.shared.commands.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PublishError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => PublishError::Closed,
        })?;
        Ok(PublishToken { rx })
    }

    fn prepare(
        &self,
        topic: ByteStr,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<(Command, oneshot::Receiver<Result<(), PublishError>>), PublishError> {
        if !midge_protocol::topic::valid_topic_name(&topic) || topic.contains('\0') {
            return Err(PublishError::InvalidTopic(topic.to_string()));
        }
        let remaining =
            2 + topic.len() + if qos == QoS::AtMostOnce { 0 } else { 2 } + payload.len();
        if remaining > midge_protocol::encode::MAX_REMAINING_LENGTH
            || topic.len() > usize::from(u16::MAX)
        {
            return Err(PublishError::TooLarge {
                size: remaining,
                max: midge_protocol::encode::MAX_REMAINING_LENGTH,
            });
        }
        let (reply, rx) = oneshot::channel();
        let msg = OutgoingMessage {
            topic,
            payload,
            qos,
            retain,
        };
        Ok((
            Command::Publish {
                msg,
                reply: Some(reply),
            },
            rx,
        ))
    }

    /// Subscribes to one topic filter. The [`Subscription`] yields the
    /// messages matching it and knows the QoS the broker granted; a refusal
    /// (SUBACK 0x80) is [`SubscribeError::Refused`].
    ///
    /// Routing is done in the client, by filter: a message matching several
    /// subscriptions goes to each. With a resumed persistent session the
    /// broker may deliver queued messages before the application subscribes
    /// again; up to the subscription capacity of those are kept and handed to
    /// the first subscription that matches them.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<Subscription, SubscribeError> {
        self.subscribe_many([(filter, qos)]).await
    }

    /// Subscribes to several filters with one SUBSCRIBE; the subscription
    /// yields each matching message once, even if several of its filters
    /// match. Fails only if the broker refuses every filter; see
    /// [`Subscription::granted`] for each filter's result.
    pub async fn subscribe_many<'a>(
        &self,
        filters: impl IntoIterator<Item = (&'a str, QoS)>,
    ) -> Result<Subscription, SubscribeError> {
        let filters: Vec<SubscribeFilter> = filters
            .into_iter()
            .map(|(f, qos)| SubscribeFilter {
                filter: ByteStr::from(f),
                qos,
            })
            .collect();
        if filters.is_empty() {
            return Err(SubscribeError::NoFilters);
        }
        if let Some(bad) = filters.iter().find(|f| {
            !midge_protocol::topic::valid_topic_filter(&f.filter) || f.filter.contains('\0')
        }) {
            return Err(SubscribeError::InvalidFilter(bad.filter.to_string()));
        }
        let sid = self.shared.next_sid.fetch_add(1, Ordering::Relaxed);
        let (sender, messages) = mpsc::channel(self.shared.subscription_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let (reply, rx) = oneshot::channel();
        let command = Command::Subscribe {
            sid,
            filters: filters.clone(),
            sender,
            dropped: dropped.clone(),
            reply,
        };
        self.shared
            .commands
            .send(command)
            .await
            .map_err(|_| SubscribeError::Closed)?;
        let codes = rx.await.unwrap_or(Err(SubscribeError::Closed))?;
        if codes.iter().all(|c| *c == SubscribeReturnCode::Failure) {
            return Err(SubscribeError::Refused(
                filters.iter().map(|f| f.filter.to_string()).collect(),
            ));
        }
        let granted = filters.into_iter().map(|f| f.filter).zip(codes).collect();
        Ok(Subscription::new(
            sid,
            granted,
            messages,
            dropped,
            self.shared.commands.clone(),
        ))
    }

    /// Unsubscribes a topic filter: the broker stops sending, and every
    /// subscription loses the filter (ending those left with none). Resolves
    /// on UNSUBACK.
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), UnsubscribeError> {
        if !midge_protocol::topic::valid_topic_filter(filter) {
            return Err(UnsubscribeError::InvalidFilter(filter.to_string()));
        }
        let (reply, rx) = oneshot::channel();
        let command = Command::Unsubscribe {
            filters: vec![ByteStr::from(filter)],
            reply,
        };
        self.shared
            .commands
            .send(command)
            .await
            .map_err(|_| UnsubscribeError::Closed)?;
        rx.await.unwrap_or(Err(UnsubscribeError::Closed))
    }

    /// Waits for in-flight publishes, subscribes and unsubscribes to
    /// complete (up to the disconnect timeout), then sends DISCONNECT and
    /// closes the connection. Every clone of this client is closed; calls
    /// made afterwards fail with a `Closed` error, and subscriptions end.
    pub async fn disconnect(&self) -> Result<(), DisconnectError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Disconnect { reply })
            .await
            .map_err(|_| DisconnectError::Closed)?;
        rx.await.unwrap_or(Err(DisconnectError::Closed))
    }
}

/// `midge-` and 16 random letters and digits: unique enough, and within the
/// 23 bytes every broker must accept [MQTT-3.1.3-5].
fn random_client_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("midge-{}", Alphanumeric.sample_string(&mut rand::rng(), 16))
}
