// MQTT.js over TLS (mqtts://) against a TLS listener whose certificate a
// test CA signed: with the CA it connects, subscribes, publishes at QoS 1
// and receives; without it the handshake is refused by MQTT.js's
// certificate check, so a broker with an untrusted certificate is not
// silently accepted.
//
// Usage: node tls.mjs mqtts://127.0.0.1:PORT CA_FILE

import { readFileSync } from 'node:fs';
import { Conn, check, fail, run, unique } from './common.mjs';

const caFile = process.argv[3];
if (!caFile) {
  fail('usage: node tls.mjs mqtts://HOST:PORT CA_FILE');
}
const ca = readFileSync(caFile);

run(async () => {
  // The certificate names localhost; the socket goes to 127.0.0.1.
  const secure = await Conn.open(unique('js-tls'), { ca, servername: 'localhost' });
  check(secure.client.stream.encrypted === true, 'not a TLS stream');
  const topic = unique('js/tls');
  const granted = await secure.subscribe({ [topic]: { qos: 1 } });
  check(granted[0][1] === 1, `granted ${JSON.stringify(granted)}`);
  await secure.publish(topic, 'over tls', 1);
  const m = await secure.next('the message over TLS');
  check(m.payload.toString() === 'over tls', `got ${m.payload.toString()}`);
  check(m.packet.qos === 1, `at QoS ${m.packet.qos}`);
  await secure.end();

  const untrusting = new Conn(unique('js-tls-noca'), { servername: 'localhost' });
  const err = await untrusting.errors.take('the certificate error without the CA');
  check(
    /certificate|self.signed|issuer/i.test(`${err.code} ${err.message}`),
    `without the CA: ${err.code} ${err.message}`,
  );
  check((await untrusting.connects.nothingFor(0)) === undefined, 'connected without the CA');
  untrusting.client.end(true);
});
