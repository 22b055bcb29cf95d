// WatchDataChanges: changes as they happen, heartbeats when idle, a bounded backlog.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Practice } from '../src/practice.js';
import { createHandlers } from '../src/service.js';

/** A stand-in for grpc-js's server stream that holds every write's callback until `flush()`. */
class FakeStream extends EventEmitter {
  constructor(parent) {
    super();
    this.request = { parent };
    this.metadata = new grpc.Metadata();
    this.metadata.set('otv-partner-id', 'partner-a');
    this.written = [];
    this.pending = [];
  }

  sendMetadata() {}

  write(message, done) {
    this.written.push(message);
    this.pending.push(done);
  }

  end() {
    this.ended = true;
  }

  flush() {
    const callbacks = this.pending.splice(0);
    for (const done of callbacks) done();
  }
}

function setup(heartbeatSeconds = 15) {
  const practice = new Practice('demo', { displayName: 'Demo', timeZone: 'Europe/Berlin' });
  const handlers = createHandlers(new Map([['demo', practice]]), { version: '0', heartbeatSeconds });
  return { practice, handlers };
}

const change = (n) => ({ type: 'entries', columnId: 'dr-a', added: [{ start: n, end: n + 60 }], removed: [] });

test('entry and config changes are sent as they happen', () => {
  const { practice, handlers } = setup();
  const stream = new FakeStream('practices/demo');
  handlers.data.WatchDataChanges(stream);
  practice.publish(change(0));
  practice.reset();
  assert.deepEqual(stream.written, [
    {
      entries: {
        column: 'practices/demo/columns/dr-a',
        added: [{ start_time: { seconds: 0, nanos: 0 }, end_time: { seconds: 60, nanos: 0 } }],
        removed: [],
      },
    },
    { config: {} },
  ]);
  stream.emit('cancelled');
  practice.publish(change(1));
  assert.equal(stream.written.length, 2, 'nothing after the gateway went away');
});

test('a shutdown ends open streams', () => {
  const { handlers } = setup();
  const stream = new FakeStream('practices/demo');
  handlers.data.WatchDataChanges(stream);
  handlers.closeStreams();
  assert.equal(stream.ended, true);
});

test('a gateway too far behind gets one ConfigChange instead of the backlog', () => {
  const { practice, handlers } = setup();
  const stream = new FakeStream('practices/demo');
  handlers.data.WatchDataChanges(stream);
  for (let n = 0; n < 1500; n += 1) practice.publish(change(n));
  assert.equal(stream.written.length, 1000, 'at most 1000 changes in flight');
  stream.flush();
  assert.deepEqual(stream.written.at(-1), { config: {} });
  assert.equal(stream.written.length, 1001);
  handlers.closeStreams();
});

test('an idle stream gets heartbeats', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { handlers } = setup(15);
  const stream = new FakeStream('practices/demo');
  handlers.data.WatchDataChanges(stream);
  t.mock.timers.tick(14_999);
  assert.deepEqual(stream.written, []);
  t.mock.timers.tick(1);
  t.mock.timers.tick(15_000);
  assert.deepEqual(stream.written, [{ heartbeat: {} }, { heartbeat: {} }]);
  handlers.closeStreams();
});

test('a watch of a practice this server does not serve fails with NOT_FOUND', () => {
  const { handlers } = setup();
  const stream = new FakeStream('practices/elsewhere');
  let status;
  stream.on('error', (error) => {
    status = error;
  });
  handlers.data.WatchDataChanges(stream);
  assert.equal(status.code, grpc.status.NOT_FOUND);
  assert.equal(status.details, 'parent: this adapter server does not serve that practice');
});
