/**
 * The gRPC handlers of otv.v1.PracticeDataService and otv.v1.SandboxService.
 *
 * This layer speaks the contract: it checks the caller's partner header, parses resource names and
 * fields (naming the field in every error), and turns the practice's plain records into messages.
 * What the data *is* lives in practice.js, which is the part a vendor swaps for their database.
 */

import grpc from '@grpc/grpc-js';

import { invalid, notFound, toServiceError, unauthenticated, unimplemented } from './errors.js';
import { childName, optionalChildName, parseChild, parseChildOf, parsePractice } from './names.js';
import {
  dateIn,
  dateOut,
  exactTimestamp,
  intervalIn,
  intervalOut,
  latestToday,
  packIntervals,
  packingOrigin,
  weeklySpanOut,
  windowIn,
} from './convert.js';
import { CONSENT_STATES, contactsIn, tablesFromScenario } from './scenario.js';

export const PARTNER_METADATA_KEY = 'otv-partner-id';

// Limits of the contract (src/otv_sdk/limits.py): refused before any work, naming the field.
const MAX_COLUMNS = 64;
const MAX_REQUEST_ID = 128;
const MAX_NAME_PART = 200;
const MAX_TOKEN = 512;
const MAX_NOTE = 1000; // a note or one appended line: a sentence, never a document
// The gateway pages consented patients by 1000 and asks for one more to see whether a page follows.
const MAX_PAGE_SIZE = 1001;
// Changes one watch may have in flight; a gateway further behind gets one ConfigChange instead.
const WATCH_QUEUE_LIMIT = 1000;

const CAPABILITIES = [
  'DATA_CAPABILITY_CALENDAR_WRITE',
  'DATA_CAPABILITY_PATIENTS',
  'DATA_CAPABILITY_CONSENT',
  'DATA_CAPABILITY_CHANGES',
  'DATA_CAPABILITY_SANDBOX',
];
const CONSENT_METHODS = ['CONSENT_METHOD_ONLINE_FORM', 'CONSENT_METHOD_PAPER', 'CONSENT_METHOD_VERBAL'];
const CONSENT_ACTORS = ['CONSENT_ACTOR_PARTNER', 'CONSENT_ACTOR_PRACTICE'];

/** What the request deserializer returns for bytes that are no message of the method's type. */
export const UNDECODABLE = Symbol('undecodable request');

// --- request checks ------------------------------------------------------------------------------

/** The partner the gateway makes the call for; the link itself is the gateway's (mTLS in production). */
function partnerOf(call) {
  const [partner] = call.metadata.get(PARTNER_METADATA_KEY);
  if (typeof partner !== 'string' || partner === '') {
    throw unauthenticated(`calls must carry the ${PARTNER_METADATA_KEY} metadata set by the gateway`);
  }
  return partner;
}

/** A string field within its limit; `required` refuses an empty or blank one. Stored as sent. */
function text(value, field, limit, { required = false } = {}) {
  if (required && !value.trim()) throw invalid(field, 'is required');
  if (value.length > limit) throw invalid(field, `is longer than ${limit} characters`);
  return value;
}

/** The idempotency key of a mutating request, as the gateway's own servers check it. */
function requestIdIn(value, { required = true } = {}) {
  if (!value) {
    if (required) throw invalid('request_id', 'is required on every mutating request');
    return value;
  }
  if (value.length > MAX_REQUEST_ID || !/^[\x20-\x7e]+$/.test(value)) {
    throw invalid('request_id', `must be 1-${MAX_REQUEST_ID} printable ASCII characters`);
  }
  return value;
}

/** A birth date: a real date, and not in the future anywhere on Earth. */
function birthDateIn(msg, field) {
  const date = dateIn(msg, field);
  if (date > latestToday()) throw invalid(field, 'lies in the future');
  return date;
}

/** The served practices, looked up by name. */
class Practices {
  /** @param {Map<string, import('./practice.js').Practice>} byId */
  constructor(byId) {
    this.byId = byId;
  }

  /** `practices/{practice}` -> the practice; NOT_FOUND if this server does not serve it. */
  resolve(name, field) {
    return this.get(parsePractice(name, field), field);
  }

  get(practiceId, field) {
    const practice = this.byId.get(practiceId);
    if (practice === undefined) throw notFound(field, 'this adapter server does not serve that practice');
    return practice;
  }

  /** `practices/{p}/patients/{id}` -> [practice, patient id], the patient not yet checked. */
  resolvePatient(name, field) {
    const { practiceId, id } = parseChild(name, field, 'patients');
    return [this.get(practiceId, field), id];
  }
}

/**
 * Column names -> ids: at most MAX_COLUMNS, no repeats, each one the practice has; none means all.
 * A column the practice lacks is a wrong argument (the call is about the practice, not the column).
 */
function columnsIn(practice, names, field = 'columns') {
  if (names.length === 0) return practice.columnIds();
  if (names.length > MAX_COLUMNS) throw invalid(field, `names more than ${MAX_COLUMNS} columns`);
  const ids = [];
  names.forEach((name, i) => {
    const id = parseChildOf(name, `${field}[${i}]`, 'columns', practice.id);
    if (ids.includes(id)) throw invalid(`${field}[${i}]`, 'names a column twice');
    if (!practice.hasColumn(id)) throw invalid(`${field}[${i}]`, 'is not a column of this practice');
    ids.push(id);
  });
  return ids;
}

// --- messages out --------------------------------------------------------------------------------

function patientRecordOut(practice, record) {
  return {
    name: childName(practice.id, 'patients', record.id),
    given_name: record.givenName,
    family_name: record.familyName,
    // Unset unless the practice knows the full date ('YYYY-MM' is only year and month).
    birth_date: record.birthDate?.length === 10 ? dateOut(record.birthDate) : null,
    contacts: record.contacts,
    active: record.active,
    consent: record.consent,
    created_online_by: record.createdOnlineBy,
    create_time: record.createTime,
  };
}

function consentOut(practice, patientId, record) {
  return {
    name: `${childName(practice.id, 'patients', patientId)}/consent`,
    state: record.state,
    evidence: record.evidence,
    set_by: record.setBy ?? 'CONSENT_ACTOR_UNSPECIFIED',
    update_time: record.updateTime,
  };
}

function configOut(practice) {
  const p = practice.id;
  const t = practice.tables;
  return {
    columns: t.columns.map((c) => ({
      name: childName(p, 'columns', c.id),
      display_name: c.displayName,
      kind: c.kind,
      practitioner: optionalChildName(p, 'practitioners', c.practitionerId),
      room: optionalChildName(p, 'rooms', c.roomId),
      weekly_hours: c.weeklyHours.map(weeklySpanOut),
    })),
    practitioners: t.practitioners.map((x) => ({ name: childName(p, 'practitioners', x.id), display_name: x.displayName })),
    rooms: t.rooms.map((x) => ({ name: childName(p, 'rooms', x.id), display_name: x.displayName })),
    appointment_types: t.appointmentTypes.map((x) => ({
      name: childName(p, 'appointmentTypes', x.id),
      display_name: x.displayName,
      duration_minutes: x.durationMinutes,
      allowed_columns: x.columnIds.map((id) => childName(p, 'columns', id)),
      visit_kind: x.visitKind,
      group: optionalChildName(p, 'appointmentTypeGroups', x.groupId),
      buffer_minutes: x.bufferMinutes,
      min_lead_minutes: x.minLeadMinutes,
      max_horizon_days: x.maxHorizonDays,
    })),
    appointment_type_groups: t.appointmentTypeGroups.map((x) => ({
      name: childName(p, 'appointmentTypeGroups', x.id),
      display_name: x.displayName,
    })),
    booking_areas: t.bookingAreas.map((x) => ({
      name: childName(p, 'bookingAreas', x.id),
      display_name: x.displayName,
      column: optionalChildName(p, 'columns', x.columnId),
      appointment_types: x.appointmentTypeIds.map((id) => childName(p, 'appointmentTypes', id)),
      weekly_spans: x.weeklySpans.map(weeklySpanOut),
      valid_from: dateOut(x.validFrom),
      valid_until: dateOut(x.validUntil),
    })),
  };
}

/** A practice change as a WatchDataChangesResponse. */
function changeOut(practice, change) {
  if (change.type === 'config') return { config: {} };
  return {
    entries: {
      column: childName(practice.id, 'columns', change.columnId),
      added: change.added.map(intervalOut),
      removed: change.removed.map(intervalOut),
    },
  };
}

// --- handlers ------------------------------------------------------------------------------------

/**
 * A unary handler from `work(request, partner) -> response`: every thrown error becomes a status,
 * so no input can crash the server or reach the caller as UNKNOWN.
 */
function unary(work) {
  return (call, callback) => {
    try {
      if (call.request === UNDECODABLE) throw invalid('request', 'is not a valid message for this method');
      const partner = partnerOf(call);
      callback(null, work(call.request, partner));
    } catch (error) {
      callback(toServiceError(error));
    }
  };
}

/**
 * The handlers of both services over `practices`.
 * @param {Map<string, import('./practice.js').Practice>} practicesById
 * @param {{version: string, heartbeatSeconds: number}} options
 * @returns {{data: object, sandbox: object, closeStreams: () => void}}
 */
export function createHandlers(practicesById, { version, heartbeatSeconds }) {
  const practices = new Practices(practicesById);
  /** Open WatchDataChanges streams -> their close functions, so a shutdown can end them. */
  const streams = new Map();

  const data = {
    GetPracticeProfile: unary((req) => {
      const practice = practices.resolve(req.name, 'name');
      return {
        display_name: practice.tables.displayName,
        time_zone: practice.tables.timeZone,
        adapter: { vendor: 'otv-example', product: 'node-adapter', version },
        capabilities: CAPABILITIES,
      };
    }),

    GetCalendarConfig: unary((req) => configOut(practices.resolve(req.parent, 'parent'))),

    ListWorkingTimeRules: unary((req) => {
      const practice = practices.resolve(req.parent, 'parent');
      const { shifts, closedDays } = practice.workingTimeRules(windowIn(req.window));
      return {
        shifts: shifts.map((s) => ({
          column: childName(practice.id, 'columns', s.columnId),
          valid_from: dateOut(s.validFrom),
          valid_until: dateOut(s.validUntil),
          weekly_spans: s.spans.map(weeklySpanOut),
        })),
        closed_days: closedDays.map((d) => ({
          day: dateOut(d.day),
          column: optionalChildName(practice.id, 'columns', d.columnId),
        })),
      };
    }),

    ListColumnAbsences: unary((req) => {
      const practice = practices.resolve(req.parent, 'parent');
      const window = windowIn(req.window);
      const absences = practice.absences(window, columnsIn(practice, req.columns));
      return {
        absences: absences.map((a) => ({ column: childName(practice.id, 'columns', a.columnId), interval: intervalOut(a) })),
      };
    }),

    ListCalendarEntries: unary((req) => {
      const practice = practices.resolve(req.parent, 'parent');
      const window = windowIn(req.window);
      const columns = practice.entries(window, columnsIn(practice, req.columns));
      return {
        entries: columns.map((c) =>
          packIntervals(childName(practice.id, 'columns', c.columnId), packingOrigin(window.start, c.intervals), c.intervals),
        ),
      };
    }),

    ListPredefinedSlots: unary((req) => {
      practices.resolve(req.parent, 'parent');
      throw unimplemented('this PVS keeps a calendar, not a list of predefined slots');
    }),

    WriteCalendarEntry: unary((req, partner) => {
      const practice = practices.resolve(req.parent, 'parent');
      const reference = text(req.reference, 'reference', MAX_TOKEN, { required: true });
      const columnId = parseChildOf(req.column, 'column', 'columns', practice.id);
      if (!practice.hasColumn(columnId)) throw invalid('column', 'is not a column of this practice');
      const appointmentTypeId = parseChildOf(req.appointment_type, 'appointment_type', 'appointmentTypes', practice.id);
      if (!practice.hasAppointmentType(appointmentTypeId)) {
        throw invalid('appointment_type', 'is not an appointment type of this practice');
      }
      const { start, end } = intervalIn(req.interval, 'interval');
      const patientId = parseChildOf(req.patient, 'patient', 'patients', practice.id);
      if (!practice.hasPatient(patientId)) throw invalid('patient', 'is not a patient of this practice');
      const category = text(req.category, 'category', MAX_NAME_PART);
      const written = practice.writeEntry({ reference, columnId, appointmentTypeId, start, end, patientId, partner, category });
      return { entry_id: written.entryId, extra: written.extra };
    }),

    DeleteCalendarEntry: unary((req) => {
      const practice = practices.resolve(req.parent, 'parent');
      const entryId = text(req.entry_id, 'entry_id', MAX_TOKEN, { required: true });
      const removed = practice.deleteEntry(entryId);
      if (removed === null) return { deleted: false }; // already gone: no error, so retries are safe
      // The entry as stored, not as this request could echo it: the source partner is the one it was
      // written for, whoever deletes it.
      return {
        deleted: true,
        column: childName(practice.id, 'columns', removed.columnId),
        interval: intervalOut(removed),
        reference: removed.reference ?? '',
        appointment_type: optionalChildName(practice.id, 'appointmentTypes', removed.appointmentTypeId),
        patient: optionalChildName(practice.id, 'patients', removed.patientId),
        source_partner: removed.partner ?? '',
        category: removed.category ?? '',
      };
    }),

    ListPatientsBornOn: unary((req, partner) => {
      const practice = practices.resolve(req.parent, 'parent');
      const birthDate = birthDateIn(req.birth_date, 'birth_date');
      return { patients: practice.patientsBornOn(birthDate, partner).map((r) => patientRecordOut(practice, r)) };
    }),

    CreatePatient: unary((req, partner) => {
      const practice = practices.resolve(req.parent, 'parent');
      const requestId = requestIdIn(req.request_id);
      const patient = {
        givenName: text(req.given_name, 'given_name', MAX_NAME_PART, { required: true }),
        familyName: text(req.family_name, 'family_name', MAX_NAME_PART, { required: true }),
        birthDate: birthDateIn(req.birth_date, 'birth_date'),
        contacts: contactsIn(req.contacts, 'contacts'),
        note: text(req.note, 'note', MAX_NOTE),
      };
      return { patient: patientRecordOut(practice, practice.createPatient(requestId, patient, partner)) };
    }),

    AppendPatientNote: unary((req) => {
      const [practice, patientId] = practices.resolvePatient(req.name, 'name');
      if (!practice.hasPatient(patientId)) throw notFound('name', 'no such patient');
      const requestId = requestIdIn(req.request_id);
      const line = text(req.line, 'line', MAX_NOTE, { required: true });
      if (/[\r\n]/.test(line)) throw invalid('line', 'must be one line');
      practice.appendNote(patientId, requestId, line);
      return {};
    }),

    ListConsentedPatients: unary((req, partner) => {
      const practice = practices.resolve(req.parent, 'parent');
      if (!(req.page_size >= 1 && req.page_size <= MAX_PAGE_SIZE)) {
        throw invalid('page_size', `must be 1 to ${MAX_PAGE_SIZE}`);
      }
      const limit = req.page_size;
      let after = text(req.after_patient, 'after_patient', MAX_TOKEN);
      // An id, as the contract says; a full patient name is accepted too (ids never contain '/').
      if (after.includes('/')) after = parseChildOf(after, 'after_patient', 'patients', practice.id);
      return { patients: practice.consentedPatients(partner, after, limit).map((r) => patientRecordOut(practice, r)) };
    }),

    ReadConsent: unary((req, partner) => {
      const [practice, patientId] = practices.resolvePatient(req.name, 'name');
      if (!practice.isActivePatient(patientId)) throw notFound('name', 'no such patient');
      return { consent: consentOut(practice, patientId, practice.readConsent(patientId, partner)) };
    }),

    WriteConsent: unary((req, partner) => {
      const [practice, patientId] = practices.resolvePatient(req.name, 'name');
      if (!practice.isActivePatient(patientId)) throw notFound('name', 'no such patient');
      if (!CONSENT_STATES.includes(req.state)) throw invalid('state', 'must be OPEN, GRANTED or DENIED');
      let evidence = null;
      if (req.evidence != null) {
        if (!CONSENT_METHODS.includes(req.evidence.method)) throw invalid('evidence.method', 'is required');
        evidence = {
          decide_time: exactTimestamp(req.evidence.decide_time, 'evidence.decide_time'),
          method: req.evidence.method,
          text_version: text(req.evidence.text_version, 'evidence.text_version', MAX_TOKEN),
        };
      }
      if (!CONSENT_ACTORS.includes(req.set_by)) throw invalid('set_by', 'must be PARTNER or PRACTICE');
      const record = practice.writeConsent(patientId, partner, { state: req.state, evidence, setBy: req.set_by });
      return { consent: consentOut(practice, patientId, record) };
    }),

    /**
     * Every change of this practice's entries and configuration as it happens, and a heartbeat
     * after `heartbeatSeconds` without one. Response headers go out as soon as the subscription
     * stands, so a client that waited for them misses no change made after. A gateway that falls
     * more than WATCH_QUEUE_LIMIT changes behind gets one ConfigChange in place of the backlog: it
     * re-reads everything then, and this process never buffers without bound.
     */
    WatchDataChanges(call) {
      let practice;
      try {
        if (call.request === UNDECODABLE) throw invalid('request', 'is not a valid message for this method');
        partnerOf(call);
        practice = practices.resolve(call.request.parent, 'parent');
      } catch (error) {
        call.emit('error', toServiceError(error));
        return;
      }
      let timer;
      let open = true;
      let inFlight = 0; // written, not yet handed to the transport
      let overflowed = false; // changes were dropped: a ConfigChange is owed
      const send = (message) => {
        if (!open) return;
        if (inFlight >= WATCH_QUEUE_LIMIT) {
          overflowed = true;
          return;
        }
        inFlight += 1;
        call.write(message, () => {
          inFlight -= 1;
          if (overflowed && inFlight === 0) {
            overflowed = false;
            send({ config: {} });
          }
        });
        clearTimeout(timer);
        timer = setTimeout(() => send({ heartbeat: {} }), heartbeatSeconds * 1000);
      };
      const unsubscribe = practice.subscribe((change) => send(changeOut(practice, change)));
      const close = () => {
        if (!open) return;
        open = false;
        unsubscribe();
        clearTimeout(timer);
        streams.delete(call);
      };
      streams.set(call, close);
      call.on('cancelled', close);
      call.on('close', close);
      call.on('error', close);
      call.sendMetadata(new grpc.Metadata());
      timer = setTimeout(() => send({ heartbeat: {} }), heartbeatSeconds * 1000);
    },
  };

  const sandbox = {
    LoadScenario: unary((req) => {
      const practice = practices.resolve(req.name, 'name');
      requestIdIn(req.request_id, { required: false }); // a load is a replacement: a retry is harmless
      practice.load(tablesFromScenario(practice.id, req.scenario, 'scenario'));
      return {};
    }),
    ResetSandbox: unary((req) => {
      const practice = practices.resolve(req.name, 'name');
      requestIdIn(req.request_id, { required: false });
      practice.reset();
      return {};
    }),
  };

  /** End every open change stream (OK status), so a graceful shutdown does not wait on them. */
  const closeStreams = () => {
    for (const [call, close] of [...streams]) {
      close();
      call.end();
    }
  };

  return { data, sandbox, closeStreams };
}
