/**
 * Load the contract's .proto files and serve both services on one gRPC server.
 */

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { PRACTICE_ID } from './names.js';
import { Practice } from './practice.js';
import { UNDECODABLE, createHandlers } from './service.js';

const here = dirname(fileURLToPath(import.meta.url));
/** examples/node-adapter */
export const PACKAGE_DIR = resolve(here, '..');
/** The repository's proto/ directory, which this example is shipped next to. */
export const DEFAULT_PROTO_DIR = resolve(PACKAGE_DIR, '..', '..', 'proto');

export const DEFAULT_TIME_ZONE = 'Europe/Berlin';

/**
 * The configuration from the environment:
 * OTV_LISTEN (host:port, default 127.0.0.1:50061), OTV_PRACTICES (comma-separated ids, default
 * "demo"), OTV_PROTO_DIR (default the repository's proto/), OTV_HEARTBEAT_SECONDS (default 15),
 * and for TLS OTV_TLS_CERT + OTV_TLS_KEY (PEM files), with OTV_TLS_CLIENT_CA for mutual TLS.
 */
export function configFromEnv(env = process.env) {
  const practices = (env.OTV_PRACTICES ?? 'demo')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
  if (practices.length === 0) throw new Error('OTV_PRACTICES names no practice');
  for (const id of practices) {
    if (!PRACTICE_ID.test(id)) throw new Error(`OTV_PRACTICES: ${JSON.stringify(id)} is no practice id (a-z, 0-9, '-')`);
  }
  const heartbeatSeconds = Number(env.OTV_HEARTBEAT_SECONDS ?? 15);
  if (!(heartbeatSeconds > 0)) throw new Error('OTV_HEARTBEAT_SECONDS must be a positive number');
  const tls = { cert: env.OTV_TLS_CERT || '', key: env.OTV_TLS_KEY || '', clientCa: env.OTV_TLS_CLIENT_CA || '' };
  if (Boolean(tls.cert) !== Boolean(tls.key)) throw new Error('OTV_TLS_CERT and OTV_TLS_KEY go together');
  if (tls.clientCa && !tls.cert) throw new Error('OTV_TLS_CLIENT_CA needs OTV_TLS_CERT and OTV_TLS_KEY');
  const listen = env.OTV_LISTEN || '127.0.0.1:50061';
  if (!/^.+:\d+$/.test(listen)) throw new Error(`OTV_LISTEN: ${JSON.stringify(listen)} is not host:port`);
  return {
    listen,
    practices,
    protoDir: resolve(env.OTV_PROTO_DIR || DEFAULT_PROTO_DIR),
    heartbeatSeconds,
    tls: tls.cert ? tls : null,
  };
}

/**
 * Plaintext for a local trial; TLS with a certificate; mutual TLS when a client CA is given, which
 * is what production wants: only the gateway, holding a certificate from that CA, may then claim
 * to call for a partner in `otv-partner-id`.
 */
function credentials(tls) {
  if (tls == null) return grpc.ServerCredentials.createInsecure();
  const pair = { cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) };
  const clientCa = tls.clientCa ? readFileSync(tls.clientCa) : null;
  return grpc.ServerCredentials.createSsl(clientCa, [pair], clientCa !== null);
}

/** The two services' definitions, read from the .proto files of the contract. */
export function loadServices(protoDir) {
  const definition = protoLoader.loadSync(['otv/v1/practice_data_service.proto', 'otv/v1/sandbox_service.proto'], {
    includeDirs: [protoDir],
    keepCase: true, // field names as in the .proto files: start_time, entry_id
    longs: Number, // Timestamp seconds; every instant the contract allows fits a double exactly
    enums: String, // 'CONSENT_STATE_GRANTED' rather than 2; unknown numbers stay numbers
    defaults: true, // absent scalars read as '', 0, false; absent messages as null
    oneofs: true,
  });
  const services = grpc.loadPackageDefinition(definition).otv.v1;
  return { data: services.PracticeDataService.service, sandbox: services.SandboxService.service };
}

/**
 * The same service definition, except that bytes which are no message of the method's type reach
 * the handler as UNDECODABLE: grpc-js would answer INTERNAL for them, though the fault is the caller's.
 */
function tolerant(service) {
  return Object.fromEntries(
    Object.entries(service).map(([method, spec]) => [
      method,
      {
        ...spec,
        requestDeserialize(bytes) {
          try {
            return spec.requestDeserialize(bytes);
          } catch {
            return UNDECODABLE;
          }
        },
      },
    ]),
  );
}

/**
 * Start serving. Resolves once bound, with the address actually bound (port 0 picks a free one)
 * and a `stop()` that ends open change streams and shuts down gracefully.
 */
export async function startServer(config) {
  const { version } = JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8'));
  const services = loadServices(config.protoDir);
  const practices = new Map(
    config.practices.map((id) => [id, new Practice(id, { displayName: `Beispielpraxis ${id}`, timeZone: DEFAULT_TIME_ZONE })]),
  );
  const handlers = createHandlers(practices, { version, heartbeatSeconds: config.heartbeatSeconds });
  const server = new grpc.Server();
  server.addService(tolerant(services.data), handlers.data);
  server.addService(tolerant(services.sandbox), handlers.sandbox);
  const port = await new Promise((done, fail) =>
    server.bindAsync(config.listen, credentials(config.tls), (error, bound) => (error ? fail(error) : done(bound))),
  );
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  return {
    address: `${host}:${port}`,
    port,
    practices,
    /** End the change streams, let running calls finish (at most `graceMs`), then close. */
    stop(graceMs = 5000) {
      handlers.closeStreams();
      return new Promise((done) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          done();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          done();
        });
      });
    },
  };
}
