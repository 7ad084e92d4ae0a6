"""paho-mqtt: a retained message reaches a later subscriber with the retain
flag set, and a zero-length retained publish removes it."""

from common import Conn, fail, unique

topic = unique("paho/retained")
publisher = Conn(unique("paho-pub")).connect()
publisher.publish(topic, b"the last word", qos=1, retain=True)

late = Conn(unique("paho-late")).connect()
late.subscribe(topic, 1)
m = late.expect("the retained message")
if m.payload != b"the last word":
    fail("retained payload %r" % m.payload)
if not m.retain:
    fail("retained message delivered without the retain flag")
if m.qos != 1:
    fail("retained message at QoS %d, expected 1" % m.qos)
late.disconnect()

publisher.publish(topic, b"", qos=1, retain=True)
later = Conn(unique("paho-later")).connect()
later.subscribe(topic, 1)
later.expect_nothing(1.0)
later.disconnect()
publisher.disconnect()
print("ok")
