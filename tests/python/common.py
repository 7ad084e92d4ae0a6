"""Shared helpers for the paho-mqtt scripts run by tests/third_party.rs.

Every script takes the broker's host and port as arguments, exits 0 when
its scenario held and prints a reason and exits 1 when it did not. Every
wait is bounded.
"""

import queue
import sys
import threading
import uuid

import paho.mqtt.client as mqtt

TIMEOUT = 10.0


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def address():
    if len(sys.argv) != 3:
        fail("usage: %s HOST PORT" % sys.argv[0])
    return sys.argv[1], int(sys.argv[2])


def unique(prefix):
    """A topic or client id no other run uses."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


class Conn:
    """A paho client with blocking, bounded helpers."""

    def __init__(self, client_id, clean_session=True, will=None):
        self.client_id = client_id
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.messages = queue.Queue()
        self.subacks = {}
        self.suback_event = threading.Condition()
        self.connected = threading.Event()
        self.session_present = None
        self.connect_rc = None
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = self._on_subscribe
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.session_present = flags.session_present
        self.connect_rc = reason_code
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.suback_event:
            self.subacks[mid] = reason_codes
            self.suback_event.notify_all()

    def connect(self):
        host, port = address()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(TIMEOUT):
            fail("%s: no CONNACK" % self.client_id)
        if self.connect_rc != 0:
            fail("%s: connection refused: %s" % (self.client_id, self.connect_rc))
        return self

    def subscribe(self, topic, qos):
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            fail("subscribe %s: %s" % (topic, result))
        with self.suback_event:
            if not self.suback_event.wait_for(lambda: mid in self.subacks, TIMEOUT):
                fail("no SUBACK for %s" % topic)
            codes = self.subacks[mid]
        granted = [int(getattr(c, "value", c)) for c in codes]
        if granted != [qos]:
            fail("SUBACK for %s granted %s, asked %d" % (topic, granted, qos))

    def publish(self, topic, payload, qos, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            fail("publish to %s at QoS %d not acknowledged" % (topic, qos))

    def expect(self, what):
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            fail("%s: expected %s, got nothing" % (self.client_id, what))

    def expect_nothing(self, seconds):
        try:
            m = self.messages.get(timeout=seconds)
        except queue.Empty:
            return
        fail("%s: expected nothing, got %r on %s" % (self.client_id, m.payload, m.topic))

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Ends the connection abruptly, without DISCONNECT."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
