/**
 * A sandbox scenario (sandbox_service.proto) turned into the tables of an in-memory practice.
 *
 * This is the only place that reads a whole practice from a message, so it checks everything the
 * practice later relies on: names belong to the practice, ids are unique, and every reference
 * (a column's practitioner, an entry's patient, ...) points at something the scenario defines.
 * A scenario that fails any check is refused with INVALID_ARGUMENT naming the field, and the
 * practice keeps its previous data, as the reference PVS's single transaction does.
 */

import { invalid } from './errors.js';
import { CHILD_ID, parseChildOf } from './names.js';
import {
  dateIn,
  intervalIn,
  isTimeZone,
  nowTimestamp,
  optionalDateIn,
  weeklySpanIn,
  yearMonthIn,
} from './convert.js';

// Limits of the contract (src/otv_sdk/limits.py), so nothing stored here is refused by the gateway.
export const MAX_CONTACTS = 10;
export const MAX_CONTACT_VALUE = 254;
export const CONTACT_KINDS = ['CONTACT_KIND_PHONE', 'CONTACT_KIND_MOBILE', 'CONTACT_KIND_EMAIL'];
export const CONSENT_STATES = ['CONSENT_STATE_OPEN', 'CONSENT_STATE_GRANTED', 'CONSENT_STATE_DENIED'];

/**
 * The tables of a practice with no calendar and no patients: what a reset sandbox is.
 * Lists keep the scenario's order, which is the order GetCalendarConfig returns.
 */
export function emptyTables(displayName, timeZone) {
  return {
    displayName,
    timeZone,
    practitioners: [],
    rooms: [],
    columns: [],
    appointmentTypeGroups: [],
    appointmentTypes: [],
    bookingAreas: [],
    shifts: [],
    closedDays: [],
    absences: [],
    /** @type {Map<string, object>} entry id -> entry; one entry per column it occupies */
    entries: new Map(),
    /** @type {Map<string, object>} patient id -> patient */
    patients: new Map(),
    /** @type {Map<string, Map<string, object>>} patient id -> partner -> consent */
    consents: new Map(),
    /** @type {Map<string, string>} WriteCalendarEntry reference -> entry id, while the entry exists */
    entryByReference: new Map(),
    /** @type {Map<string, string>} CreatePatient request_id -> patient id */
    patientByRequest: new Map(),
    /** @type {Set<string>} AppendPatientNote request_ids already applied */
    noteRequests: new Set(),
  };
}

/** Contacts as given (the gateway normalises): kind and value required, within the limits. */
export function contactsIn(contacts, field) {
  if (contacts.length > MAX_CONTACTS) throw invalid(field, `has more than ${MAX_CONTACTS} contacts`);
  return contacts.map((c, i) => {
    if (!CONTACT_KINDS.includes(c.kind)) throw invalid(`${field}[${i}].kind`, 'is required');
    if (!c.value) throw invalid(`${field}[${i}].value`, 'is required');
    if (c.value.length > MAX_CONTACT_VALUE) {
      throw invalid(`${field}[${i}].value`, `is longer than ${MAX_CONTACT_VALUE} characters`);
    }
    return { kind: c.kind, value: c.value };
  });
}

function nonNegative(value, field) {
  if (!Number.isInteger(value) || value < 0) throw invalid(field, 'must not be negative');
  return value;
}

/**
 * Parse the names of one collection into ids, refusing duplicates.
 * @returns {Set<string>} the ids defined, to check references against
 */
function defineIds(items, practiceId, field, collection, nameOf = (x) => x.name) {
  const ids = new Set();
  items.forEach((item, i) => {
    const id = parseChildOf(nameOf(item), `${field}[${i}].name`, collection, practiceId);
    if (ids.has(id)) throw invalid(`${field}[${i}].name`, 'repeats an id the scenario already defines');
    ids.add(id);
  });
  return ids;
}

/** Build the practice's tables from a Scenario message; throws INVALID_ARGUMENT on any flaw. */
export function tablesFromScenario(practiceId, msg, field = 'scenario') {
  if (msg == null) throw invalid(field, 'is required');
  if (!msg.time_zone) throw invalid(`${field}.time_zone`, 'is required');
  if (!isTimeZone(msg.time_zone)) throw invalid(`${field}.time_zone`, 'is not an IANA time zone');
  const p = practiceId;
  const tables = emptyTables(msg.display_name, msg.time_zone);

  const practitionerIds = defineIds(msg.practitioners, p, `${field}.practitioners`, 'practitioners');
  const roomIds = defineIds(msg.rooms, p, `${field}.rooms`, 'rooms');
  const columnIds = defineIds(msg.columns, p, `${field}.columns`, 'columns');
  const groupIds = defineIds(msg.appointment_type_groups, p, `${field}.appointment_type_groups`, 'appointmentTypeGroups');
  const typeIds = defineIds(msg.appointment_types, p, `${field}.appointment_types`, 'appointmentTypes');
  defineIds(msg.booking_areas, p, `${field}.booking_areas`, 'bookingAreas');

  /** A reference to something of `collection` that must be among `ids`; '' means none (null). */
  const ref = (name, where, collection, ids, required = false) => {
    if (!name) {
      if (required) throw invalid(where, 'is required');
      return null;
    }
    const id = parseChildOf(name, where, collection, p);
    if (!ids.has(id)) throw invalid(where, `names ${collection} the scenario does not define`);
    return id;
  };
  /** A list of column references without repeats. */
  const columnRefs = (names, where) => {
    const seen = new Set();
    names.forEach((name, i) => {
      const id = ref(name, `${where}[${i}]`, 'columns', columnIds, true);
      if (seen.has(id)) throw invalid(`${where}[${i}]`, 'names a column twice');
      seen.add(id);
    });
    return [...seen];
  };
  const spans = (list, where) => list.map((s, i) => weeklySpanIn(s, `${where}[${i}]`));
  const idOf = (name) => name.split('/')[3];

  tables.practitioners = msg.practitioners.map((x) => ({ id: idOf(x.name), displayName: x.display_name }));
  tables.rooms = msg.rooms.map((x) => ({ id: idOf(x.name), displayName: x.display_name }));
  tables.columns = msg.columns.map((c, i) => {
    const where = `${field}.columns[${i}]`;
    return {
      id: idOf(c.name),
      displayName: c.display_name,
      // Unspecified reads as a practitioner's column, as the Python SDK reads it.
      kind: c.kind === 'COLUMN_KIND_ROOM' ? 'COLUMN_KIND_ROOM' : 'COLUMN_KIND_PRACTITIONER',
      practitionerId: ref(c.practitioner, `${where}.practitioner`, 'practitioners', practitionerIds),
      roomId: ref(c.room, `${where}.room`, 'rooms', roomIds),
      weeklyHours: spans(c.weekly_hours, `${where}.weekly_hours`),
    };
  });
  tables.appointmentTypeGroups = msg.appointment_type_groups.map((g) => ({
    id: idOf(g.name),
    displayName: g.display_name,
  }));
  tables.appointmentTypes = msg.appointment_types.map((t, i) => {
    const where = `${field}.appointment_types[${i}]`;
    if (!Number.isInteger(t.duration_minutes) || t.duration_minutes <= 0) {
      throw invalid(`${where}.duration_minutes`, 'must be positive');
    }
    return {
      id: idOf(t.name),
      displayName: t.display_name,
      durationMinutes: t.duration_minutes,
      columnIds: columnRefs(t.allowed_columns, `${where}.allowed_columns`),
      // Unspecified reads as "either", as the Python SDK reads it.
      visitKind: ['VISIT_KIND_FIRST', 'VISIT_KIND_FOLLOW_UP'].includes(t.visit_kind) ? t.visit_kind : 'VISIT_KIND_ANY',
      groupId: ref(t.group, `${where}.group`, 'appointmentTypeGroups', groupIds),
      bufferMinutes: nonNegative(t.buffer_minutes, `${where}.buffer_minutes`),
      minLeadMinutes: nonNegative(t.min_lead_minutes, `${where}.min_lead_minutes`),
      maxHorizonDays: nonNegative(t.max_horizon_days, `${where}.max_horizon_days`),
    };
  });
  tables.bookingAreas = msg.booking_areas.map((a, i) => {
    const where = `${field}.booking_areas[${i}]`;
    const types = a.appointment_types.map((name, j) =>
      ref(name, `${where}.appointment_types[${j}]`, 'appointmentTypes', typeIds, true),
    );
    return {
      id: idOf(a.name),
      displayName: a.display_name,
      columnId: ref(a.column, `${where}.column`, 'columns', columnIds),
      appointmentTypeIds: [...new Set(types)],
      weeklySpans: spans(a.weekly_spans, `${where}.weekly_spans`),
      validFrom: optionalDateIn(a.valid_from, `${where}.valid_from`),
      validUntil: optionalDateIn(a.valid_until, `${where}.valid_until`),
    };
  });
  tables.shifts = msg.shifts.map((s, i) => {
    const where = `${field}.shifts[${i}]`;
    const shift = {
      columnId: ref(s.column, `${where}.column`, 'columns', columnIds, true),
      validFrom: dateIn(s.valid_from, `${where}.valid_from`),
      validUntil: dateIn(s.valid_until, `${where}.valid_until`),
      // A shift without spans is kept too: its days are days off.
      spans: spans(s.weekly_spans, `${where}.weekly_spans`),
    };
    if (shift.validUntil < shift.validFrom) throw invalid(`${where}.valid_until`, 'must not be before valid_from');
    return shift;
  });
  tables.closedDays = msg.closed_days.map((d, i) => ({
    day: dateIn(d.day, `${field}.closed_days[${i}].day`),
    columnId: ref(d.column, `${field}.closed_days[${i}].column`, 'columns', columnIds),
  }));
  tables.absences = msg.absences.map((a, i) => ({
    columnId: ref(a.column, `${field}.absences[${i}].column`, 'columns', columnIds, true),
    ...intervalIn(a.interval, `${field}.absences[${i}].interval`),
  }));

  const loadTime = nowTimestamp();
  msg.patients.forEach((x, i) => {
    const where = `${field}.patients[${i}]`;
    if (!CHILD_ID.test(x.id)) throw invalid(`${where}.id`, 'must be 1-128 characters of A-Z a-z 0-9 . _ ~ -');
    if (tables.patients.has(x.id)) throw invalid(`${where}.id`, 'repeats an id the scenario already defines');
    let birthDate = null; // unknown
    if (x.birth_date != null) {
      // Day 0: the practice knows only year and month. Such a patient is never born "on" a date.
      birthDate = x.birth_date.day === 0 ? yearMonthIn(x.birth_date, `${where}.birth_date`) : dateIn(x.birth_date, `${where}.birth_date`);
    }
    tables.patients.set(x.id, {
      id: x.id,
      givenName: x.given_name,
      familyName: x.family_name,
      birthDate,
      contacts: contactsIn(x.contacts, `${where}.contacts`),
      active: !x.inactive,
      note: '',
      createdOnlineBy: '',
      createTime: loadTime,
    });
    const consents = new Map();
    x.consents.forEach((c, j) => {
      if (!c.partner) throw invalid(`${where}.consents[${j}].partner`, 'is required');
      if (!CONSENT_STATES.includes(c.state)) {
        throw invalid(`${where}.consents[${j}].state`, 'must be OPEN, GRANTED or DENIED');
      }
      // Recorded by the practice itself, without evidence: the scenario is the practice's records.
      consents.set(c.partner, { state: c.state, evidence: null, setBy: 'CONSENT_ACTOR_PRACTICE', updateTime: loadTime });
    });
    if (consents.size > 0) tables.consents.set(x.id, consents);
  });

  let sequence = 0;
  msg.entries.forEach((e, i) => {
    const where = `${field}.entries[${i}]`;
    if (e.columns.length === 0) throw invalid(`${where}.columns`, 'must name at least one column');
    const columns = columnRefs(e.columns, `${where}.columns`);
    const { start, end } = intervalIn(e.interval, `${where}.interval`);
    let kind;
    if (e.kind === 'ENTRY_KIND_APPOINTMENT') kind = 'appointment';
    else if (e.kind === 'ENTRY_KIND_RESERVATION') kind = 'reservation';
    else throw invalid(`${where}.kind`, 'is required');
    let appointmentTypeId = null;
    let patientId = null;
    if (kind === 'appointment') {
      appointmentTypeId = ref(e.appointment_type, `${where}.appointment_type`, 'appointmentTypes', typeIds);
      if (e.patient_id) {
        if (!tables.patients.has(e.patient_id)) throw invalid(`${where}.patient_id`, 'names a patient the scenario does not define');
        patientId = e.patient_id;
      }
    }
    // One row per column the entry occupies, as a PVS with a column per calendar keeps it.
    for (const columnId of columns) {
      sequence += 1;
      const id = `s-${sequence}`;
      tables.entries.set(id, {
        id,
        columnId,
        start,
        end,
        kind,
        appointmentTypeId,
        patientId,
        reference: null,
        partner: null,
        category: null,
        extra: false,
      });
    }
  });
  return tables;
}
