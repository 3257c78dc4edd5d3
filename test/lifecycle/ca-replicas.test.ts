/**
 * Two active CA replicas on one PostgreSQL (issue 17), real processes through their CLIs: a real PostgreSQL 15
 * (initdb into a temp dir, loopback), the deployment's CA (replica A) made with `--store URL`, and replica B
 * started from a copy of A's state directory (its sealing key: everything else is in the store). Shown:
 * - both replicas answer with the same API certificate (one pin);
 * - failed logins from one source count against one limit, whichever replica they reach;
 * - 50 enrollments with one token, in parallel across both replicas: exactly one succeeds, the rest are refused
 *   E_TOKEN_USED;
 * - a grant revoked through replica A's API cuts a live stream through a gateway whose feed is read from replica
 *   B (B hears A's change notice and answers B's held feed read at once);
 * - SIGKILL of replica A under a load of grant requests: clients that know both URLs go on through B, and every
 *   certificate serial handed to a client is recorded in the store exactly once, none twice;
 * - PostgreSQL stopped: B answers E_STORE_UNAVAILABLE (503) and logs the outage once; started again, B serves.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GatewayError } from '../../lib/errors/codes.js';
import type { GrantRequest } from '../../lib/protocol/api.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { clientKeys, csrFor } from '../ca/helpers.js';
import { freePort } from '../helpers/openssh.js';
import { postgresUrl, psql, startPostgres } from '../helpers/postgres.js';
import { assertByteExact, Daemon, ORG, startDeployment, waitFor } from './deploy.js';
import { closedWithin, liveStream } from './helpers2.js';

const codeOf = (err: unknown) => (err instanceof GatewayError ? err.code : String(err));

/** The serial of the first certificate of a PEM chain, as the store keeps it (lower-case hex). */
function leafSerial(chain: string): string {
  return new X509Certificate(chain).serialNumber.toLowerCase();
}

test('two CA replicas on one PostgreSQL: one token enrolls once, a revocation through A reaches a gateway reading B, SIGKILL of A under grant load', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const store = postgresUrl(pg.port);
  // 50 enrollments from one address: the per-source failure limit is raised, as for any test of many peers.
  const caConf = join(mkdtempSync(join(tmpdir(), 'ca-replicas-')), 'ca.conf');
  writeFileSync(caConf, 'enroll_failure_burst = 100\nlogin_failure_burst = 4\nlogin_failure_refill = 1s\n');
  const d = await startDeployment({ caStore: store, caArgs: ['--config', caConf], proxies: 1, gateways: 1 });
  t.after(() => d.close());
  let b: Daemon | undefined;
  try {
    // Replica B: A's state directory copied (the sealing key), the same store, its own addresses.
    const bDir = join(d.dir, 'ca-b');
    mkdirSync(bDir, { mode: 0o700 });
    copyFileSync(join(d.ca.stateDir, 'sealing.key'), join(bDir, 'sealing.key'));
    chmodSync(join(bDir, 'sealing.key'), 0o600);
    const [port, opsPort] = [await freePort(), await freePort()];
    b = new Daemon({
      name: 'ca-b',
      program: 'ca',
      stateDir: bDir,
      logFile: join(d.dir, 'logs', 'ca-b.log'),
      opsPort,
      args: [
        'serve',
        '--state-dir',
        bDir,
        '--store',
        store,
        '--listen',
        `127.0.0.1:${port}`,
        '--ops-listen',
        `127.0.0.1:${opsPort}`,
        '--log-level',
        'info',
        '--config',
        caConf,
      ],
    });
    await b.start();
    const bUrl = `https://127.0.0.1:${port}`;
    const pin = d.ca.fingerprint;
    const onA = new CaClient({ url: d.ca.url, fingerprint: pin });
    const onB = new CaClient({ url: bUrl, fingerprint: pin });
    assert.equal((await onB.health()).version, (await onA.health()).version, 'B answers under the same pin as A');

    // Failed logins from one source, alternating between the replicas: 3 + 3 is within each replica's burst
    // of 4, but the replicas share one penalty book, so the source is made to wait after its 4th.
    const wrong = { clientId: d.app.clientId, clientSecret: 'not-the-secret' };
    const loginCodes: string[] = [];
    for (let i = 0; i < 6; i++) {
      loginCodes.push(await (i % 2 === 0 ? onA : onB).login(wrong).then(() => 'ok', codeOf));
    }
    assert.deepEqual(loginCodes.slice(0, 4), Array(4).fill('E_AUTH_INVALID'), loginCodes.join(' '));
    assert.ok(loginCodes.slice(4).includes('E_RATE_LIMITED'), `a shared limit: ${loginCodes.join(' ')}`);
    const right = { clientId: d.app.clientId, clientSecret: readFileSync(d.app.secretFile, 'utf8').trim() };
    await waitFor(() => onB.login(right).then(() => true), { timeoutMs: 30_000, what: 'the wait to pass' });

    // 50 enrollments with one token across both replicas: exactly one wins.
    const token = String(
      (await d.ca.cli(['token', '--org', ORG, '--kind', 'gateway', '--subject', 'gw-race']))['token'],
    );
    const keys = clientKeys();
    const attempts = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 === 0 ? onA : onB).enrollGateway({
          orgId: ORG,
          gatewayId: 'gw-race',
          csr: keys.csr,
          sshPublicKey: keys.sshPublicKey,
          enrollmentToken: token,
        }),
      ),
    );
    const won = attempts.filter((a) => a.status === 'fulfilled');
    const refused = attempts.flatMap((a) => (a.status === 'rejected' ? [codeOf(a.reason)] : []));
    assert.equal(won.length, 1, `exactly one enrollment of the token succeeds (refusals: ${refused.join(' ')})`);
    assert.deepEqual([...new Set(refused)], ['E_TOKEN_USED'], 'every other attempt is refused E_TOKEN_USED');
    t.diagnostic(`one token, 50 parallel enrollments over two replicas: 1 enrolled, 49 refused E_TOKEN_USED`);

    // The gateway reads its feed from B only (ca_url in its config, read at start).
    const gw = d.gateways[0]!;
    const conf = join(d.dir, 'gw-1-b.conf');
    writeFileSync(conf, `ca_url = ${bUrl}\n`);
    gw.args = [...gw.args, '--config', conf];
    await gw.restart();
    await gw.waitTunnels();
    const c = await d.connect({ gateway: gw });
    assertByteExact(await d.transfer(c, 256 * 1024));
    const grantId = c.events().findLast((e) => e['event'] === 'grant')?.['grantId'] as string;
    assert.ok(grantId, 'connect took a grant');
    const live = await liveStream(c.port);
    const admin = (await onA.loginAs({ clientId: d.ca.adminClientId, clientSecret: d.ca.adminClientSecret })).client;
    await admin.revoke({ kind: 'grant', orgId: ORG, subject: grantId, reason: 'replica test' });
    const cutMs = await closedWithin(live, 10_000, 'grant revoked through replica A, gateway reading replica B');
    t.diagnostic(`revoked through A: the stream through the gateway reading B was cut ${Math.round(cutMs)} ms later`);
    await c.stop();

    // Grant load on both replicas; SIGKILL of A in the middle.
    const app = right;
    const both = (await new CaClient({ url: [d.ca.url, bUrl], fingerprint: pin }).loginAs(app)).client;
    const bFirst = (await new CaClient({ url: [bUrl, d.ca.url], fingerprint: pin }).loginAs(app)).client;
    const { csr } = csrFor();
    const request: GrantRequest = {
      orgId: ORG,
      gatewayId: gw.gatewayId,
      target: { host: d.target.host, port: d.target.port },
      mode: 'tcp',
      outerCsr: csr,
      innerCsr: csr,
    };
    const serials: string[] = [];
    const failures: string[] = [];
    let killedAt = 0;
    let afterKill = 0;
    let stop = false;
    const worker = async (client: CaClient) => {
      while (!stop) {
        try {
          const g = await client.issueGrant(request);
          serials.push(leafSerial(g.innerCertificateChain), leafSerial(g.outerCertificateChain));
          if (killedAt) afterKill += 1;
        } catch (err) {
          failures.push(`${killedAt ? 'after' : 'before'} kill: ${codeOf(err)} ${(err as Error).message}`);
        }
      }
    };
    const workers = [both, both, bFirst, both].map(worker);
    await waitFor(async () => serials.length >= 40, { timeoutMs: 60_000, what: '20 grants before the kill' });
    const beforeKill = serials.length / 2;
    await d.ca.kill();
    killedAt = Date.now();
    await waitFor(async () => afterKill >= 40, { timeoutMs: 60_000, what: '40 grants after A was killed' });
    stop = true;
    await Promise.all(workers);
    t.diagnostic(
      `grants: ${beforeKill} before SIGKILL of A, ${afterKill} after (through B); failures: ${failures.length}`,
    );
    // A request in flight when A died may fail (its connection reset); nothing after that.
    const late = failures.filter((f) => f.startsWith('after'));
    assert.ok(late.length <= 4, `at most the in-flight requests fail (one per client):\n${late.join('\n')}`);
    assert.equal(new Set(serials).size, serials.length, 'no serial was handed out twice');
    const recorded = new Map(
      (await psql(pg.port, 'SELECT serial, count(*) FROM certificates GROUP BY serial'))
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split('|') as [string, string]),
    );
    const missing = serials.filter((s) => recorded.get(s) !== '1');
    assert.deepEqual(missing, [], 'every serial a client holds is recorded exactly once');

    // PostgreSQL down: B answers 503 E_STORE_UNAVAILABLE (logged once), and serves again once it is back.
    await pg.pause();
    const down = await bFirst.issueGrant(request).then(() => 'ok', codeOf);
    assert.equal(down, 'E_STORE_UNAVAILABLE', 'a request while the store is down');
    await waitFor(() => b?.log().includes('the store cannot be reached; retrying'), { what: 'B to log the outage' });
    await pg.resume();
    await waitFor(() => bFirst.issueGrant(request).then(() => true), { what: 'B to issue grants again' });
    await waitFor(() => b?.log().includes('the store answers again'), { what: 'B to log the recovery' });
    assert.equal(b?.log().split('the store cannot be reached; retrying').length, 2, 'the outage is logged once');
  } catch (err) {
    process.stderr.write(`\n${d.tails(30)}\n${b?.tail(30) ?? ''}\n`);
    throw err;
  } finally {
    await b?.stop(); // before the deployment's close removes its directory
  }
});
