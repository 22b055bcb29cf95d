/**
 * Resource names: `practices/{practice}` and `practices/{practice}/{collection}/{id}`.
 *
 * The gateway sends names, a PVS keeps ids. Parsing is strict so that a malformed name is an
 * INVALID_ARGUMENT naming the request field, never a silent miss; the id rules are the Python SDK's
 * (src/otv_sdk/resources.py), so an id this adapter hands out is one the gateway accepts.
 */

import { invalid } from './errors.js';

/** Practice ids are chosen by operators: DNS-label style. */
export const PRACTICE_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Child ids come from the PVS: URL-unreserved characters, so they can sit inside a name. */
export const CHILD_ID = /^[A-Za-z0-9._~-]{1,128}$/;

/** Cap what an error echoes, so a huge input does not bloat the status. */
function shown(name) {
  return JSON.stringify(name.length <= 80 ? name : `${name.slice(0, 77)}...`);
}

export function practiceName(practiceId) {
  return `practices/${practiceId}`;
}

export function childName(practiceId, collection, id) {
  return `practices/${practiceId}/${collection}/${id}`;
}

/** A child name, or '' for an absent reference (the proto's way of saying "none"). */
export function optionalChildName(practiceId, collection, id) {
  return id ? childName(practiceId, collection, id) : '';
}

/**
 * Parse `practices/{practice}`.
 * @returns {string} the practice id
 */
export function parsePractice(name, field) {
  const parts = String(name).split('/');
  if (parts.length !== 2 || parts[0] !== 'practices') {
    throw invalid(field, `must look like 'practices/{practice}', got ${shown(String(name))}`);
  }
  if (!PRACTICE_ID.test(parts[1])) {
    throw invalid(field, "practice id must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'");
  }
  return parts[1];
}

/**
 * Parse `practices/{practice}/{collection}/{id}`.
 * @returns {{practiceId: string, id: string}}
 */
export function parseChild(name, field, collection) {
  const parts = String(name).split('/');
  if (parts.length !== 4 || parts[0] !== 'practices' || parts[2] !== collection) {
    throw invalid(field, `must look like 'practices/{practice}/${collection}/{id}', got ${shown(String(name))}`);
  }
  if (!PRACTICE_ID.test(parts[1])) throw invalid(field, 'practice id segment is malformed');
  if (!CHILD_ID.test(parts[3])) throw invalid(field, `${collection} id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -`);
  return { practiceId: parts[1], id: parts[3] };
}

/**
 * Parse a child name that must belong to the request's practice.
 * @returns {string} the child id
 */
export function parseChildOf(name, field, collection, practiceId) {
  const parsed = parseChild(name, field, collection);
  if (parsed.practiceId !== practiceId) {
    throw invalid(field, `belongs to another practice than the request's 'practices/${practiceId}'`);
  }
  return parsed.id;
}
