/**
 * The CA store benchmark (issue 17): grants per second through the HTTPS API, from N concurrent clients (each
 * request its own TLS connection, as CaClient makes them), against real `infisical-ca serve` processes started
 * through the CLI:
 *   1. one CA on SQLite (WAL, synchronous=FULL): the reference, measured in the same run;
 *   2. the same CA moved to PostgreSQL by `infisical-ca migrate`, one CA process;
 *   3. two CA replicas on that PostgreSQL (each a copy of the state directory), the clients spread over both.
 * PostgreSQL 15 runs from a temp directory with fsync on (as SQLite's FULL syncs every commit). Reported per
 * setup: grants/s, p50/p99 latency, and the CPU seconds each CA process and PostgreSQL (postmaster, its live
 * backends and its reaped children) spent during the measured window, read from /proc.
 *
 * BENCH_CASTORE_CLIENTS (default 8) and BENCH_CASTORE_SECONDS (default 8) size the load.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync as nodeKeyPair } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createCsrPem } from '../lib/pki/csr.js';
import { generateKeyPairSync } from '../lib/pki/keys.js';
import type { GrantRequest } from '../lib/protocol/api.js';
import { CaClient } from '../lib/protocol/ca-client.js';
import { formatPublicKey, publicKeyBlob } from '../lib/sshcert/index.js';
import { cliJson, type Served, serve } from '../test/ca/daemon-helpers.js';
import { freshDatabase, type Postgres, postgresUrl, startPostgres } from '../test/helpers/postgres.js';
import { type BenchRow, fmt, percentile, renderTable } from './table.js';

const CLIENTS = Number(process.env['BENCH_CASTORE_CLIENTS'] ?? 8);
const SECONDS = Number(process.env['BENCH_CASTORE_SECONDS'] ?? 8);
const WARMUP_MS = 1000;

const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** /proc/PID/stat after the command name: [state, ppid, …]; index = field number - 3. */
function stat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) of a process; with `reaped`, also of its children it has waited for. */
function cpuSeconds(pid: number, reaped = false): number {
  const f = stat(pid);
  if (!f) return 0;
  const ticks = Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0);
  return ticks / TICKS;
}

/** PostgreSQL's CPU seconds so far: the postmaster with its reaped children, and every live child (backends). */
function postgresCpu(postmaster: number): number {
  let total = cpuSeconds(postmaster, true);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = stat(Number(entry));
    if (f && Number(f[1]) === postmaster) total += cpuSeconds(Number(entry));
  }
  return total;
}

interface Load {
  grants: number;
  perSec: number;
  latencies: number[];
  failures: number;
  firstError?: string;
}

/** `clients` loops issuing grants for `ms`, client i against urls[i % urls.length]; warm-up excluded by caller. */
async function grantLoad(clients: CaClient[], grant: GrantRequest, ms: number): Promise<Load> {
  const latencies: number[] = [];
  let failures = 0;
  let firstError: string | undefined;
  const start = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() - start < ms) {
        const t = performance.now();
        try {
          await client.issueGrant(grant);
          latencies.push(performance.now() - t);
        } catch (err) {
          failures += 1;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return {
    grants: latencies.length,
    perSec: latencies.length / seconds,
    latencies,
    failures,
    ...(firstError ? { firstError } : {}),
  };
}

interface Setup {
  name: string;
  load: Load;
  caCpu: number[];
  postgresCpu?: number;
  benchCpu: number;
}

/** Runs the load against served CAs, measuring each CA's and PostgreSQL's CPU over the measured window. */
async function measure(
  name: string,
  served: Served[],
  member: { clientId: string; clientSecret: string },
  grant: GrantRequest,
  postmaster?: number,
): Promise<Setup> {
  const clients: CaClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const ca = served[i % served.length]!;
    const anon = new CaClient({ url: ca.url, fingerprint: ca.fingerprint });
    clients.push(anon.withToken((await anon.login(member)).accessToken));
  }
  await grantLoad(clients, grant, WARMUP_MS);
  const pids = served.map((s) => s.child.pid!);
  const caBefore = pids.map((pid) => cpuSeconds(pid));
  const pgBefore = postmaster ? postgresCpu(postmaster) : 0;
  const benchBefore = process.cpuUsage();
  const load = await grantLoad(clients, grant, SECONDS * 1000);
  const bench = process.cpuUsage(benchBefore);
  return {
    name,
    load,
    caCpu: pids.map((pid, i) => cpuSeconds(pid) - caBefore[i]!),
    ...(postmaster ? { postgresCpu: postgresCpu(postmaster) - pgBefore } : {}),
    benchCpu: (bench.user + bench.system) / 1e6,
  };
}

async function stop(served: Served[]): Promise<void> {
  for (const s of served) s.child.kill('SIGTERM');
  await Promise.all(served.map((s) => s.exited));
}

/** A copy of the state directory for a replica: the sealing key is all it holds besides the store. */
function replicaDir(root: string, from: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { mode: 0o700 });
  copyFileSync(join(from, 'sealing.key'), join(dir, 'sealing.key'));
  chmodSync(join(dir, 'sealing.key'), 0o600);
  return dir;
}

export async function benchCaStore(): Promise<BenchRow[]> {
  const root = mkdtempSync(join(tmpdir(), 'bench-castore-'));
  let pg: Postgres | undefined;
  const running: Served[] = [];
  const drain = ['--drain-timeout', '2s'];
  try {
    const state = join(root, 'sqlite-ca');
    const s = ['--state-dir', state];
    await cliJson(['init', ...s]);
    await cliJson(['org', 'create', 'acme', ...s]);
    const boss = await cliJson<{ clientId: string; clientSecret: string }>([
      ...['identity', 'create', 'acme', 'boss', '--role', 'org-admin'],
      ...s,
    ]);
    const alice = await cliJson<{ clientId: string; clientSecret: string }>([
      'identity',
      'create',
      'acme',
      'alice',
      ...s,
    ]);
    await cliJson([
      ...['policy', 'add', 'acme', '--subject', 'identity:alice', '--gateway', '*', '--target', '*:*'],
      ...s,
    ]);
    const csr = createCsrPem({ privateKey: generateKeyPairSync('ecdsa-p256').privateKey });
    const grant: GrantRequest = {
      orgId: 'acme',
      gatewayId: 'target',
      target: { host: 'db.internal', port: 5432 },
      mode: 'tcp',
      outerCsr: csr,
      innerCsr: csr,
    };
    const member = { clientId: alice.clientId, clientSecret: alice.clientSecret };
    const setups: Setup[] = [];

    // 1. SQLite, the reference.
    const sqlite = await serve(state, drain);
    running.push(sqlite);
    const anon = new CaClient({ url: sqlite.url, fingerprint: sqlite.fingerprint });
    const admin = anon.withToken(
      (await anon.login({ clientId: boss.clientId, clientSecret: boss.clientSecret })).accessToken,
    );
    await admin.enrollGateway({
      orgId: 'acme',
      gatewayId: 'target',
      csr,
      sshPublicKey: formatPublicKey(publicKeyBlob(nodeKeyPair('ed25519').publicKey)),
    });
    setups.push(await measure('1 CA, SQLite', [sqlite], member, grant));
    await stop(running.splice(0));

    // 2. The same CA moved to PostgreSQL (fsync on), one CA process.
    pg = await startPostgres({ durable: true });
    const postmaster = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const url = freshDatabase(postgresUrl(pg.port));
    const started = performance.now();
    const moved = await cliJson<{ tables: { rows: number }[] }>(['migrate', ...s, '--to', url]);
    const migrateMs = performance.now() - started;
    const movedRows = moved.tables.reduce((n, t) => n + t.rows, 0);
    const a = await serve(replicaDir(root, state, 'replica-a'), ['--store', url, ...drain]);
    running.push(a);
    setups.push(await measure('1 CA, PostgreSQL', [a], member, grant, postmaster));

    // 3. Two replicas on that PostgreSQL, the clients spread over both.
    const b = await serve(replicaDir(root, state, 'replica-b'), ['--store', url, ...drain]);
    running.push(b);
    setups.push(await measure('2 CA replicas, PostgreSQL', [a, b], member, grant, postmaster));
    await stop(running.splice(0));

    const reference = setups[0]!.load.perSec;
    const rows: BenchRow[] = setups.map((setup) => {
      const { load } = setup;
      const cpu = [
        `CPU s: CA ${setup.caCpu.map((c) => c.toFixed(1)).join(' + ')}`,
        setup.postgresCpu !== undefined ? `postgres ${setup.postgresCpu.toFixed(1)}` : '',
        `clients ${setup.benchCpu.toFixed(1)}`,
      ].filter(Boolean);
      return {
        area: 'castore',
        metric: `grants/s over HTTPS, ${CLIENTS} clients: ${setup.name}`,
        ours: fmt.perSec(load.perSec),
        reference: `${fmt.perSec(reference)} (1 CA, SQLite)`,
        note:
          `p50 ${fmt.ms(percentile(load.latencies, 50))}, p99 ${fmt.ms(percentile(load.latencies, 99))}; ` +
          `${cpu.join(', ')} in ${SECONDS} s` +
          (load.failures ? `; ${load.failures} failed (${load.firstError})` : ''),
      };
    });
    rows.push({
      area: 'castore',
      metric: 'infisical-ca migrate SQLite → PostgreSQL (CLI, whole command)',
      ours: `${(migrateMs / 1000).toFixed(1)} s`,
      note: `${movedRows} rows, one transaction, counts verified`,
    });
    return rows;
  } finally {
    await stop(running).catch(() => undefined);
    await pg?.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(renderTable(await benchCaStore()));
}
