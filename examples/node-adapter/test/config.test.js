// Configuration from the environment: defaults, and refusals that name the variable.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEFAULT_PROTO_DIR, configFromEnv } from '../src/server.js';

test('defaults serve practice demo on 127.0.0.1:50061 from the repository protos', () => {
  assert.deepEqual(configFromEnv({}), {
    listen: '127.0.0.1:50061',
    practices: ['demo'],
    protoDir: DEFAULT_PROTO_DIR,
    heartbeatSeconds: 15,
    tls: null,
  });
  assert.match(DEFAULT_PROTO_DIR, /proto$/);
});

test('several practices, a port, a proto directory, mutual TLS', () => {
  const config = configFromEnv({
    OTV_PRACTICES: 'demo, sandbox',
    OTV_LISTEN: '[::1]:0',
    OTV_PROTO_DIR: '/srv/otv/proto',
    OTV_TLS_CERT: 'server.pem',
    OTV_TLS_KEY: 'server.key',
    OTV_TLS_CLIENT_CA: 'ca.pem',
  });
  assert.deepEqual(config.practices, ['demo', 'sandbox']);
  assert.equal(config.listen, '[::1]:0');
  assert.equal(config.protoDir, '/srv/otv/proto');
  assert.deepEqual(config.tls, { cert: 'server.pem', key: 'server.key', clientCa: 'ca.pem' });
});

test('bad settings are refused naming the variable', () => {
  assert.throws(() => configFromEnv({ OTV_PRACTICES: 'Demo' }), /^Error: OTV_PRACTICES/);
  assert.throws(() => configFromEnv({ OTV_PRACTICES: ' , ' }), /OTV_PRACTICES/);
  assert.throws(() => configFromEnv({ OTV_LISTEN: 'localhost' }), /OTV_LISTEN/);
  assert.throws(() => configFromEnv({ OTV_HEARTBEAT_SECONDS: '0' }), /OTV_HEARTBEAT_SECONDS/);
  assert.throws(() => configFromEnv({ OTV_TLS_CERT: 'server.pem' }), /OTV_TLS_KEY/);
});
