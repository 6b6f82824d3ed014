#!/usr/bin/env node
// MQTT.js (npm "mqtt" v5) client driven by tests/interop.rs.
//
//   node mqttjs_tool.js selftest --url ws://127.0.0.1:PORT/mqtt
//   node mqttjs_tool.js sub --url URL -t TOPIC [-q QOS] [-C COUNT]   (prints READY, then "topic qos retain payload")
//   node mqttjs_tool.js pub --url URL -t TOPIC -m MSG [-q QOS] [-r]
//
//   node mqttjs_tool.js connect --url URL [-i ID]   (prints "CONNACK <code>", 0 = accepted)
//
// wss:// and mqtts:// URLs trust --ca FILE (and present --cert/--key FILE if given); -u/-P
// set the username and password.
//
// Every command is bounded by --timeout seconds (default 20) and exits non-zero on failure.
'use strict';
const mqtt = require('mqtt');

function parseArgs(argv) {
  const a = { cmd: argv[0], topic: [], qos: 0, count: 0, retain: false, timeout: 20, message: '', linger: 0.3 };
  for (let i = 1; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--url') a.url = v();
    else if (k === '-t') a.topic.push(v());
    else if (k === '-q') a.qos = Number(v());
    else if (k === '-C') a.count = Number(v());
    else if (k === '-m') a.message = v();
    else if (k === '-r') a.retain = true;
    else if (k === '--timeout') a.timeout = Number(v());
    else if (k === '--linger') a.linger = Number(v());
    else if (k === '--ca') a.ca = v();
    else if (k === '--cert') a.cert = v();
    else if (k === '--key') a.key = v();
    else if (k === '-u') a.username = v();
    else if (k === '-P') a.password = v();
    else if (k === '-i') a.id = v();
    else throw new Error('unknown argument ' + k);
  }
  return a;
}

function fail(msg) {
  process.stderr.write('FAIL: ' + msg + '\n');
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// TLS files and credentials from the command line, for every connection.
const CONN_OPTS = {};

function connect(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      clean: true,
      ...CONN_OPTS,
      ...opts,
    });
    c.inbox = [];
    c.on('message', (topic, payload, packet) => {
      c.inbox.push({ topic, qos: packet.qos, retain: packet.retain ? 1 : 0, payload: payload.toString() });
    });
    c.once('connect', () => resolve(c));
    c.once('error', (e) => reject(e));
  });
}

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) fail('timed out waiting for ' + what);
    await sleep(10);
  }
}

async function selftest(a) {
  const sub = await connect(a.url);
  const granted = await sub.subscribeAsync('self/#', { qos: 2 });
  if (granted[0].qos !== 2) fail('granted ' + JSON.stringify(granted));
  const pub = await connect(a.url);
  for (const q of [0, 1, 2]) await pub.publishAsync('self/q' + q, 'payload qos ' + q, { qos: q });
  await waitFor(() => sub.inbox.length >= 3, 10000, 'three messages');
  await sleep(300);
  const got = sub.inbox.map((m) => `${m.topic} ${m.qos} ${m.retain} ${m.payload}`).sort();
  const want = [0, 1, 2].map((q) => `self/q${q} ${q} 0 payload qos ${q}`);
  if (JSON.stringify(got) !== JSON.stringify(want)) fail('QoS round trip: got ' + JSON.stringify(got));
  console.log('PASS qos 0 1 2');
  await sub.endAsync();

  await pub.publishAsync('retained/t', 'kept', { qos: 1, retain: true });
  const late = await connect(a.url);
  await late.subscribeAsync('retained/t', { qos: 1 });
  await waitFor(() => late.inbox.length >= 1, 10000, 'retained message');
  const r = late.inbox[0];
  if (r.topic !== 'retained/t' || r.payload !== 'kept' || r.retain !== 1 || r.qos !== 1)
    fail('retained: got ' + JSON.stringify(late.inbox));
  await late.endAsync();
  await pub.publishAsync('retained/t', '', { qos: 1, retain: true });
  const later = await connect(a.url);
  await later.subscribeAsync(['retained/t', 'retained/sentinel'], { qos: 1 });
  await pub.publishAsync('retained/sentinel', 'x', { qos: 1 });
  await waitFor(() => later.inbox.length >= 1, 10000, 'sentinel');
  if (later.inbox.map((m) => m.topic).join(',') !== 'retained/sentinel')
    fail('retained message not cleared: ' + JSON.stringify(later.inbox));
  console.log('PASS retained');
  await later.endAsync();
  await pub.endAsync();
}

async function sub(a) {
  const c = await connect(a.url);
  c.removeAllListeners('message');
  let n = 0;
  let done;
  const finished = new Promise((r) => (done = r));
  c.on('message', (topic, payload, packet) => {
    console.log(`${topic} ${packet.qos} ${packet.retain ? 1 : 0} ${payload.toString()}`);
    n++;
    if (a.count && n >= a.count) done();
  });
  c.on('close', () => fail('connection closed after ' + n + ' messages'));
  const granted = await c.subscribeAsync(a.topic, { qos: a.qos });
  if (granted.some((g) => g.qos === 128)) fail('subscription refused');
  console.log('READY');
  await finished;
  await sleep(a.linger * 1000);
  c.removeAllListeners('close');
  await c.endAsync();
}

async function pub(a) {
  const c = await connect(a.url);
  await c.publishAsync(a.topic[0], a.message, { qos: a.qos, retain: a.retain });
  console.log('PUBLISHED 1');
  await c.endAsync();
}

async function connectOnce(a) {
  try {
    const c = await connect(a.url, a.id ? { clientId: a.id } : {});
    console.log('CONNACK 0');
    await c.endAsync();
  } catch (e) {
    // MQTT.js reports a refusing CONNACK as an error carrying its code.
    if (typeof e.code === 'number') console.log('CONNACK ' + e.code);
    else console.log('ERROR ' + (e.code || e.message));
  }
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const fs = require('fs');
  if (a.ca) CONN_OPTS.ca = fs.readFileSync(a.ca);
  if (a.cert) CONN_OPTS.cert = fs.readFileSync(a.cert);
  if (a.key) CONN_OPTS.key = fs.readFileSync(a.key);
  if (a.username !== undefined) CONN_OPTS.username = a.username;
  if (a.password !== undefined) CONN_OPTS.password = a.password;
  setTimeout(() => fail('timed out after ' + a.timeout + ' s'), a.timeout * 1000).unref();
  if (!a.url) fail('--url is required');
  const cmds = { selftest, sub, pub, connect: connectOnce };
  if (!cmds[a.cmd]) fail('unknown command ' + a.cmd);
  await cmds[a.cmd](a);
  process.exit(0);
}

main().catch((e) => fail(String(e && e.stack ? e.stack : e)));
