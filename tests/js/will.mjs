// The will: published with its topic, payload, QoS and retain flag when the
// connection ends without DISCONNECT, here the socket destroyed
// [MQTT-3.1.2-8]; discarded, never published, after a clean end(), which
// sends DISCONNECT [MQTT-3.1.2-10, MQTT-3.14.4-3].

import { Conn, check, run, unique } from './common.mjs';

run(async () => {
  const base = unique('js/will');
  const watcher = await Conn.open(unique('js-will-watcher'));
  await watcher.subscribe({ [`${base}/#`]: { qos: 2 } });

  const polite = await Conn.open(unique('js-will-polite'), {
    will: { topic: `${base}/polite`, payload: Buffer.from('never'), qos: 1, retain: false },
  });
  await polite.end();

  const binary = Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef]);
  const vanishing = await Conn.open(unique('js-will-vanishing'), {
    will: { topic: `${base}/vanishing`, payload: binary, qos: 2, retain: true },
  });
  await vanishing.destroy();

  const m = await watcher.next('the will');
  check(
    m.topic === `${base}/vanishing`,
    `will on ${m.topic} (a clean end() must discard the will)`,
  );
  check(Buffer.compare(m.payload, binary) === 0, `will payload ${m.payload.toString('hex')}`);
  check(m.packet.qos === 2, `will at QoS ${m.packet.qos}, expected 2`);
  await watcher.expectNothing();

  // The will was retained.
  const late = await Conn.open(unique('js-will-late'));
  await late.subscribe({ [`${base}/vanishing`]: { qos: 1 } });
  const r = await late.next('the retained will');
  check(Buffer.compare(r.payload, binary) === 0 && r.packet.retain, 'the retained will');
  await late.end();

  // Leave nothing retained behind.
  await watcher.publish(`${base}/vanishing`, '', 1, true);
  await watcher.end();
});
