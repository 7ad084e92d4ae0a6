// UNSUBSCRIBE: MQTT.js gets its UNSUBACK [MQTT-3.10.4-4], deliveries on the
// removed filter stop [MQTT-3.10.4-2] while another subscription of the
// same client keeps receiving; unsubscribing a filter that was never
// subscribed is still acknowledged [MQTT-3.10.4-5].

import { Conn, check, run, unique, within } from './common.mjs';

run(async () => {
  const base = unique('js/unsub');
  const sub = await Conn.open(unique('js-unsub'));
  await sub.subscribe({ [`${base}/gone/+`]: { qos: 1 }, [`${base}/stays`]: { qos: 1 } });
  const pub = await Conn.open(unique('js-unsub-pub'));

  await pub.publish(`${base}/gone/x`, 'before', 1);
  const before = await sub.next('a message before unsubscribing');
  check(before.payload.toString() === 'before', `got ${before.payload.toString()}`);

  await within(sub.client.unsubscribeAsync(`${base}/gone/+`), 'UNSUBACK');
  await within(sub.client.unsubscribeAsync(`${base}/never/subscribed`), 'UNSUBACK for an unknown filter');

  await pub.publish(`${base}/gone/x`, 'after', 1);
  await pub.publish(`${base}/stays`, 'still here', 1);
  const m = await sub.next('the message on the remaining subscription');
  check(
    m.topic === `${base}/stays` && m.payload.toString() === 'still here',
    `got ${m.payload.toString()} on ${m.topic} after unsubscribing`,
  );
  await sub.expectNothing();
  await pub.end();
  await sub.end();
});
