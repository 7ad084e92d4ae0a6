"""paho-mqtt: QoS 2 round trip: every message arrives exactly once, at
QoS 2, in order."""

from common import Conn, fail, unique

N = 50
topic = unique("paho/qos2")
sub = Conn(unique("paho-sub")).connect()
sub.subscribe(topic, 2)
pub = Conn(unique("paho-pub")).connect()
for i in range(N):
    pub.publish(topic, b"%d" % i, qos=2)

for i in range(N):
    m = sub.expect("message %d" % i)
    if m.payload != b"%d" % i:
        fail("message %d: got %r (lost, duplicated or out of order)" % (i, m.payload))
    if m.qos != 2:
        fail("message %d at QoS %d" % (i, m.qos))
sub.expect_nothing(0.5)
sub.disconnect()
pub.disconnect()
print("ok")
