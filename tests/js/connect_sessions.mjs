// CONNECT/CONNACK with clean and persistent sessions: the sessionPresent
// flag is 0 for CleanSession=1 [MQTT-3.2.2-1], 0 for a new persistent
// session and 1 when the server resumes one [MQTT-3.2.2-2]; a clean
// connect discards the stored session [MQTT-3.1.2-6]. An empty clientId
// with clean: true is accepted [MQTT-3.1.3-6] (MQTT.js itself refuses an
// empty clientId with clean: false, so CONNACK 2 is not reachable here).

import { Conn, check, run, unique } from './common.mjs';

run(async () => {
  const clean = await Conn.open(unique('js-clean'));
  check(clean.connack.returnCode === 0, `clean: CONNACK code ${clean.connack.returnCode}`);
  check(clean.connack.sessionPresent === false, 'clean: sessionPresent set for CleanSession=1');
  await clean.end();

  const anonymous = await Conn.open('');
  check(anonymous.connack.returnCode === 0, `empty clientId: CONNACK ${anonymous.connack.returnCode}`);
  check(anonymous.connack.sessionPresent === false, 'empty clientId: sessionPresent set');
  const granted = await anonymous.subscribe({ 'js/sessions/anon': { qos: 1 } });
  check(granted[0][1] === 1, `empty clientId: granted ${JSON.stringify(granted)}`);
  await anonymous.end();

  const id = unique('js-persistent');
  const first = await Conn.open(id, { clean: false });
  check(first.connack.sessionPresent === false, 'a new persistent session reported as present');
  // Something for the session to hold.
  await first.subscribe({ 'js/sessions/kept': { qos: 1 } });
  await first.end();

  const second = await Conn.open(id, { clean: false });
  check(second.connack.sessionPresent === true, 'the persistent session was not resumed');
  await second.end();

  const wiped = await Conn.open(id, { clean: true });
  check(wiped.connack.sessionPresent === false, 'sessionPresent set for CleanSession=1');
  await wiped.end();

  const after = await Conn.open(id, { clean: false });
  check(
    after.connack.sessionPresent === false,
    'a clean connect did not discard the stored session',
  );
  await after.end();
});
