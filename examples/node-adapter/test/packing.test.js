// PackedIntervals (time.proto): origin = window start, deltas from the previous start, durations.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { localDate, overlapping, packIntervals, packingOrigin, unpackIntervals, windowIn } from '../src/convert.js';

const COLUMN = 'practices/demo/columns/dr-a';

test('deltas run from the origin, then from the previous start', () => {
  const packed = packIntervals(COLUMN, 1000, [
    { start: 1000, end: 1600 },
    { start: 1300, end: 1400 }, // overlapping entries are kept as they are
    { start: 5000, end: 5001 },
  ]);
  assert.deepEqual(packed, {
    column: COLUMN,
    origin: { seconds: 1000, nanos: 0 },
    start_deltas: [0, 300, 3700],
    durations: [600, 100, 1],
  });
  assert.deepEqual(unpackIntervals(packed), [
    { start: 1000, end: 1600 },
    { start: 1300, end: 1400 },
    { start: 5000, end: 5001 },
  ]);
});

test('no intervals pack to empty arrays', () => {
  assert.deepEqual(packIntervals(COLUMN, 42, []), {
    column: COLUMN,
    origin: { seconds: 42, nanos: 0 },
    start_deltas: [],
    durations: [],
  });
});

test('what cannot be packed is a bug, never a wrong message', () => {
  assert.throws(() => packIntervals(COLUMN, 100, [{ start: 50, end: 200 }]), /cannot pack/); // before the origin
  assert.throws(() => packIntervals(COLUMN, 0, [{ start: 10, end: 20 }, { start: 5, end: 30 }]), /cannot pack/); // unsorted
  assert.throws(() => packIntervals(COLUMN, 0, [{ start: 10, end: 10 }]), /cannot pack/); // empty
  assert.throws(() => packIntervals(COLUMN, 0, [{ start: 2 ** 32, end: 2 ** 32 + 1 }]), /cannot pack/); // > uint32
});

test('entries overlapping the window come as they are, packed from the earliest start', () => {
  const entries = [
    { start: 500, end: 700 },
    { start: 50, end: 150 }, // starts before the window: kept, not cut
    { start: 900, end: 1200 }, // ends after it
    { start: 500, end: 600 },
    { start: 0, end: 100 }, // ends where the window starts: outside
    { start: 1000, end: 1100 }, // starts where it ends: outside
  ];
  const found = overlapping(entries, 100, 1000);
  assert.deepEqual(found, [
    { start: 50, end: 150 },
    { start: 500, end: 600 },
    { start: 500, end: 700 },
    { start: 900, end: 1200 },
  ]);
  const origin = packingOrigin(100, found);
  assert.equal(origin, 50, 'the origin moves back to the entry that began before the window');
  assert.deepEqual(packIntervals(COLUMN, origin, found).start_deltas, [0, 450, 0, 400]);
  assert.equal(packingOrigin(100, [{ start: 300, end: 400 }]), 100, 'otherwise it is the window start');
  assert.equal(packingOrigin(100, []), 100);
});

test('a window is widened to whole seconds and must run forwards', () => {
  const window = { start_time: { seconds: 100, nanos: 5 }, end_time: { seconds: 200, nanos: 1 } };
  assert.deepEqual(windowIn(window), { start: 100, end: 201 });
  const reversed = { start_time: { seconds: 200, nanos: 0 }, end_time: { seconds: 100, nanos: 0 } };
  assert.throws(() => windowIn(reversed), { message: 'window.end_time: must be after start_time' });
  assert.throws(() => windowIn(null), { message: 'window: is required' });
  assert.throws(() => windowIn({ start_time: null, end_time: window.end_time }), { message: 'window.start_time: is required' });
});

test('local dates follow the practice time zone', () => {
  const at = Date.UTC(2027, 2, 21, 23, 30) / 1000; // Sunday 23:30 UTC is Monday 00:30 in Berlin
  assert.equal(localDate(at, 'Europe/Berlin'), '2027-03-22');
  assert.equal(localDate(at, 'UTC'), '2027-03-21');
  assert.equal(localDate(at, 'America/New_York'), '2027-03-21');
});
