/**
 * Between proto messages and the plain values the practice store keeps.
 *
 * The store keeps what a PVS keeps: instants as whole UTC seconds, dates as 'YYYY-MM-DD', wall-clock
 * times as 'HH:MM', weekdays as ISO numbers. Every reader here validates and names the request field
 * it read, so bad input becomes INVALID_ARGUMENT and never an exception deeper down.
 */

import { invalid } from './errors.js';

// Calendar instants lie in [1900-01-01, 2200-01-01) UTC: the range the gateway accepts too
// (src/otv_sdk/limits.py), and narrow enough that no date or packing arithmetic can overflow.
export const EARLIEST_SECONDS = Date.UTC(1900, 0, 1) / 1000;
export const LATEST_SECONDS = Date.UTC(2200, 0, 1) / 1000;
// PackedIntervals carries uint32 seconds; a window of at most 100 years keeps every delta and
// duration below 2^32 however the entries lie in it. The gateway asks for months, never decades.
export const MAX_WINDOW_SECONDS = 100 * 365 * 86400;
const UINT32_MAX = 2 ** 32 - 1;

export const WEEKDAYS = [
  'WEEKDAY_UNSPECIFIED',
  'WEEKDAY_MONDAY',
  'WEEKDAY_TUESDAY',
  'WEEKDAY_WEDNESDAY',
  'WEEKDAY_THURSDAY',
  'WEEKDAY_FRIDAY',
  'WEEKDAY_SATURDAY',
  'WEEKDAY_SUNDAY',
];

// --- instants --------------------------------------------------------------------------------

/** A Timestamp checked for range and nanos; null if absent. */
function checkedTimestamp(ts, field) {
  if (ts == null) return null;
  const seconds = Number(ts.seconds);
  const nanos = Number(ts.nanos);
  if (!Number.isFinite(seconds) || seconds < EARLIEST_SECONDS || seconds > LATEST_SECONDS) {
    throw invalid(field, 'must lie between 1900-01-01 and 2200-01-01 (UTC)');
  }
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) throw invalid(field, 'nanos must be 0 to 999999999');
  return { seconds, nanos };
}

/** A required Timestamp exactly as sent ({seconds, nanos}): for evidence, which is read back as given. */
export function exactTimestamp(ts, field) {
  const checked = checkedTimestamp(ts, field);
  if (checked === null) throw invalid(field, 'is required');
  return checked;
}

export function timestampOut(seconds) {
  return { seconds, nanos: 0 };
}

/** The current time as a Timestamp (create and update times). */
export function nowTimestamp() {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

function compare(a, b) {
  return a.seconds - b.seconds || a.nanos - b.nanos;
}

/**
 * A request window: required, start < end, at most MAX_WINDOW_SECONDS long. Widened to whole
 * seconds (start rounded down, end up) so that it still covers every instant that was asked for.
 * @returns {{start: number, end: number}} UTC seconds, end exclusive
 */
export function windowIn(window, field = 'window') {
  if (window == null) throw invalid(field, 'is required');
  const start = exactTimestamp(window.start_time, `${field}.start_time`);
  const end = exactTimestamp(window.end_time, `${field}.end_time`);
  if (compare(end, start) <= 0) throw invalid(`${field}.end_time`, 'must be after start_time');
  const result = { start: start.seconds, end: end.seconds + (end.nanos > 0 ? 1 : 0) };
  if (result.end - result.start > MAX_WINDOW_SECONDS) throw invalid(`${field}.end_time`, 'window is longer than 100 years');
  return result;
}

/**
 * The time an entry or absence occupies, in whole seconds (sub-second parts are dropped, as the
 * reference PVS does): required, and at least one second long.
 */
export function intervalIn(interval, field) {
  if (interval == null) throw invalid(field, 'is required');
  const start = exactTimestamp(interval.start_time, `${field}.start_time`).seconds;
  const end = exactTimestamp(interval.end_time, `${field}.end_time`).seconds;
  if (end <= start) throw invalid(`${field}.end_time`, 'must be at least one second after start_time');
  return { start, end };
}

export function intervalOut({ start, end }) {
  return { start_time: timestampOut(start), end_time: timestampOut(end) };
}

// --- dates and wall-clock times --------------------------------------------------------------

function pad(value, width) {
  return String(value).padStart(width, '0');
}

function daysInMonth(year, month) {
  return new Date(Date.UTC(year, month, 0)).getUTCDate(); // day 0 of the next month
}

/** Year and month of a Date message, checked. */
export function yearMonthIn(msg, field) {
  if (!Number.isInteger(msg.year) || msg.year < 1 || msg.year > 9999) throw invalid(`${field}.year`, 'must be 1 to 9999');
  if (!Number.isInteger(msg.month) || msg.month < 1 || msg.month > 12) throw invalid(`${field}.month`, 'must be 1 to 12');
  return `${pad(msg.year, 4)}-${pad(msg.month, 2)}`;
}

/**
 * A required real calendar date: 2026-02-30 or month 13 is INVALID_ARGUMENT naming the part.
 * @returns {string} 'YYYY-MM-DD', which sorts and compares as dates do
 */
export function dateIn(msg, field) {
  if (msg == null) throw invalid(field, 'is required');
  const yearMonth = yearMonthIn(msg, field);
  const last = daysInMonth(msg.year, msg.month);
  if (!Number.isInteger(msg.day) || msg.day < 1 || msg.day > last) {
    throw invalid(`${field}.day`, `must be 1 to ${last} for ${yearMonth}`);
  }
  return `${yearMonth}-${pad(msg.day, 2)}`;
}

export function optionalDateIn(msg, field) {
  return msg == null ? null : dateIn(msg, field);
}

/** 'YYYY-MM-DD' -> Date message; null stays unset. */
export function dateOut(iso) {
  if (iso == null) return null;
  const [year, month, day] = iso.split('-').map(Number);
  return { year, month, day };
}

function timeOfDayIn(msg, field) {
  const hours = msg?.hours ?? 0;
  const minutes = msg?.minutes ?? 0;
  if (!Number.isInteger(hours) || hours < 0 || hours > 23) throw invalid(`${field}.hours`, 'must be 0 to 23');
  if (!Number.isInteger(minutes) || minutes < 0 || minutes > 59) throw invalid(`${field}.minutes`, 'must be 0 to 59');
  return `${pad(hours, 2)}:${pad(minutes, 2)}`;
}

function timeOfDayOut(text) {
  const [hours, minutes] = text.split(':').map(Number);
  return { hours, minutes };
}

/** A WeeklySpan as stored: {weekday: 1..7, start: 'HH:MM', end: 'HH:MM'} with start < end. */
export function weeklySpanIn(msg, field) {
  const weekday = WEEKDAYS.indexOf(msg.weekday);
  if (weekday < 1) throw invalid(`${field}.weekday`, 'is required');
  const start = timeOfDayIn(msg.start_time, `${field}.start_time`);
  const end = timeOfDayIn(msg.end_time, `${field}.end_time`);
  if (end <= start) throw invalid(`${field}.end_time`, 'must be after start_time');
  return { weekday, start, end };
}

export function weeklySpanOut(span) {
  return { weekday: WEEKDAYS[span.weekday], start_time: timeOfDayOut(span.start), end_time: timeOfDayOut(span.end) };
}

const formatters = new Map();

/**
 * Today's date where it is latest on Earth (UTC+14): a birth date after it is in the future for
 * every practice, whatever its time zone, as the gateway checks it too.
 */
export function latestToday() {
  return localDate(Math.floor(Date.now() / 1000), 'Etc/GMT-14'); // POSIX sign: GMT-14 is UTC+14
}

/** Whether the runtime knows this IANA time zone (Node ships full ICU). */
export function isTimeZone(name) {
  try {
    localDate(0, name);
    return true;
  } catch {
    return false;
  }
}

/**
 * The practice's local calendar date at a UTC instant: the one piece of time-zone arithmetic this
 * adapter needs, to pick the shifts and closed days of the days a window touches.
 * @returns {string} 'YYYY-MM-DD'
 */
export function localDate(seconds, timeZone) {
  let format = formatters.get(timeZone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    formatters.set(timeZone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(new Date(seconds * 1000)).map((p) => [p.type, p.value]));
  return `${pad(parts.year, 4)}-${parts.month}-${parts.day}`;
}

// --- packed intervals ------------------------------------------------------------------------

/**
 * The intervals of `items` that overlap [lo, hi), as they are (not cut to the window: an entry that
 * began before the window is reported with its real start), sorted by start, then end.
 */
export function overlapping(items, lo, hi) {
  return items
    .filter((x) => x.start < hi && x.end > lo)
    .map(({ start, end }) => ({ start, end }))
    .sort((a, b) => a.start - b.start || a.end - b.end);
}

/**
 * The origin to pack a window's intervals from: the window start, or the first interval's start if
 * that lies before it (an entry that began earlier), since packed deltas cannot be negative.
 */
export function packingOrigin(windowStart, intervals) {
  return intervals.length > 0 ? Math.min(windowStart, intervals[0].start) : windowStart;
}

/**
 * Encode sorted intervals as PackedIntervals (time.proto): interval i starts at origin plus the sum
 * of start_deltas[0..i] and lasts durations[i] seconds. Throws (a bug, not the caller's) if the
 * intervals are unsorted, start before the origin, are empty, or do not fit uint32.
 */
export function packIntervals(column, origin, intervals) {
  const startDeltas = [];
  const durations = [];
  let previous = origin;
  for (const { start, end } of intervals) {
    const delta = start - previous;
    const duration = end - start;
    if (delta < 0 || delta > UINT32_MAX || duration <= 0 || duration > UINT32_MAX) {
      throw new Error(`cannot pack [${start}, ${end}) after ${previous} from origin ${origin}`);
    }
    startDeltas.push(delta);
    durations.push(duration);
    previous = start;
  }
  return { column, origin: timestampOut(origin), start_deltas: startDeltas, durations };
}

/** The inverse of packIntervals, for tests and for anyone checking what was sent. */
export function unpackIntervals(packed) {
  let start = Number(packed.origin.seconds);
  return packed.start_deltas.map((delta, i) => {
    start += Number(delta);
    return { start, end: start + Number(packed.durations[i]) };
  });
}
