// Errors reach the caller with the rich error model the gateway reads (google.rpc.BadRequest).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { encodeStatusDetails, invalid, toServiceError } from '../src/errors.js';

test('status details encode exactly as protobuf does', () => {
  // Bytes of the same google.rpc.Status serialised by the Python protobuf runtime.
  const expected =
    '0803122977696e646f772e656e645f74696d653a206d7573742062652061667465722073746172745f74696d651a5a0a29747970652e676f' +
    '6f676c65617069732e636f6d2f676f6f676c652e7270632e42616452657175657374122d0a2b0a0f77696e646f772e656e645f74696d6512' +
    '186d7573742062652061667465722073746172745f74696d65';
  const error = invalid('window.end_time', 'must be after start_time');
  assert.equal(encodeStatusDetails(error.code, error.message, error.violations).toString('hex'), expected);
  assert.equal(encodeStatusDetails(16, 'x', []).toString('hex'), '0810120178');
});

test('a field error becomes its status with the details trailer', () => {
  const status = toServiceError(invalid('parent', 'is required'));
  assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(status.details, 'parent: is required');
  assert.ok(status.metadata.get('grpc-status-details-bin')[0] instanceof Buffer);
});

test('anything else is INTERNAL and shows no internals', (t) => {
  t.mock.method(console, 'error', () => {});
  const status = toServiceError(new TypeError("Cannot read properties of undefined (reading 'secret')"));
  assert.equal(status.code, grpc.status.INTERNAL);
  assert.doesNotMatch(status.details, /secret/);
});
