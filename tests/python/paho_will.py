"""paho-mqtt: a client that vanishes has its will published, with its QoS
and retain flag; one that disconnects cleanly does not."""

from common import Conn, fail, unique

base = unique("paho/will")
watcher = Conn(unique("paho-watcher")).connect()
watcher.subscribe(base + "/#", 2)

polite = Conn(unique("paho-polite"), will=(base + "/polite", b"never", 1, False)).connect()
polite.disconnect()

vanishing = Conn(
    unique("paho-vanishing"), will=(base + "/vanishing", b"gone", 2, True)
).connect()
vanishing.drop()

m = watcher.expect("the will")
if m.topic != base + "/vanishing":
    fail("will on %s (a clean DISCONNECT must discard the will)" % m.topic)
if m.payload != b"gone":
    fail("will payload %r" % m.payload)
if m.qos != 2:
    fail("will at QoS %d, expected 2" % m.qos)
watcher.expect_nothing(0.5)

# The will was retained.
late = Conn(unique("paho-late")).connect()
late.subscribe(base + "/vanishing", 1)
r = late.expect("the retained will")
if r.payload != b"gone" or not r.retain:
    fail("retained will %r retain=%s" % (r.payload, r.retain))
late.disconnect()
watcher.disconnect()
print("ok")
