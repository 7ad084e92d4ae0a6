// A persistent session (clean: false, same clientId) keeps its
// subscriptions and the QoS 1 and 2 messages published while the client was
// away [MQTT-3.1.2-4, 3.1.2-5]; on return CONNACK has sessionPresent set,
// and the queued messages arrive in order without a new SUBSCRIBE
// [MQTT-4.6.0-6]; QoS 0 messages may be dropped but never upgraded.

import { Conn, check, run, unique } from './common.mjs';

run(async () => {
  const id = unique('js-offline');
  const topic = unique('js/offline');
  const first = await Conn.open(id, { clean: false });
  check(first.connack.sessionPresent === false, 'a new session reported as present');
  await first.subscribe({ [topic]: { qos: 2 } });
  await first.end();

  const pub = await Conn.open(unique('js-offline-pub'));
  const sent = [];
  for (let i = 0; i < 10; i++) {
    const qos = i % 2 === 0 ? 1 : 2;
    sent.push([`queued ${i}`, qos]);
    await pub.publish(topic, `queued ${i}`, qos);
  }
  await pub.publish(topic, 'qos0 while away', 0);
  await pub.end();

  // No resubscribe: only the stored session can deliver these.
  const back = await Conn.open(id, { clean: false, resubscribe: false });
  check(back.connack.sessionPresent === true, 'the session was not resumed');
  const delivered = new Map();
  while (delivered.size < sent.length) {
    const m = await back.next(`queued message ${delivered.size + 1} of ${sent.length}`);
    const payload = m.payload.toString();
    if (payload === 'qos0 while away') {
      // A QoS 0 message may be queued or dropped, but never upgraded.
      check(m.packet.qos === 0, `a QoS 0 message delivered at QoS ${m.packet.qos}`);
      continue;
    }
    check(!delivered.has(payload), `${payload} delivered twice`);
    delivered.set(payload, m);
  }
  await back.expectNothing();
  // MQTT.js hands a QoS 2 message over on PUBREL, so the order to check is
  // the wire order of the PUBLISH packets.
  const wire = back.received
    .filter((p) => p.cmd === 'publish' && p.qos > 0)
    .map((p) => [p.payload.toString(), p.qos]);
  check(
    JSON.stringify(wire) === JSON.stringify(sent),
    `queued messages on the wire as ${JSON.stringify(wire)}, sent as ${JSON.stringify(sent)}`,
  );

  // The session is still there and live.
  const pub2 = await Conn.open(unique('js-offline-pub2'));
  await pub2.publish(topic, 'live', 1);
  const live = await back.next('a live message on the resumed session');
  check(live.payload.toString() === 'live', `got ${live.payload.toString()}`);
  await pub2.end();
  await back.end();

  // Tidy: a clean connect drops the session.
  const wipe = await Conn.open(id, { clean: true });
  await wipe.end();
});
