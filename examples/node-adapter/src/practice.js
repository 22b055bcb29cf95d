/**
 * One practice's data, in memory: the stand-in for a PVS's own database.
 *
 * Every method here is what a vendor replaces with queries into their tables (README.md maps them
 * one by one). It stores and returns data and implements no rule: no working time, no free time,
 * no slots, no patient matching, no name or phone normalisation. The gateway does all of that from
 * what these methods return. Ids in, plain records out; names and proto shapes are service.js's.
 *
 * Node runs each call's handler to completion before the next, so every method is atomic without
 * locks; a PVS on a database gets the same from one transaction per method.
 */

import { randomBytes } from 'node:crypto';

import { localDate, nowTimestamp, overlapping } from './convert.js';
import { emptyTables } from './scenario.js';

/**
 * @typedef {{start: number, end: number}} Interval UTC seconds, end exclusive
 * @typedef {{type: 'entries', columnId: string, added: Interval[], removed: Interval[]} | {type: 'config'}} Change
 */

export class Practice {
  /**
   * @param {string} id the practice id in resource names
   * @param {{displayName: string, timeZone: string}} empty what the practice is before any scenario
   */
  constructor(id, empty) {
    this.id = id;
    this.empty = empty;
    this.tables = emptyTables(empty.displayName, empty.timeZone);
    /** @type {Set<(change: Change) => void>} */
    this.listeners = new Set();
  }

  // --- changes -------------------------------------------------------------------------------

  /** Call `listener` with every change from now on; returns the function that stops it. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** @param {Change} change */
  publish(change) {
    for (const listener of this.listeners) listener(change);
  }

  // --- sandbox -------------------------------------------------------------------------------

  /** Replace everything with tables built (and checked) from a scenario. */
  load(tables) {
    this.tables = tables;
    this.publish({ type: 'config' }); // everything may have changed: the gateway re-reads
  }

  /** Remove everything: scenario data and whatever was written since. */
  reset() {
    this.load(emptyTables(this.empty.displayName, this.empty.timeZone));
  }

  // --- calendar ------------------------------------------------------------------------------

  hasColumn(columnId) {
    return this.tables.columns.some((c) => c.id === columnId);
  }

  hasAppointmentType(typeId) {
    return this.tables.appointmentTypes.some((t) => t.id === typeId);
  }

  hasPatient(patientId) {
    return this.tables.patients.has(patientId);
  }

  /** Every column id, in the configuration's order: what "no columns" in a request means. */
  columnIds() {
    return this.tables.columns.map((c) => c.id);
  }

  /**
   * Shifts and closed days on the practice's local days that [window.start, window.end) touches.
   * Only the day boundaries need the time zone; which hours those rules make is the gateway's.
   */
  workingTimeRules(window) {
    const { shifts, closedDays, timeZone } = this.tables;
    const first = localDate(window.start, timeZone);
    const last = localDate(window.end - 1, timeZone); // the end is exclusive
    return {
      shifts: shifts.filter((s) => s.validFrom <= last && s.validUntil >= first),
      closedDays: closedDays.filter((d) => d.day >= first && d.day <= last),
    };
  }

  /** Absences overlapping the window, unclipped, per column in the order given, by start. */
  absences(window, columnIds) {
    return columnIds.flatMap((columnId) =>
      this.tables.absences
        .filter((a) => a.columnId === columnId && a.start < window.end && a.end > window.start)
        .sort((a, b) => a.start - b.start || a.end - b.end),
    );
  }

  /**
   * Calendar entries (appointments, reservations, online bookings) overlapping the window, as
   * stored (not cut to the window), per column in the order given; only columns that have some.
   * @returns {{columnId: string, intervals: Interval[]}[]}
   */
  entries(window, columnIds) {
    const byColumn = new Map(columnIds.map((id) => [id, []]));
    for (const entry of this.tables.entries.values()) byColumn.get(entry.columnId)?.push(entry);
    return columnIds
      .map((columnId) => ({ columnId, intervals: overlapping(byColumn.get(columnId), window.start, window.end) }))
      .filter((column) => column.intervals.length > 0);
  }

  /**
   * Write an online booking. A reference already written returns that entry and writes nothing.
   * `extra` models the Zusatztermin as a PVS records it: the booking lies on top of another entry
   * of its column. Nothing else about free time is decided here.
   * @returns {{entryId: string, extra: boolean}}
   */
  writeEntry({ reference, columnId, appointmentTypeId, start, end, patientId, partner, category }) {
    const { entries, entryByReference } = this.tables;
    const existing = entries.get(entryByReference.get(reference));
    if (existing !== undefined) return { entryId: existing.id, extra: existing.extra };
    let extra = false;
    for (const other of entries.values()) {
      if (other.columnId === columnId && other.start < end && other.end > start) {
        extra = true;
        break;
      }
    }
    let id;
    do id = `e-${randomBytes(8).toString('hex')}`;
    while (entries.has(id));
    entries.set(id, {
      id,
      columnId,
      start,
      end,
      kind: 'appointment',
      appointmentTypeId,
      patientId,
      reference,
      partner,
      category,
      extra,
    });
    entryByReference.set(reference, id);
    this.publish({ type: 'entries', columnId, added: [{ start, end }], removed: [] });
    return { entryId: id, extra };
  }

  /**
   * Remove an entry and return it as it was stored (the gateway and the certification read back
   * what was written from it); null if there is none with that id (already deleted, or never written).
   * @returns {{id: string, columnId: string, start: number, end: number, appointmentTypeId: string | null,
   *   patientId: string | null, reference: string | null, partner: string | null, category: string | null,
   *   extra: boolean, kind: string} | null}
   */
  deleteEntry(entryId) {
    const { entries, entryByReference } = this.tables;
    const entry = entries.get(entryId);
    if (entry === undefined) return null;
    entries.delete(entryId);
    if (entry.reference !== null) entryByReference.delete(entry.reference);
    this.publish({ type: 'entries', columnId: entry.columnId, added: [], removed: [{ start: entry.start, end: entry.end }] });
    return { ...entry };
  }

  // --- patients ------------------------------------------------------------------------------

  /** The partner's consent record for a patient, or null if none was ever recorded. */
  consentRecord(patientId, partner) {
    return this.tables.consents.get(patientId)?.get(partner) ?? null;
  }

  /** A patient as the gateway's matching reads it, with the calling partner's consent state. */
  patientRecord(patient, partner) {
    return { ...patient, consent: this.consentRecord(patient.id, partner)?.state ?? 'CONSENT_STATE_OPEN' };
  }

  /** Every patient, active or not, whose full birth date is `date` ('YYYY-MM-DD'), by id. */
  patientsBornOn(date, partner) {
    return [...this.tables.patients.values()]
      .filter((p) => p.birthDate === date)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((p) => this.patientRecord(p, partner));
  }

  /** Create a patient for `partner`; the same requestId again returns that patient, creating nothing. */
  createPatient(requestId, { givenName, familyName, birthDate, contacts, note }, partner) {
    const { patients, patientByRequest } = this.tables;
    const seen = patients.get(patientByRequest.get(requestId));
    if (seen !== undefined) return this.patientRecord(seen, partner);
    let id;
    do id = `n-${randomBytes(6).toString('hex')}`;
    while (patients.has(id));
    const patient = {
      id,
      givenName,
      familyName,
      birthDate,
      contacts,
      active: true,
      note,
      createdOnlineBy: partner,
      createTime: nowTimestamp(),
    };
    patients.set(id, patient);
    patientByRequest.set(requestId, id);
    return this.patientRecord(patient, partner);
  }

  /** Append one line to the note; a requestId already applied appends nothing. */
  appendNote(patientId, requestId, line) {
    const { patients, noteRequests } = this.tables;
    if (noteRequests.has(requestId)) return;
    const patient = patients.get(patientId);
    patient.note = patient.note ? `${patient.note}\n${line}` : line;
    noteRequests.add(requestId);
  }

  /** Active patients whose consent for `partner` is granted, ids after `after`, by id, at most `limit`. */
  consentedPatients(partner, after, limit) {
    return [...this.tables.patients.values()]
      .filter((p) => p.active && p.id > after && this.consentRecord(p.id, partner)?.state === 'CONSENT_STATE_GRANTED')
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, limit)
      .map((p) => this.patientRecord(p, partner));
  }

  /** Whether consent may be read or written for this patient: it exists and is active. */
  isActivePatient(patientId) {
    return this.tables.patients.get(patientId)?.active === true;
  }

  /** The partner's consent: OPEN without evidence, actor or time if nothing was recorded. */
  readConsent(patientId, partner) {
    return this.consentRecord(patientId, partner) ?? { state: 'CONSENT_STATE_OPEN', evidence: null, setBy: null, updateTime: null };
  }

  /** Store a decision for the partner exactly as given (who may record what is the gateway's rule). */
  writeConsent(patientId, partner, { state, evidence, setBy }) {
    const { consents } = this.tables;
    if (!consents.has(patientId)) consents.set(patientId, new Map());
    const record = { state, evidence, setBy, updateTime: nowTimestamp() };
    consents.get(patientId).set(partner, record);
    return record;
  }
}
