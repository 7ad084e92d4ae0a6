// Shared helpers for the MQTT.js scripts run by tests/third_party_js.rs.
//
// Every script takes the broker as its first argument (a port, or a URL
// such as mqtt://127.0.0.1:1883), or from MIDGE_URL when there is no
// argument. It exits 0 when its scenario held, and prints `FAIL: <reason>`
// and exits 1 when it did not. Every wait is bounded, and a watchdog fails
// the whole script after SCRIPT_MS.

import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';

/** How long a script waits for something that should happen. */
export const WAIT_MS = 5_000;

/** How long a script waits to be fairly sure something does not happen. */
export const QUIET_MS = 400;

/** The watchdog: no script may run longer than this. */
export const SCRIPT_MS = 20_000;

/** Prints the reason and ends the script with a failure. */
export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

/** Asserts `condition`, failing the script with `message` otherwise. */
export function check(condition, message) {
  if (!condition) {
    fail(message);
  }
}

/** The broker URL from argv[2] (a port or a URL) or MIDGE_URL. */
export function brokerUrl() {
  const arg = process.argv[2] ?? process.env.MIDGE_URL;
  if (!arg) {
    fail(`usage: node ${process.argv[1]} PORT|URL (or set MIDGE_URL)`);
  }
  return /^\d+$/.test(arg) ? `mqtt://127.0.0.1:${arg}` : arg;
}

/** A topic or client id no other run uses. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs `main` under the watchdog: exits 0 when it resolves, fails with its
 * error when it rejects or when it outlasts `limitMs`.
 */
export function run(main, limitMs = SCRIPT_MS) {
  const watchdog = setTimeout(() => fail(`still running after ${limitMs} ms`), limitMs);
  main().then(
    () => {
      clearTimeout(watchdog);
      console.log('ok');
      process.exit(0);
    },
    (err) => fail(err instanceof Error ? err.stack ?? err.message : String(err)),
  );
}

/** A FIFO whose `take` waits, bounded, for the next item. */
export class Inbox {
  #items = [];
  #waiters = [];

  /** Adds an item, handing it to the oldest waiter if there is one. */
  push(item) {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter(item);
    } else {
      this.#items.push(item);
    }
  }

  /** The next item; rejects naming `what` after `ms`. */
  take(what, ms = WAIT_MS) {
    if (this.#items.length > 0) {
      return Promise.resolve(this.#items.shift());
    }
    return new Promise((resolve, reject) => {
      const waiter = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      this.#waiters.push(waiter);
    });
  }

  /** Resolves after `ms` if nothing arrived; returns what did otherwise. */
  async nothingFor(ms = QUIET_MS) {
    if (this.#items.length > 0) {
      return this.#items.shift();
    }
    await sleep(ms);
    return this.#items.shift();
  }
}

/**
 * An MQTT.js client speaking 3.1.1 (protocolVersion 4), with everything it
 * reports collected in inboxes: `connects` (CONNACK packets), `messages`
 * ({topic, payload, packet}), `errors` and `closes`; and in `received`,
 * every packet as it came off the wire. MQTT.js emits a QoS 2 message on
 * PUBREL, so `messages` may be out of wire order across QoS levels.
 */
export class Conn {
  /** Starts connecting; see `open` to wait for the CONNACK too. */
  constructor(clientId, options = {}) {
    this.clientId = clientId;
    this.connects = new Inbox();
    this.messages = new Inbox();
    this.errors = new Inbox();
    this.closes = new Inbox();
    this.received = [];
    this.client = mqtt.connect(brokerUrl(), {
      protocolVersion: 4,
      clientId,
      clean: true,
      keepalive: 30,
      connectTimeout: WAIT_MS,
      // Scripts that test reconnecting turn it on.
      reconnectPeriod: 0,
      ...options,
    });
    this.client.on('connect', (connack) => this.connects.push(connack));
    this.client.on('message', (topic, payload, packet) =>
      this.messages.push({ topic, payload, packet }),
    );
    // An 'error' without a listener would throw out of the event loop.
    this.client.on('error', (err) => this.errors.push(err));
    this.client.on('close', () => this.closes.push(Date.now()));
    this.client.on('packetreceive', (packet) => this.received.push(packet));
  }

  /** Connects and waits for an accepted CONNACK; returns the Conn. */
  static async open(clientId, options = {}) {
    const conn = new Conn(clientId, options);
    conn.connack = await conn.nextConnack();
    return conn;
  }

  /** The next accepted CONNACK; rejects with the client's error first. */
  async nextConnack() {
    let onError;
    const refused = new Promise((_, reject) => {
      onError = (err) =>
        reject(new Error(`${this.clientId}: connect failed: ${err.message} (code ${err.code})`));
      this.client.once('error', onError);
    });
    try {
      return await Promise.race([this.connects.take(`${this.clientId}: CONNACK`), refused]);
    } finally {
      this.client.removeListener('error', onError);
    }
  }

  /** Subscribes; returns the granted QoS per filter, in request order. */
  async subscribe(filters) {
    const granted = await within(
      this.client.subscribeAsync(filters),
      `${this.clientId}: SUBACK for ${JSON.stringify(filters)}`,
    );
    return granted.map((g) => [g.topic, g.qos]);
  }

  /** Publishes; resolves when the QoS flow is complete (PUBACK/PUBCOMP). */
  publish(topic, payload, qos, retain = false) {
    return within(
      this.client.publishAsync(topic, payload, { qos, retain }),
      `${this.clientId}: publish to ${topic} at QoS ${qos} acknowledged`,
    );
  }

  /** The next message; fails naming `what` if none comes. */
  next(what) {
    return this.messages.take(`${this.clientId}: ${what}`);
  }

  /** How many packets of kind `cmd` ('suback', 'pingresp', ...) arrived. */
  count(cmd) {
    return this.received.filter((p) => p.cmd === cmd).length;
  }

  /** Fails if a message arrives within `ms`. */
  async expectNothing(ms = QUIET_MS) {
    const m = await this.messages.nothingFor(ms);
    check(
      m === undefined,
      `${this.clientId}: expected nothing, got ${JSON.stringify(m?.payload.toString())} on ${m?.topic}`,
    );
  }

  /** Ends cleanly: DISCONNECT, then close. */
  end() {
    return within(this.client.endAsync(), `${this.clientId}: end()`);
  }

  /** Ends abruptly: the socket is destroyed without DISCONNECT. */
  async destroy() {
    this.client.options.reconnectPeriod = 0;
    this.client.stream.destroy();
    await this.closes.take(`${this.clientId}: close after destroy`);
    this.client.end(true);
  }
}
