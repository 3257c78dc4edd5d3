/**
 * CA benchmarks: logins/s (scrypt-bound), gateway enrollments/s and grants/s, in-process (the Authority on a
 * file database, WAL + synchronous=FULL) and over HTTPS (the pinned client, a fresh TLS connection per
 * request). Reference: an empty committed transaction on the same database, the floor every issuance pays.
 */
import { generateKeyPairSync as nodeKeyPair, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Authority } from '../lib/ca/authority.js';
import { startCaServer } from '../lib/ca/http.js';
import { unwrap } from '../lib/errors/codes.js';
import { createCsrPem } from '../lib/pki/csr.js';
import { generateKeyPairSync } from '../lib/pki/keys.js';
import { CaClient } from '../lib/protocol/ca-client.js';
import { formatPublicKey, publicKeyBlob } from '../lib/sshcert/index.js';
import { type BenchRow, fmt, rate, renderTable } from './table.js';

const UNLIMITED = { burst: 1e9, refillMs: 1, maxDelayMs: 1000 };

/** Runs `fn` from `concurrency` loops for about `ms`; operations per second. */
async function concurrentRate(fn: () => Promise<unknown>, ms: number, concurrency: number): Promise<number> {
  const start = performance.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() - start < ms) {
        await fn();
        n++;
      }
    }),
  );
  return n / ((performance.now() - start) / 1000);
}

export async function benchCa(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-ca-'));
  const ca = Authority.open({
    db: join(dir, 'ca.db'),
    sealKey: randomBytes(32),
    trustDomain: 'bench.test',
    rateLimits: { login: UNLIMITED, enroll: UNLIMITED, signed: UNLIMITED },
  });
  const rows: BenchRow[] = [];
  try {
    const init = unwrap(await ca.init());
    const admin = unwrap(await ca.callerFor(init.adminClientId, init.adminClientSecret));
    unwrap(ca.createOrg(admin, 'acme'));
    const boss = unwrap(await ca.createIdentity(admin, 'acme', { identityId: 'boss', role: 'org-admin' }));
    const alice = unwrap(await ca.createIdentity(admin, 'acme', { identityId: 'alice', role: 'member' }));
    const orgAdmin = unwrap(await ca.callerFor(boss.clientId, boss.clientSecret));
    const member = unwrap(await ca.callerFor(alice.clientId, alice.clientSecret));
    unwrap(
      ca.addPolicy(orgAdmin, 'acme', { subject: 'identity:alice', gateways: ['*'], targets: ['*:*'], modes: ['tcp'] }),
    );
    const csr = createCsrPem({ privateKey: generateKeyPairSync('ecdsa-p256').privateKey });
    const ssh = formatPublicKey(publicKeyBlob(nodeKeyPair('ed25519').publicKey));
    let gw = 0;
    const enroll = () => ({ orgId: 'acme', gatewayId: `gw${gw++}`, csr, sshPublicKey: ssh });
    unwrap(ca.enrollGateway(orgAdmin, { ...enroll(), gatewayId: 'target' }));
    const grant = {
      orgId: 'acme',
      gatewayId: 'target',
      target: { host: 'db.internal', port: 5432 },
      mode: 'tcp' as const,
      outerCsr: csr,
      innerCsr: csr,
    };
    const empty = ca.store.sql.prepare(
      "INSERT INTO meta (key, value) VALUES ('bench', 'x') ON CONFLICT (key) DO UPDATE SET value = 'x'",
    );
    const commit = await rate(() => ca.store.transaction(() => empty.run()), 700);
    const note = 'ECDSA P-256 CAs, SQLite WAL synchronous=FULL';

    const loginIn = await concurrentRate(
      () => ca.login({ clientId: alice.clientId, clientSecret: alice.clientSecret }),
      1500,
      4,
    );
    const enrollIn = await rate(() => unwrap(ca.enrollGateway(orgAdmin, enroll())), 1500);
    const grantIn = await rate(() => unwrap(ca.issueGrant(member, grant)), 1500);

    const creds = ca.issueApiServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const server = await startCaServer({ authority: ca, host: '127.0.0.1', port: 0, tls: creds });
    try {
      const anon = new CaClient({ url: server.url, fingerprint: creds.fingerprint256 });
      const adminHttp = anon.withToken(orgAdmin.accessToken);
      const memberHttp = anon.withToken(member.accessToken);
      const loginHttp = await concurrentRate(
        () => anon.login({ clientId: alice.clientId, clientSecret: alice.clientSecret }),
        1500,
        4,
      );
      const enrollHttp = await concurrentRate(() => adminHttp.enrollGateway(enroll()), 1500, 4);
      const grantHttp = await concurrentRate(() => memberHttp.issueGrant(grant), 1500, 4);
      const ref = `${fmt.perSec(commit)} empty commits`;
      rows.push(
        {
          area: 'ca',
          metric: 'logins/s in-process (scrypt N=2^14, 4 parallel)',
          ours: fmt.perSec(loginIn),
          note: 'bound by scrypt, by design',
        },
        {
          area: 'ca',
          metric: 'logins/s over HTTPS (4 parallel)',
          ours: fmt.perSec(loginHttp),
          note: 'new TLS connection per request',
        },
        {
          area: 'ca',
          metric: 'gateway enrollments/s in-process',
          ours: fmt.perSec(enrollIn),
          reference: ref,
          note: '1 X.509 + 2 SSH certs, 1 commit',
        },
        {
          area: 'ca',
          metric: 'gateway enrollments/s over HTTPS (4 parallel)',
          ours: fmt.perSec(enrollHttp),
          reference: ref,
        },
        {
          area: 'ca',
          metric: 'grants/s in-process',
          ours: fmt.perSec(grantIn),
          reference: ref,
          note: `3 X.509 certs + policy, 1 commit; ${note}`,
        },
        { area: 'ca', metric: 'grants/s over HTTPS (4 parallel)', ours: fmt.perSec(grantHttp), reference: ref },
      );
    } finally {
      await server.drain(Date.now() + 1000);
    }
  } finally {
    ca.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(renderTable(await benchCa()));
}
