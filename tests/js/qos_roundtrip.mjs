// PUBLISH and receive at QoS 0, 1 and 2: every payload arrives byte for
// byte (text, all 256 byte values, empty, 64 KiB random), at the QoS it was
// sent with (the subscription grants 2), not retained [MQTT-3.3.1-9], in
// the order sent [MQTT-4.6.0-6]; a topic with multi-byte UTF-8 survives.

import { randomBytes } from 'node:crypto';
import { Conn, check, run, unique } from './common.mjs';

run(async () => {
  const base = unique('js/qos');
  const sub = await Conn.open(unique('js-qos-sub'));
  const granted = await sub.subscribe({ [`${base}/#`]: { qos: 2 } });
  check(granted[0][1] === 2, `granted ${JSON.stringify(granted)}`);
  const pub = await Conn.open(unique('js-qos-pub'));

  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) {
    all[i] = i;
  }
  const payloads = [
    Buffer.from('hello, midge'),
    all,
    Buffer.alloc(0),
    randomBytes(64 * 1024),
  ];
  for (const qos of [0, 1, 2]) {
    const topic = `${base}/q${qos}/ünïcødé/✓`;
    for (const payload of payloads) {
      await pub.publish(topic, payload, qos);
    }
    for (const [i, payload] of payloads.entries()) {
      const m = await sub.next(`QoS ${qos} message ${i}`);
      check(m.topic === topic, `QoS ${qos} message ${i} on ${m.topic}, expected ${topic}`);
      check(
        Buffer.compare(m.payload, payload) === 0,
        `QoS ${qos} message ${i}: ${m.payload.length} bytes, expected ${payload.length} ` +
          `(first ${m.payload.subarray(0, 8).toString('hex')} vs ${payload.subarray(0, 8).toString('hex')})`,
      );
      check(m.packet.qos === qos, `message ${i} delivered at QoS ${m.packet.qos}, sent at ${qos}`);
      check(!m.packet.retain, `QoS ${qos} message ${i} has RETAIN set for a live subscriber`);
      check(!m.packet.dup, `QoS ${qos} message ${i} has DUP set on its first delivery`);
    }
  }
  await sub.expectNothing();
  await pub.end();
  await sub.end();
});
