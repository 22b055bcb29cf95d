#!/usr/bin/env node
/**
 * A booking partner in Node.js that authenticates with otv-session-v1, written from
 * docs/security.md alone ("Signed calls", "Sessions", "For other languages").
 *
 *   node session-client.js KEY_FILE TARGET [PRACTICE]
 *
 * KEY_FILE is the JSON key file `otv keys generate` writes (partner, key_id, private_key, audience),
 * TARGET the gateway's host:port (plaintext), PRACTICE the practice id (default "demo").
 *
 * It opens a session (OpenSession signed with otv-ed25519-v1, with `x-otv-session`), derives the
 * session key (X25519 + HKDF-SHA256), calls GetPractice and ListCalendars with otv-session-v1,
 * then sends the GetPractice call again with exactly the same bytes and metadata (a replay), which
 * the gateway must refuse with UNAUTHENTICATED, then one more fresh call, which must pass, and a
 * call naming a session the gateway never opened (UNAUTHENTICATED, ErrorInfo SESSION_UNKNOWN).
 * It prints one JSON line summarising what it saw and exits 0 only when everything went as the
 * document says (1 otherwise, 2 on a usage error).
 *
 * Dependencies: Node's built-in crypto, and @grpc/grpc-js + @grpc/proto-loader resolved from
 * ../node-adapter/node_modules (install them with `npm ci --prefix examples/node-adapter`).
 */

import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(HERE, '..', 'node-adapter', 'package.json'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

export const PROTO_DIR = resolve(HERE, '..', '..', 'proto');
export const ED25519_SCHEME = 'otv-ed25519-v1';
export const SESSION_SCHEME = 'otv-session-v1';
const CALL_TIMEOUT_MS = 10_000;

// --- encodings ------------------------------------------------------------------------------------

/** base64url without padding (RFC 4648 section 5). */
export function b64url(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

/** Decodes base64url without padding, strictly: the value must re-encode to itself. */
export function unb64url(text) {
  const bytes = Buffer.from(text, 'base64url');
  if (b64url(bytes) !== text) throw new Error(`not base64url without padding: ${JSON.stringify(text)}`);
  return bytes;
}

/** The content hash: SHA-256 of the exact bytes sent, lower-case hex. */
export function contentHash(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

function nowSeconds() {
  return String(Math.floor(Date.now() / 1000));
}

// --- keys -----------------------------------------------------------------------------------------

/** The DER prefix of a PKCS#8 Ed25519 private key, followed by the 32-byte seed (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** The DER prefix of a PKCS#8 X25519 private key, followed by the 32-byte scalar (RFC 8410). */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** An Ed25519 private KeyObject from its 32-byte seed. */
export function ed25519PrivateKey(seed) {
  if (seed.length !== 32) throw new Error(`an Ed25519 seed is 32 bytes, not ${seed.length}`);
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** An X25519 private KeyObject from its 32 raw bytes (for fixed test vectors). */
export function x25519PrivateKey(raw) {
  if (raw.length !== 32) throw new Error(`an X25519 private key is 32 bytes, not ${raw.length}`);
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

/** The raw 32 bytes of an Ed25519 or X25519 public key (a JWK's x is base64url without padding). */
export function rawPublicKey(key) {
  const publicKey = key.type === 'public' ? key : crypto.createPublicKey(key);
  return unb64url(publicKey.export({ format: 'jwk' }).x);
}

/** An X25519 public KeyObject from its raw 32 bytes. */
export function x25519PublicKey(raw) {
  if (raw.length !== 32) throw new Error(`an X25519 public key is 32 bytes, not ${raw.length}`);
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64url(raw) }, format: 'jwk' });
}

/** Reads the four documented fields of a key file; other fields are ignored. */
export function readKeyFile(path) {
  const file = JSON.parse(readFileSync(path, 'utf8'));
  for (const field of ['partner', 'key_id', 'private_key', 'audience']) {
    if (typeof file[field] !== 'string' || file[field] === '') throw new Error(`the key file has no ${field}`);
  }
  const seed = unb64url(file.private_key);
  return { partner: file.partner, keyId: file.key_id, audience: file.audience, privateKey: ed25519PrivateKey(seed) };
}

// --- otv-ed25519-v1 -------------------------------------------------------------------------------

/** The six headers of otv-ed25519-v1 for one call of `method` whose request bytes are `body`. */
export function ed25519Headers(key, method, body, { timestamp = nowSeconds(), nonce = b64url(crypto.randomBytes(16)) } = {}) {
  const digest = contentHash(body);
  const canonical = [ED25519_SCHEME, key.keyId, key.audience, method, timestamp, nonce, digest].join('\n');
  const signature = crypto.sign(null, Buffer.from(canonical, 'utf8'), key.privateKey);
  return {
    'x-otv-scheme': ED25519_SCHEME,
    'x-otv-key-id': key.keyId,
    'x-otv-timestamp': timestamp,
    'x-otv-nonce': nonce,
    'x-otv-content-sha256': digest,
    'x-otv-signature': b64url(signature),
  };
}

// --- otv-session-v1 -------------------------------------------------------------------------------

/**
 * The session key: HKDF-SHA256 over the X25519 shared secret, salt the session id's UTF-8 bytes,
 * info the five documented lines.
 */
export function deriveSessionKey({ clientPrivateKey, clientPublicKey, serverPublicKey, sessionId, keyId, audience }) {
  const ikm = crypto.diffieHellman({ privateKey: clientPrivateKey, publicKey: x25519PublicKey(serverPublicKey) });
  const info = [SESSION_SCHEME, keyId, audience, b64url(clientPublicKey), b64url(serverPublicKey)].join('\n');
  const key = crypto.hkdfSync('sha256', ikm, Buffer.from(sessionId, 'utf8'), Buffer.from(info, 'utf8'), 32);
  return Buffer.from(key);
}

/** The canonical string of one otv-session-v1 call. */
export function sessionCanonicalString({ sessionId, audience, method, timestamp, sequence, digest }) {
  return [SESSION_SCHEME, sessionId, audience, method, String(timestamp), String(sequence), digest].join('\n');
}

/** HMAC-SHA256(session key, canonical string), base64url without padding. */
export function sessionMac(sessionKey, canonical) {
  return b64url(crypto.createHmac('sha256', sessionKey).update(Buffer.from(canonical, 'utf8')).digest());
}

// --- gRPC -----------------------------------------------------------------------------------------

/** The method definitions (path, requestSerialize, responseDeserialize) of the two services used. */
export function loadMethods(protoDir = PROTO_DIR) {
  const definition = protoLoader.loadSync(['otv/v1/session_service.proto', 'otv/v1/reader_service.proto'], {
    includeDirs: [protoDir],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return {
    OpenSession: definition['otv.v1.SessionService'].OpenSession,
    GetPractice: definition['otv.v1.ReaderService'].GetPractice,
    ListCalendars: definition['otv.v1.ReaderService'].ListCalendars,
  };
}

const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

/** The result of one unary call: {status, response} or {status, message, reason}. */
function unary(client, definition, bytes, headers) {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  return new Promise((resolveCall) => {
    client.makeUnaryRequest(
      definition.path,
      (b) => b, // the bytes already hashed, sent as they are
      definition.responseDeserialize,
      bytes,
      metadata,
      { deadline: Date.now() + CALL_TIMEOUT_MS },
      (error, response) => {
        if (error == null) {
          resolveCall({ status: 'OK', response });
          return;
        }
        resolveCall({ status: STATUS_NAMES[error.code] ?? String(error.code), message: error.details, reason: errorReason(error) });
      },
    );
  });
}

/** The google.rpc.ErrorInfo of a failed call as "domain/reason", if its status details carry one. */
export function errorReason(error) {
  const details = error.metadata?.get('grpc-status-details-bin')?.[0];
  if (details == null) return null;
  // Minimal protobuf reading of google.rpc.Status{details (3): [Any{type_url (1), value (2)}]}
  // and ErrorInfo{reason (1), domain (2)}.
  for (const any of fields(details).filter(([n]) => n === 3)) {
    const parts = fields(any[1]);
    const typeUrl = parts.find(([n]) => n === 1)?.[1]?.toString('utf8') ?? '';
    const value = parts.find(([n]) => n === 2)?.[1];
    if (typeUrl.endsWith('/google.rpc.ErrorInfo') && value != null) {
      const info = fields(value);
      const text = (number) => info.find(([n]) => n === number)?.[1]?.toString('utf8') ?? '';
      return `${text(2)}/${text(1)}`;
    }
  }
  return null;
}

/** The length-delimited fields of a protobuf message as [number, bytes]; varints are skipped. */
function fields(buffer) {
  const out = [];
  let at = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = buffer[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (at < buffer.length) {
    const tag = varint();
    const wire = tag % 8;
    if (wire === 0) varint();
    else if (wire === 2) {
      const length = varint();
      out.push([Math.floor(tag / 8), buffer.subarray(at, at + length)]);
      at += length;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else break;
  }
  return out;
}

/** A partner's session on one gateway: open() once, then call() as often as needed. */
export class Session {
  constructor(client, methods, key) {
    this.client = client;
    this.methods = methods;
    this.key = key;
    this.sequence = 0;
  }

  async open() {
    this.sessionId = b64url(crypto.randomBytes(16));
    const { privateKey, publicKey } = crypto.generateKeyPairSync('x25519');
    const clientPublicKey = rawPublicKey(publicKey);
    const definition = this.methods.OpenSession;
    const bytes = definition.requestSerialize({ session_id: this.sessionId, client_public_key: clientPublicKey });
    const headers = { ...ed25519Headers(this.key, definition.path, bytes), 'x-otv-session': this.sessionId };
    const result = await unary(this.client, definition, bytes, headers);
    if (result.status !== 'OK') return result;
    const answer = result.response;
    const serverPublicKey = Buffer.from(answer.server_public_key);
    this.sessionKey = deriveSessionKey({
      clientPrivateKey: privateKey,
      clientPublicKey,
      serverPublicKey,
      sessionId: this.sessionId,
      keyId: this.key.keyId,
      audience: this.key.audience,
    });
    return {
      status: 'OK',
      session_id_echoed: answer.session_id === this.sessionId,
      server_public_key_bytes: serverPublicKey.length,
      expire_in_seconds: answer.expire_time == null ? null : Number(answer.expire_time.seconds) - Number(nowSeconds()),
      replay_window: Number(answer.replay_window),
    };
  }

  /** The six otv-session-v1 headers of the next call of `method` with request bytes `bytes`. */
  headers(method, bytes) {
    this.sequence += 1;
    const timestamp = nowSeconds();
    const digest = contentHash(bytes);
    const canonical = sessionCanonicalString({
      sessionId: this.sessionId,
      audience: this.key.audience,
      method,
      timestamp,
      sequence: this.sequence,
      digest,
    });
    return {
      'x-otv-scheme': SESSION_SCHEME,
      'x-otv-session': this.sessionId,
      'x-otv-sequence': String(this.sequence),
      'x-otv-timestamp': timestamp,
      'x-otv-content-sha256': digest,
      'x-otv-mac': sessionMac(this.sessionKey, canonical),
    };
  }

  /** One call; returns the result and what was sent, so it can be sent again unchanged. */
  async call(name, request) {
    const definition = this.methods[name];
    const bytes = definition.requestSerialize(request);
    const headers = this.headers(definition.path, bytes);
    const result = await unary(this.client, definition, bytes, headers);
    return { result, sent: { definition, bytes, headers } };
  }

  /** Sends a call again with exactly the same bytes and metadata. */
  async resend(sent) {
    return unary(this.client, sent.definition, sent.bytes, sent.headers);
  }
}

// --- the run --------------------------------------------------------------------------------------

function counts(calendars) {
  return Object.fromEntries(
    ['columns', 'practitioners', 'rooms', 'appointment_types', 'appointment_type_groups', 'booking_areas'].map((f) => [
      f,
      (calendars[f] ?? []).length,
    ]),
  );
}

/** Runs the scenario, recording what it saw in `summary` and what went wrong in `failures`. */
export async function run(summary, failures, keyFile, target, practice = 'demo') {
  const key = readKeyFile(keyFile);
  const methods = loadMethods();
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  const name = `practices/${practice}`;
  Object.assign(summary, { partner: key.partner, key_id: key.keyId, audience: key.audience, target });
  try {
    const session = new Session(client, methods, key);
    const opened = await session.open();
    summary.open_session = opened;
    if (opened.status !== 'OK') {
      failures.push(`OpenSession answered ${opened.status}`);
      return;
    }
    if (!opened.session_id_echoed) failures.push('OpenSession did not echo the session id');
    if (opened.server_public_key_bytes !== 32) failures.push('the server public key is not 32 bytes');
    if (opened.replay_window !== 4096) failures.push(`replay_window is ${opened.replay_window}, not 4096`);
    if (!(opened.expire_in_seconds > 540 && opened.expire_in_seconds <= 601)) {
      failures.push(`the session expires in ${opened.expire_in_seconds} s, not about 10 minutes`);
    }

    const practiceCall = await session.call('GetPractice', { name });
    summary.get_practice = { status: practiceCall.result.status, sequence: 1 };
    if (practiceCall.result.status === 'OK') {
      const found = practiceCall.result.response.practice ?? {};
      Object.assign(summary.get_practice, { name: found.name, time_zone: found.time_zone });
      if (found.name !== name) failures.push(`GetPractice answered ${found.name}, not ${name}`);
    } else {
      summary.get_practice.message = practiceCall.result.message;
      failures.push(`GetPractice answered ${practiceCall.result.status}`);
    }

    const calendarCall = await session.call('ListCalendars', { parent: name });
    summary.list_calendars = { status: calendarCall.result.status, sequence: 2 };
    if (calendarCall.result.status === 'OK') {
      Object.assign(summary.list_calendars, counts(calendarCall.result.response));
      summary.list_calendars.column_names = calendarCall.result.response.columns.map((c) => c.name);
    } else {
      summary.list_calendars.message = calendarCall.result.message;
      failures.push(`ListCalendars answered ${calendarCall.result.status}`);
    }

    const replay = await session.resend(practiceCall.sent);
    summary.replay = { status: replay.status, sequence: 1, message: replay.message ?? null, reason: replay.reason ?? null };
    if (replay.status !== 'UNAUTHENTICATED') failures.push(`the replayed call answered ${replay.status}, not UNAUTHENTICATED`);
    if (replay.reason === 'otv.dev/SESSION_UNKNOWN') failures.push('the replay was refused as SESSION_UNKNOWN, not as a replay');

    const after = await session.call('GetPractice', { name });
    summary.after_replay = { status: after.result.status, sequence: 3 };
    if (after.result.status !== 'OK') failures.push(`the call after the replay answered ${after.result.status}`);

    // A session id this gateway never opened: UNAUTHENTICATED with ErrorInfo otv.dev/SESSION_UNKNOWN,
    // the signal to open a new session and send the call again.
    const stranger = new Session(client, methods, key);
    stranger.sessionId = b64url(crypto.randomBytes(16));
    stranger.sessionKey = crypto.randomBytes(32);
    const unknown = (await stranger.call('GetPractice', { name })).result;
    summary.unknown_session = { status: unknown.status, reason: unknown.reason ?? null };
    if (unknown.status !== 'UNAUTHENTICATED' || unknown.reason !== 'otv.dev/SESSION_UNKNOWN') {
      failures.push(`a call of an unknown session answered ${unknown.status} ${unknown.reason}, not SESSION_UNKNOWN`);
    }
  } finally {
    client.close();
  }
}

async function main(argv) {
  if (argv.length < 2 || argv.length > 3) {
    process.stderr.write('usage: node session-client.js KEY_FILE TARGET [PRACTICE]\n');
    return 2;
  }
  const summary = {};
  const failures = [];
  try {
    await run(summary, failures, ...argv);
  } catch (error) {
    failures.push(`${error.name}: ${error.message}`);
  }
  process.stdout.write(`${JSON.stringify({ ...summary, ok: failures.length === 0, failures })}\n`);
  return failures.length === 0 ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await main(process.argv.slice(2));
}
