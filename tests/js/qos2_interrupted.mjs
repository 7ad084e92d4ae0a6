// QoS 2 flows cut by a lost connection and finished by MQTT.js's automatic
// reconnect to its persistent session (clean: false). The broker must keep
// the flow's state in the session and resume it: as the receiver, answer a
// resent PUBREL with PUBCOMP and deliver the message once [MQTT-4.3.3-2];
// as the sender, resend an unacknowledged PUBLISH with DUP set, or the
// PUBREL once PUBREC came [MQTT-4.4.0-1, MQTT-3.3.1-1]. Either way each
// subscriber's application sees the message exactly once.

import { Conn, check, run, sleep, unique } from './common.mjs';

/** A persistent client that MQTT.js reconnects 300 ms after a loss. */
function persistent(prefix) {
  return Conn.open(unique(prefix), { clean: false, reconnectPeriod: 300 });
}

/** Destroys `conn`'s socket the first time `event` fires for `cmd`. */
function cutOnce(conn, event, cmd) {
  let cut = false;
  conn.client.on(event, (packet) => {
    if (!cut && packet.cmd === cmd) {
      cut = true;
      conn.client.stream.destroy();
    }
  });
}

/** Waits for the reconnect, then checks the session was resumed. */
async function resumed(conn) {
  await conn.closes.take(`${conn.clientId}: the cut connection closing`);
  const ack = await conn.nextConnack();
  check(ack.sessionPresent === true, `${conn.clientId}: session not resumed after the cut`);
}

/** Asserts `conn` gets `payload` once and nothing after. */
async function exactlyOnce(conn, payload) {
  const m = await conn.next(payload);
  check(m.payload.toString() === payload, `got ${m.payload.toString()}, expected ${payload}`);
  await conn.expectNothing(600);
}

/** The PUBLISH and PUBREL packets `conn` received, as [cmd, dup]. */
function inbound(conn) {
  return conn.received
    .filter((p) => p.cmd === 'publish' || p.cmd === 'pubrel')
    .map((p) => `${p.cmd}${p.cmd === 'publish' ? (p.dup ? ' dup' : '') : ''}`);
}

run(async () => {
  const base = unique('js/qos2cut');
  const watcher = await Conn.open(unique('js-q2-watcher'));
  await watcher.subscribe({ [`${base}/#`]: { qos: 2 } });

  // MQTT.js publishing: the connection dies as its PUBREL would leave.
  const sender = await persistent('js-q2-sender');
  cutOnce(sender, 'packetsend', 'pubrel');
  const sent = sender.client.publishAsync(`${base}/up`, 'sent once', { qos: 2 });
  await resumed(sender);
  const done = await Promise.race([sent.then(() => true), sleep(5_000).then(() => false)]);
  check(done, 'the publish never completed after the reconnect (no PUBCOMP for the PUBREL)');
  await exactlyOnce(watcher, 'sent once');
  await sender.end();

  // MQTT.js receiving: the connection dies before its PUBREC leaves.
  const early = await persistent('js-q2-early');
  await early.subscribe({ [`${base}/early`]: { qos: 2 } });
  cutOnce(early, 'packetsend', 'pubrec');
  await watcher.publish(`${base}/early`, 'before pubrec', 2);
  await resumed(early);
  await exactlyOnce(early, 'before pubrec');
  const earlyWire = inbound(early);
  check(
    JSON.stringify(earlyWire) === JSON.stringify(['publish', 'publish dup', 'pubrel']),
    `early cut: received ${JSON.stringify(earlyWire)}, expected the PUBLISH resent with DUP`,
  );
  await early.end();

  // MQTT.js receiving: the connection dies as the broker's PUBREL arrives.
  const late = await persistent('js-q2-late');
  await late.subscribe({ [`${base}/late`]: { qos: 2 } });
  cutOnce(late, 'packetreceive', 'pubrel');
  await watcher.publish(`${base}/late`, 'after pubrec', 2);
  await resumed(late);
  await exactlyOnce(late, 'after pubrec');
  const lateWire = inbound(late);
  check(
    JSON.stringify(lateWire) === JSON.stringify(['publish', 'pubrel', 'pubrel']),
    `late cut: received ${JSON.stringify(lateWire)}, expected the PUBREL resent, not the PUBLISH`,
  );
  await late.end();

  // The watcher saw its own two publishes as well.
  for (const payload of ['before pubrec', 'after pubrec']) {
    const m = await watcher.next(payload);
    check(m.payload.toString() === payload, `watcher got ${m.payload.toString()}`);
  }
  await watcher.expectNothing();
  for (const c of [sender, early, late]) {
    const wipe = await Conn.open(c.clientId, { clean: true });
    await wipe.end();
  }
  await watcher.end();
});
