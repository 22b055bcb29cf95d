#!/usr/bin/env node
/**
 * A minimal remote PVS adapter: otv.v1.PracticeDataService and otv.v1.SandboxService over an
 * in-memory practice. See README.md for how to run it and how to map it onto a real PVS.
 */

import { configFromEnv, startServer } from './src/server.js';

let config;
try {
  config = configFromEnv();
} catch (error) {
  console.error(`configuration: ${error.message}`);
  process.exit(2);
}

let server;
try {
  server = await startServer(config);
} catch (error) {
  console.error(`cannot serve on ${config.listen}: ${error.message}`);
  process.exit(1);
}
// One line on stdout when ready: scripts and tests wait for it.
console.log(`listening on ${server.address}`);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    await server.stop();
    process.exit(0);
  });
}
