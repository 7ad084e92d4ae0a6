// Keep alive: MQTT.js pings every keep-alive period and the broker
// answers each PINGREQ with PINGRESP [MQTT-3.12.4-1], so the connection
// stays up for seconds and still carries messages. A client that goes
// silent is closed after one and a half keep-alive periods
// [MQTT-3.1.2-24], and its will is published [MQTT-3.1.2-8].

import { Conn, check, run, sleep, unique } from './common.mjs';

run(async () => {
  const base = unique('js/keepalive');
  // keepalive=2, not 1: MQTT.js gives up on a PINGRESP late by a fraction
  // of the period, and a loaded test machine can be that late itself.
  const pinger = await Conn.open(unique('js-ka-pinger'), { keepalive: 2 });
  await pinger.subscribe({ [`${base}/echo`]: { qos: 1 } });
  await sleep(5_000);
  const pongs = pinger.count('pingresp');
  check(pongs >= 2, `${pongs} PINGRESPs in 5 s with keepalive=2`);
  check((await pinger.closes.nothingFor(0)) === undefined, 'the pinging client was disconnected');
  check(pinger.client.connected, 'the pinging client is no longer connected');
  await pinger.publish(`${base}/echo`, 'still alive', 1);
  const echo = await pinger.next('a message after 5 s of pings');
  check(echo.payload.toString() === 'still alive', `got ${echo.payload.toString()}`);

  const watcher = await Conn.open(unique('js-ka-watcher'));
  await watcher.subscribe({ [`${base}/will`]: { qos: 1 } });
  const silent = await Conn.open(unique('js-ka-silent'), {
    keepalive: 1,
    will: { topic: `${base}/will`, payload: Buffer.from('timed out'), qos: 1, retain: false },
  });
  // MQTT.js's own timer sends the pings; without it the client is silent.
  silent.client._destroyKeepaliveManager();
  const quietSince = Date.now();
  await silent.closes.take('the broker to close a silent keepalive=1 client', 8_000);
  const after = Date.now() - quietSince;
  check(after >= 900, `closed after ${after} ms of silence, before the keep-alive period`);
  // 1.5 s allowed; the rest is room for a loaded machine.
  check(after <= 6_000, `closed only after ${after} ms of silence (1.5 s allowed)`);
  const will = await watcher.next('the silent client\'s will');
  check(will.payload.toString() === 'timed out', `will ${will.payload.toString()}`);

  await watcher.end();
  await pinger.end();
});
