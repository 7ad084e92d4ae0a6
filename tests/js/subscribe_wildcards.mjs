// SUBSCRIBE with several filters in one packet: one SUBACK code per filter,
// in order, each the QoS asked for [MQTT-3.8.4-5, MQTT-3.9.3-1]; + matches
// one level, # matches the parent and any depth [MQTT-4.7.1-2, 4.7.1-3];
// delivery is at the lower of the publish QoS and the granted QoS
// [MQTT-3.8.4-6]. A bare # does not match topics starting with $
// [MQTT-4.7.2-1].

import { Conn, check, run, unique } from './common.mjs';

run(async () => {
  const base = unique('js/wild');
  const sub = await Conn.open(unique('js-wild-sub'));
  const granted = await sub.subscribe({
    [`${base}/+/temp`]: { qos: 0 },
    [`${base}/deep/#`]: { qos: 1 },
    [`${base}/exact`]: { qos: 2 },
  });
  const want = [
    [`${base}/+/temp`, 0],
    [`${base}/deep/#`, 1],
    [`${base}/exact`, 2],
  ];
  check(
    JSON.stringify(granted) === JSON.stringify(want),
    `SUBACK granted ${JSON.stringify(granted)}, expected ${JSON.stringify(want)}`,
  );

  const pub = await Conn.open(unique('js-wild-pub'));
  // Not matching: + is exactly one level, and topics are case-sensitive.
  await pub.publish(`${base}/a/b/temp`, 'two levels', 1);
  await pub.publish(`${base}/kitchen/TEMP`, 'case', 1);
  await pub.publish(`${base}/deeper/x`, 'sibling', 1);
  await pub.publish(`${base}/exact/more`, 'below exact', 1);
  // Matching, one delivery each.
  const cases = [
    [`${base}/kitchen/temp`, 'plus', 2, 0],
    [`${base}/deep`, 'hash parent', 2, 1],
    [`${base}/deep/a/b/c`, 'hash depth', 2, 1],
    [`${base}/deep/q0`, 'hash qos0', 0, 0],
    [`${base}/exact`, 'exact', 2, 2],
    [`${base}/exact`, 'exact q1', 1, 1],
    [`${base}//temp`, 'empty level', 1, 0],
  ];
  for (const [topic, payload, qos] of cases) {
    await pub.publish(topic, payload, qos);
  }
  // Ordering is only promised per topic [MQTT-4.6.0-6], so match by payload.
  const got = new Map();
  for (let i = 0; i < cases.length; i++) {
    const m = await sub.next(`message ${i + 1} of ${cases.length}`);
    got.set(m.payload.toString(), m);
  }
  for (const [topic, payload, , qos] of cases) {
    const m = got.get(payload);
    check(m !== undefined, `${payload} on ${topic} not delivered; got ${[...got.keys()]}`);
    check(m.topic === topic, `${payload}: on ${m.topic}, expected ${topic}`);
    check(m.packet.qos === qos, `${payload}: delivered at QoS ${m.packet.qos}, expected ${qos}`);
  }
  await sub.expectNothing();

  const everything = await Conn.open(unique('js-wild-all'));
  const all = await everything.subscribe({ '#': { qos: 1 }, '+/+': { qos: 0 } });
  check(JSON.stringify(all) === JSON.stringify([['#', 1], ['+/+', 0]]), `granted ${JSON.stringify(all)}`);
  await pub.publish(`$${base}/x`, 'dollar', 1);
  await pub.publish(`${base}/after-dollar`, 'plain', 1);
  const m = await everything.next('the plain message');
  check(m.payload.toString() === 'plain', `# matched a $ topic: ${m.topic}`);
  await everything.expectNothing();

  await everything.end();
  await pub.end();
  await sub.end();
});
