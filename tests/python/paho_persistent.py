"""paho-mqtt: a persistent session (clean_session=False) keeps its
subscription and queues QoS 1 and 2 messages while the client is away."""

from common import Conn, fail, unique

topic = unique("paho/persistent")
client_id = unique("paho-persistent")

first = Conn(client_id, clean_session=False).connect()
if first.session_present:
    fail("a new client id has no session")
first.subscribe(topic, 2)
first.disconnect()

pub = Conn(unique("paho-pub")).connect()
sent = []
for i in range(10):
    payload = b"offline %d" % i
    pub.publish(topic, payload, qos=1 + i % 2)
    sent.append(payload)
pub.disconnect()

# Back, without subscribing again.
back = Conn(client_id, clean_session=False).connect()
if not back.session_present:
    fail("session present not set on return")
received = {1: [], 2: []}
for i in range(len(sent)):
    m = back.expect("queued message %d" % i)
    if m.qos not in received:
        fail("queued message %r at QoS %d" % (m.payload, m.qos))
    received[m.qos].append(m.payload)
# Order is kept per topic and QoS [MQTT-4.6.0-6].
for qos in (1, 2):
    expected = [p for i, p in enumerate(sent) if 1 + i % 2 == qos]
    if received[qos] != expected:
        fail("QoS %d messages: got %r, expected %r" % (qos, received[qos], expected))
back.expect_nothing(0.5)
back.disconnect()
print("ok")
