// The practice store: idempotent writes, deletes and creations, and the changes it announces.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Practice } from '../src/practice.js';

function practice() {
  const p = new Practice('demo', { displayName: 'Demo', timeZone: 'Europe/Berlin' });
  p.tables.columns.push({ id: 'dr-a', displayName: 'Dr. A', kind: 'COLUMN_KIND_PRACTITIONER', weeklyHours: [] });
  return p;
}

const booking = {
  reference: 'booking-1',
  columnId: 'dr-a',
  appointmentTypeId: 'kontrolle',
  start: 3600,
  end: 4800,
  patientId: null,
  partner: 'partner-a',
  category: 'online',
};

test('the same reference is written once and answers with the same entry', () => {
  const p = practice();
  const changes = [];
  p.subscribe((change) => changes.push(change));
  const first = p.writeEntry(booking);
  const again = p.writeEntry({ ...booking, start: 0, end: 60 }); // a retry: the first write stands
  assert.deepEqual(again, first);
  assert.equal(p.tables.entries.size, 1);
  assert.deepEqual(p.entries({ start: 0, end: 86400 }, ['dr-a']), [
    { columnId: 'dr-a', intervals: [{ start: 3600, end: 4800 }] },
  ]);
  assert.deepEqual(changes, [{ type: 'entries', columnId: 'dr-a', added: [{ start: 3600, end: 4800 }], removed: [] }]);
});

test('a booking on top of another entry is kept and marked extra', () => {
  const p = practice();
  assert.equal(p.writeEntry(booking).extra, false);
  const onTop = p.writeEntry({ ...booking, reference: 'booking-2', start: 4000, end: 4200 });
  assert.equal(onTop.extra, true);
  assert.equal(p.writeEntry({ ...booking, reference: 'booking-3', start: 4800, end: 5000 }).extra, false); // adjacent
});

test('a delete removes the entry once; later deletes find nothing', () => {
  const p = practice();
  const { entryId } = p.writeEntry(booking);
  const changes = [];
  p.subscribe((change) => changes.push(change));
  const { id, ...removed } = p.deleteEntry(entryId);
  assert.equal(id, entryId);
  assert.deepEqual(removed, { ...booking, kind: 'appointment', extra: false }, 'returned as stored, with its source');
  assert.equal(p.deleteEntry(entryId), null);
  assert.equal(p.deleteEntry('never-written'), null);
  assert.deepEqual(p.entries({ start: 0, end: 86400 }, ['dr-a']), []);
  assert.equal(changes.length, 1, 'only the delete that removed something is announced');
});

test('CreatePatient with a repeated request id returns the first patient', () => {
  const p = practice();
  const data = { givenName: 'Neu', familyName: 'Online', birthDate: '2001-02-03', contacts: [], note: 'online angelegt' };
  const first = p.createPatient('req-1', data, 'partner-a');
  const again = p.createPatient('req-1', { ...data, familyName: 'Other' }, 'partner-a');
  assert.equal(again.id, first.id);
  assert.equal(p.tables.patients.size, 1);
  assert.equal(first.createdOnlineBy, 'partner-a');
  assert.equal(first.consent, 'CONSENT_STATE_OPEN');
  assert.notEqual(p.createPatient('req-2', data, 'partner-a').id, first.id);
  assert.deepEqual(
    p.patientsBornOn('2001-02-03', 'partner-b').map((x) => x.createdOnlineBy),
    ['partner-a', 'partner-a'],
  );
});

test('AppendPatientNote with a repeated request id appends nothing', () => {
  const p = practice();
  const { id } = p.createPatient('req-1', { givenName: 'A', familyName: 'B', birthDate: '2001-02-03', contacts: [], note: 'first' }, 'x');
  p.appendNote(id, 'note-1', 'second');
  p.appendNote(id, 'note-1', 'second');
  p.appendNote(id, 'note-2', 'third');
  assert.equal(p.tables.patients.get(id).note, 'first\nsecond\nthird');
});

test('consent is per partner; only active, granted patients are listed, by id', () => {
  const p = practice();
  const ids = ['c', 'a', 'b', 'd'].map((n) => {
    const { id } = p.createPatient(n, { givenName: n, familyName: n, birthDate: '2000-01-01', contacts: [], note: '' }, 'x');
    return id;
  });
  for (const id of ids) p.writeConsent(id, 'partner-a', { state: 'CONSENT_STATE_GRANTED', evidence: null, setBy: null });
  p.tables.patients.get(ids[3]).active = false;
  p.writeConsent(ids[2], 'partner-a', { state: 'CONSENT_STATE_DENIED', evidence: null, setBy: null });
  const expected = [ids[0], ids[1]].sort();
  assert.deepEqual(p.consentedPatients('partner-a', '', 10).map((x) => x.id), expected);
  assert.deepEqual(p.consentedPatients('partner-a', '', 1).map((x) => x.id), [expected[0]]);
  assert.deepEqual(p.consentedPatients('partner-a', expected[0], 10).map((x) => x.id), [expected[1]]);
  assert.deepEqual(p.consentedPatients('partner-b', '', 10), []);
  assert.equal(p.readConsent(ids[0], 'partner-b').state, 'CONSENT_STATE_OPEN');
});

test('a reset empties the practice, forgets idempotency keys and announces a config change', () => {
  const p = practice();
  p.writeEntry(booking);
  const changes = [];
  p.subscribe((change) => changes.push(change));
  p.reset();
  assert.equal(p.tables.entries.size, 0);
  assert.equal(p.tables.columns.length, 0);
  assert.equal(p.tables.entryByReference.size, 0);
  assert.deepEqual(changes, [{ type: 'config' }]);
});
