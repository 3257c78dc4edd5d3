// Fails the install loudly when a native addon did not build.
// ssh2 falls back silently to pure-JS crypto (about 4x slower) when its binding is missing;
// better-sqlite3, sd-notify and libpq have no fallback at all. An install that "succeeds" without
// them would only fail later, in production, so we refuse it here.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const problems = [];

function check(name, fn) {
  try {
    fn();
  } catch (err) {
    problems.push(`${name}: ${err?.message ? err.message : err}`);
  }
}

check('ssh2 native binding (sshcrypto.node)', () => {
  const path = require.resolve('ssh2/lib/protocol/crypto/build/Release/sshcrypto.node');
  if (!existsSync(path)) throw new Error(`missing ${path}`);
  require(path);
});
check('better-sqlite3', () => {
  const Database = require('better-sqlite3');
  new Database(':memory:').prepare('select 1').get();
});
check('sd-notify', () => {
  const sd = require('sd-notify');
  if (typeof sd.ready !== 'function') throw new Error('sd-notify loaded without its binding');
});

check("libpq (the CA's PostgreSQL store)", () => {
  const PQ = require('libpq');
  if (typeof new PQ().connectSync !== 'function') throw new Error('libpq loaded without its binding');
});

if (problems.length > 0) {
  console.error('\nNative addons are missing; the suite will not run correctly:');
  for (const p of problems) console.error(`  - ${p}`);
  console.error(
    '\nInstall the build prerequisites (Debian: apt-get install build-essential python3 libsystemd-dev libpq-dev)',
  );
  console.error('and point node-gyp at local headers (npm config set nodedir /usr), then run npm ci again.\n');
  process.exit(1);
}
console.log('native addons: ssh2 sshcrypto.node, better-sqlite3, sd-notify, libpq: ok');
