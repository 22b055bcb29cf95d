// A scenario is checked whole before it replaces anything; each flaw names its field.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { tablesFromScenario } from '../src/scenario.js';

const P = 'practices/demo';

/** A Scenario message as proto-loader decodes it (defaults filled in). */
function scenario(changes = {}) {
  return {
    display_name: 'Demo',
    time_zone: 'Europe/Berlin',
    practitioners: [],
    rooms: [],
    columns: [
      { name: `${P}/columns/a`, display_name: 'A', kind: 'COLUMN_KIND_UNSPECIFIED', practitioner: '', room: '', weekly_hours: [] },
      { name: `${P}/columns/b`, display_name: 'B', kind: 'COLUMN_KIND_ROOM', practitioner: '', room: '', weekly_hours: [] },
    ],
    appointment_type_groups: [],
    appointment_types: [],
    booking_areas: [],
    shifts: [],
    closed_days: [],
    absences: [],
    entries: [
      {
        columns: [`${P}/columns/a`, `${P}/columns/b`],
        interval: { start_time: { seconds: 3600, nanos: 0 }, end_time: { seconds: 7200, nanos: 0 } },
        kind: 'ENTRY_KIND_RESERVATION',
        appointment_type: '',
        patient_id: '',
      },
    ],
    patients: [
      { id: 'p-1', given_name: 'A', family_name: 'B', birth_date: { year: 1980, month: 5, day: 0 }, contacts: [], inactive: false, consents: [] },
      { id: 'p-2', given_name: 'C', family_name: 'D', birth_date: null, contacts: [], inactive: true, consents: [] },
    ],
    ...changes,
  };
}

test('an entry occupies one row per column; partial birth dates are kept as such', () => {
  const tables = tablesFromScenario('demo', scenario());
  assert.deepEqual([...tables.entries.values()].map((e) => e.columnId), ['a', 'b']);
  assert.equal(tables.columns[0].kind, 'COLUMN_KIND_PRACTITIONER', 'unspecified reads as a practitioner column');
  assert.equal(tables.patients.get('p-1').birthDate, '1980-05');
  assert.equal(tables.patients.get('p-2').birthDate, null);
  assert.equal(tables.patients.get('p-2').active, false);
});

test('flaws are INVALID_ARGUMENT naming the field', () => {
  const refused = (changes, message) => assert.throws(() => tablesFromScenario('demo', scenario(changes)), { code: 3, message });
  refused({ time_zone: '' }, 'scenario.time_zone: is required');
  refused({ time_zone: 'Mars/Olympus' }, 'scenario.time_zone: is not an IANA time zone');
  const [a] = scenario().columns;
  refused({ columns: [a, a] }, 'scenario.columns[1].name: repeats an id the scenario already defines');
  refused({ columns: [{ ...a, name: 'practices/other/columns/a' }] }, /^scenario\.columns\[0\]\.name: belongs to another practice/);
  const [entry] = scenario().entries;
  refused({ entries: [{ ...entry, kind: 'ENTRY_KIND_UNSPECIFIED' }] }, 'scenario.entries[0].kind: is required');
  refused({ entries: [{ ...entry, columns: [`${P}/columns/zz`] }] }, 'scenario.entries[0].columns[0]: names columns the scenario does not define');
  const [p1] = scenario().patients;
  refused({ patients: [{ ...p1, birth_date: { year: 1980, month: 13, day: 0 } }] }, 'scenario.patients[0].birth_date.month: must be 1 to 12');
  refused({ patients: [{ ...p1, id: 'no/slash' }] }, /^scenario\.patients\[0\]\.id:/);
});
