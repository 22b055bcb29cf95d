// The server end to end over gRPC: a scenario in, an idempotent write, errors with their fields.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { DEFAULT_PROTO_DIR, startServer } from '../src/server.js';

const P = 'practices/demo';
let server;
let data;
let sandbox;

function call(client, method, request, partner = 'partner-a') {
  const metadata = new grpc.Metadata();
  if (partner) metadata.set('otv-partner-id', partner);
  return new Promise((resolve, reject) =>
    client[method](request, metadata, (error, response) => (error ? reject(error) : resolve(response))),
  );
}

const at = (iso) => ({ seconds: Date.parse(iso) / 1000, nanos: 0 });

before(async () => {
  server = await startServer({ listen: '127.0.0.1:0', practices: ['demo'], protoDir: DEFAULT_PROTO_DIR, heartbeatSeconds: 15, tls: null });
  const definition = protoLoader.loadSync(['otv/v1/practice_data_service.proto', 'otv/v1/sandbox_service.proto'], {
    includeDirs: [DEFAULT_PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).otv.v1;
  data = new v1.PracticeDataService(server.address, grpc.credentials.createInsecure());
  sandbox = new v1.SandboxService(server.address, grpc.credentials.createInsecure());
  await call(sandbox, 'LoadScenario', {
    name: P,
    scenario: {
      display_name: 'Test',
      time_zone: 'Europe/Berlin',
      columns: [{ name: `${P}/columns/dr-a`, display_name: 'Dr. A', kind: 'COLUMN_KIND_PRACTITIONER' }],
      appointment_types: [{ name: `${P}/appointmentTypes/kontrolle`, display_name: 'K', duration_minutes: 20 }],
      patients: [{ id: 'p-1', given_name: 'Erika', family_name: 'Muster' }],
    },
  });
});

after(async () => {
  data.close();
  sandbox.close();
  await server.stop();
});

test('a repeated write returns the first entry and writes nothing more', async () => {
  const request = {
    parent: P,
    reference: 'ref-1',
    column: `${P}/columns/dr-a`,
    appointment_type: `${P}/appointmentTypes/kontrolle`,
    interval: { start_time: at('2027-03-22T08:00:00Z'), end_time: at('2027-03-22T08:20:00Z') },
    patient: `${P}/patients/p-1`,
  };
  const first = await call(data, 'WriteCalendarEntry', request);
  const again = await call(data, 'WriteCalendarEntry', request);
  assert.equal(again.entry_id, first.entry_id);
  const window = { start_time: at('2027-03-22T00:00:00Z'), end_time: at('2027-03-23T00:00:00Z') };
  const { entries } = await call(data, 'ListCalendarEntries', { parent: P, window });
  assert.deepEqual(
    entries.map((e) => [e.column, e.start_deltas, e.durations]),
    [[`${P}/columns/dr-a`, [8 * 3600], [1200]]],
  );
});

test('the profile says who serves the practice and what it supports', async () => {
  const profile = await call(data, 'GetPracticeProfile', { name: P });
  assert.equal(profile.display_name, 'Test');
  assert.equal(profile.adapter.product, 'node-adapter');
  assert.ok(profile.capabilities.includes('DATA_CAPABILITY_SANDBOX'));
});

test('errors carry their code and name the field', async () => {
  await assert.rejects(call(data, 'GetPracticeProfile', { name: P }, null), { code: grpc.status.UNAUTHENTICATED });
  await assert.rejects(call(data, 'GetPracticeProfile', { name: 'practices/elsewhere' }), {
    code: grpc.status.NOT_FOUND,
    details: 'name: this adapter server does not serve that practice',
  });
  await assert.rejects(call(data, 'ListCalendarEntries', { parent: P }), {
    code: grpc.status.INVALID_ARGUMENT,
    details: 'window: is required',
  });
});
