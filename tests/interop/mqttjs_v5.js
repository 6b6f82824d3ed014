#!/usr/bin/env node
// MQTT.js (npm "mqtt" v5) with protocolVersion 5, driven by tests/interop_v5.rs:
//
//   node mqttjs_v5.js URL
//
// A subscriber (with a Subscription Identifier, accepting topic aliases) and a publisher that uses
// a topic alias and user properties: aliases both ways; prints "PASS mqttjs_v5" or fails with the reason. Bounded by a 20 s watchdog.
'use strict';
const mqtt = require('mqtt');

function fail(msg) {
  process.stderr.write('FAIL: ' + msg + '\n');
  process.exit(1);
}
setTimeout(() => fail('timed out'), 20000).unref();

function connect(url, opts) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10000, ...opts });
    c.once('connect', (ack) => resolve([c, ack]));
    c.once('error', reject);
  });
}

(async () => {
  const url = process.argv[2];
  const topic = 'js5/' + process.pid + '/t';
  // The subscriber accepts 5 topic aliases from the broker, which midge then uses.
  const [sub, ack] = await connect(url, { clientId: 'js5sub' + process.pid, properties: { topicAliasMaximum: 5 } });
  if (!ack.properties || ack.properties.topicAliasMaximum !== 10) fail('CONNACK properties ' + JSON.stringify(ack.properties));
  const got = [];
  sub.on('message', (t, payload, packet) => got.push([t, payload.toString(), packet.properties || {}]));
  await new Promise((res, rej) =>
    sub.subscribe(topic, { qos: 1, properties: { subscriptionIdentifier: 42 } }, (e, g) => (e ? rej(e) : res(g))));
  const [pub] = await connect(url, { clientId: 'js5pub' + process.pid });
  const publish = (t, m, properties) =>
    new Promise((res, rej) => pub.publish(t, m, { qos: 1, properties }, (e) => (e ? rej(e) : res())));
  await publish(topic, 'one', { topicAlias: 1, userProperties: { a: '1', b: '2' } });
  await publish('', 'two', { topicAlias: 1 });
  const end = Date.now() + 5000;
  while (got.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  if (got.length !== 2) fail('got ' + JSON.stringify(got));
  if (got[0][0] !== topic || got[1][0] !== topic) fail('topics ' + got.map((g) => g[0]));
  if (got[0][1] !== 'one' || got[1][1] !== 'two') fail('payloads');
  const up = got[0][2].userProperties || {};
  if (up.a !== '1' || up.b !== '2') fail('user properties ' + JSON.stringify(up));
  if (got[1][2].topicAlias !== 1) fail('no topic alias from the broker: ' + JSON.stringify(got[1][2]));
  const ids = [].concat(got[1][2].subscriptionIdentifier || []);
  if (ids[0] !== 42) fail('subscription identifier ' + JSON.stringify(got[1][2]));
  pub.end();
  sub.end();
  console.log('PASS mqttjs_v5');
  process.exit(0);
})().catch((e) => fail(String(e)));
