/**
 * Errors as gRPC statuses, with the rich error model the gateway reads.
 *
 * The gateway passes a PVS's own answers about a request (INVALID_ARGUMENT, NOT_FOUND, ...) through
 * to partners unchanged, and it reads *which field* was wrong from a `google.rpc.BadRequest` in the
 * `grpc-status-details-bin` trailer. So every error thrown here names its field twice: in the message
 * ("window.end_time: must be after start_time") for people, and as a field violation for programs.
 *
 * The two google.rpc messages are encoded by hand (a few lines of protobuf wire format) so that this
 * example needs no further dependency and no copy of googleapis' .proto files.
 */

import grpc from '@grpc/grpc-js';

const { status, Metadata } = grpc;

/** An error whose status the caller should see. Messages must never contain personal data. */
export class RpcError extends Error {
  /**
   * @param {number} code a `grpc.status` code
   * @param {string} message shown to the caller as the status details
   * @param {{field: string, description: string}[]} [violations] the request fields that were wrong
   */
  constructor(code, message, violations = []) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.violations = violations;
  }
}

/** One field is malformed: INVALID_ARGUMENT naming it, the way the Python SDK words it. */
export function invalid(field, description) {
  return new RpcError(status.INVALID_ARGUMENT, `${field}: ${description}`, [{ field, description }]);
}

/** The field is well-formed but names something this practice does not have. */
export function notFound(field, description) {
  return new RpcError(status.NOT_FOUND, `${field}: ${description}`, [{ field, description }]);
}

export function unauthenticated(message) {
  return new RpcError(status.UNAUTHENTICATED, message);
}

export function unimplemented(message) {
  return new RpcError(status.UNIMPLEMENTED, message);
}

// --- protobuf wire format, just enough for google.rpc.Status and google.rpc.BadRequest -----------

function varint(value) {
  const bytes = [];
  let v = value >>> 0; // codes are small non-negative int32s
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** A length-delimited field (wire type 2): strings, bytes and embedded messages. */
function lengthDelimited(fieldNumber, payload) {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([varint((fieldNumber << 3) | 2), varint(body.length), body]);
}

/**
 * Serialise google.rpc.Status {code, message, details: [Any(BadRequest)]}.
 * Exported for the unit tests.
 */
export function encodeStatusDetails(code, message, violations) {
  const parts = [varint((1 << 3) | 0), varint(code), lengthDelimited(2, message)];
  if (violations.length > 0) {
    const badRequest = Buffer.concat(
      violations.map((v) =>
        lengthDelimited(1, Buffer.concat([lengthDelimited(1, v.field), lengthDelimited(2, v.description)])),
      ),
    );
    const any = Buffer.concat([
      lengthDelimited(1, 'type.googleapis.com/google.rpc.BadRequest'),
      lengthDelimited(2, badRequest),
    ]);
    parts.push(lengthDelimited(3, any));
  }
  return Buffer.concat(parts);
}

/**
 * What grpc-js sends for a thrown error: an RpcError as its status with the rich details; anything
 * else is a bug in this adapter, reported as INTERNAL without internals (and logged here).
 * @returns {{code: number, details: string, metadata: grpc.Metadata}}
 */
export function toServiceError(error) {
  if (!(error instanceof RpcError)) {
    console.error('internal error:', error);
    return { code: status.INTERNAL, details: 'internal error in the PVS adapter', metadata: new Metadata() };
  }
  const metadata = new Metadata();
  // grpc-status-details-bin must repeat the status's code and message exactly: clients check that.
  metadata.set('grpc-status-details-bin', encodeStatusDetails(error.code, error.message, error.violations));
  return { code: error.code, details: error.message, metadata };
}
