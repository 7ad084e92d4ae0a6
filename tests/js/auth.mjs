// User name and password against a broker with a password file and no
// anonymous access: the right password is accepted; a wrong password or an
// unknown user is refused with CONNACK code 4, Bad user name or password,
// and no user name at all with code 5, Not authorized (3.1.1 table 3.1);
// MQTT.js reports the code as the error's `code`.
//
// Usage: node auth.mjs PORT|URL USER PASSWORD

import { Conn, check, fail, run, unique } from './common.mjs';

const [user, password] = process.argv.slice(3);
if (!user || !password) {
  fail('usage: node auth.mjs PORT|URL USER PASSWORD');
}

/** Connects with `options`; returns the CONNACK return code MQTT.js saw. */
async function refusal(what, options) {
  const conn = new Conn(unique('js-auth'), options);
  const err = await conn.errors.take(`${what}: the refusal`);
  check(
    (await conn.connects.nothingFor(0)) === undefined,
    `${what}: accepted as well as refused`,
  );
  await conn.closes.take(`${what}: the broker closing the refused connection`);
  conn.client.end(true);
  return err.code;
}

run(async () => {
  const ok = await Conn.open(unique('js-auth-ok'), { username: user, password });
  check(ok.connack.returnCode === 0, `right password: CONNACK ${ok.connack.returnCode}`);
  await ok.subscribe({ 'js/auth/echo': { qos: 1 } });
  await ok.publish('js/auth/echo', 'authenticated', 1);
  const m = await ok.next('a message as an authenticated user');
  check(m.payload.toString() === 'authenticated', `got ${m.payload.toString()}`);
  await ok.end();

  const wrong = await refusal('wrong password', { username: user, password: `${password}-not` });
  check(wrong === 4, `wrong password: CONNACK code ${wrong}, expected 4`);
  const stranger = await refusal('unknown user', { username: unique('nobody'), password });
  check(stranger === 4, `unknown user: CONNACK code ${stranger}, expected 4`);
  const anonymous = await refusal('no user name', {});
  check(anonymous === 5, `no user name: CONNACK code ${anonymous}, expected 5`);
});
