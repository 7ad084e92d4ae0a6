// Retained messages: a new subscriber gets the last retained message with
// RETAIN set [MQTT-3.3.1-6, 3.3.1-8], a live subscriber gets it with RETAIN
// clear [MQTT-3.3.1-9]; a newer retained message replaces it
// [MQTT-3.3.1-5]; a zero-length retained message removes it and is itself
// not kept [MQTT-3.3.1-10, 3.3.1-11]; a wildcard subscription gets every
// retained match.

import { Conn, check, run, unique } from './common.mjs';

run(async () => {
  const base = unique('js/retained');
  const pub = await Conn.open(unique('js-ret-pub'));
  const live = await Conn.open(unique('js-ret-live'));
  await live.subscribe({ [`${base}/#`]: { qos: 1 } });

  await pub.publish(`${base}/a`, 'old', 1, true);
  await pub.publish(`${base}/a`, 'kept', 1, true);
  await pub.publish(`${base}/b`, Buffer.from([0, 1, 2, 255]), 2, true);
  for (const payload of ['old', 'kept']) {
    const m = await live.next(`live ${payload}`);
    check(m.payload.toString() === payload, `live got ${m.payload.toString()}, expected ${payload}`);
    check(!m.packet.retain, 'a live subscriber got RETAIN set');
  }
  await live.next('live b');

  const late = await Conn.open(unique('js-ret-late'));
  await late.subscribe({ [`${base}/a`]: { qos: 1 } });
  const a = await late.next('the retained message');
  check(a.payload.toString() === 'kept', `retained ${a.payload.toString()}, expected kept`);
  check(a.packet.retain, 'a retained message for a new subscription has RETAIN clear');
  check(a.packet.qos === 1, `retained delivered at QoS ${a.packet.qos}`);
  await late.expectNothing();

  const wild = await Conn.open(unique('js-ret-wild'));
  await wild.subscribe({ [`${base}/+`]: { qos: 2 } });
  const got = new Map();
  for (let i = 0; i < 2; i++) {
    const m = await wild.next(`retained match ${i + 1} of 2`);
    check(m.packet.retain, `${m.topic} without RETAIN`);
    got.set(m.topic, m);
  }
  check(got.get(`${base}/a`)?.payload.toString() === 'kept', 'wildcard: a');
  check(
    Buffer.compare(got.get(`${base}/b`)?.payload ?? Buffer.alloc(0), Buffer.from([0, 1, 2, 255])) === 0,
    'wildcard: b payload changed',
  );
  check(got.get(`${base}/b`).packet.qos === 2, 'wildcard: b at QoS 2');
  await wild.expectNothing();

  // Clearing: an empty retained payload.
  await pub.publish(`${base}/a`, '', 1, true);
  const cleared = await live.next('the clearing message, live');
  check(cleared.payload.length === 0, 'the clearing message has a payload');
  await late.next('the clearing message, to the existing subscriber');

  const after = await Conn.open(unique('js-ret-after'));
  await after.subscribe({ [`${base}/#`]: { qos: 1 } });
  const only = await after.next('the retained message still on b');
  check(only.topic === `${base}/b`, `retained on ${only.topic} after clearing a`);
  await after.expectNothing();

  for (const c of [after, wild, late, live]) {
    await c.end();
  }
  // Leave nothing retained behind for other runs.
  await pub.publish(`${base}/b`, '', 1, true);
  await pub.end();
});
