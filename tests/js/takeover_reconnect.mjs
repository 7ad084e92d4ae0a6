// Session takeover and MQTT.js's automatic reconnect. A second client with
// the same clientId makes the broker close the first [MQTT-3.1.4-2];
// MQTT.js reconnects by itself once the newcomer has gone. With
// clean: true it subscribes again and receives new messages; with
// clean: false the taken-over session is kept, so CONNACK has
// sessionPresent set and the subscription works without a new SUBSCRIBE
// [MQTT-3.1.2-4, MQTT-3.2.2-2].

import { Conn, check, run, sleep, unique } from './common.mjs';

/** Waits until `conn` has received `n` packets of kind `cmd`. */
async function receivedCount(conn, cmd, n) {
  for (let waited = 0; waited < 5_000; waited += 50) {
    if (conn.count(cmd) >= n) {
      return;
    }
    await sleep(50);
  }
  throw new Error(`${conn.clientId}: fewer than ${n} ${cmd} packets in 5 s`);
}

/** Kicks `victim` off with a newcomer using its clientId, then ends it. */
async function takeOver(victim, clean) {
  const reconnects = [];
  victim.client.on('reconnect', () => reconnects.push(Date.now()));
  const newcomer = await Conn.open(victim.clientId, { clean });
  await victim.closes.take(`${victim.clientId}: the broker closing the first connection`);
  if (!clean) {
    check(
      newcomer.connack.sessionPresent === true,
      'the newcomer did not take over the persistent session',
    );
  }
  await newcomer.end();
  // MQTT.js reconnects after reconnectPeriod.
  const connack = await victim.nextConnack();
  check(reconnects.length >= 1, 'reconnected without a reconnect event');
  return connack;
}

/** Publishes on `topic` and asserts `conn` receives it. */
async function reaches(conn, topic, payload) {
  const pub = await Conn.open(unique('js-takeover-pub'));
  await pub.publish(topic, payload, 1);
  const m = await conn.next(`${payload} after reconnecting`);
  check(
    m.topic === topic && m.payload.toString() === payload,
    `got ${m.payload.toString()} on ${m.topic}, expected ${payload}`,
  );
  await pub.end();
}

run(async () => {
  const base = unique('js/takeover');

  const clean = await Conn.open(unique('js-takeover-clean'), { reconnectPeriod: 300 });
  await clean.subscribe({ [`${base}/clean/#`]: { qos: 1 } });
  const cleanAck = await takeOver(clean, true);
  check(cleanAck.sessionPresent === false, 'sessionPresent after a clean reconnect');
  // The resubscription's SUBACK, the second in total.
  await receivedCount(clean, 'suback', 2);
  await reaches(clean, `${base}/clean/x`, 'clean resubscribed');
  await clean.end();

  const kept = await Conn.open(unique('js-takeover-kept'), {
    clean: false,
    reconnectPeriod: 300,
  });
  await kept.subscribe({ [`${base}/kept/#`]: { qos: 1 } });
  const keptAck = await takeOver(kept, false);
  check(keptAck.sessionPresent === true, 'the session was lost across the takeover');
  await reaches(kept, `${base}/kept/x`, 'session kept');
  check(
    kept.count('suback') === 1,
    'MQTT.js subscribed again although the session was present',
  );
  await kept.end();
  const wipe = await Conn.open(kept.clientId, { clean: true });
  await wipe.end();
});
