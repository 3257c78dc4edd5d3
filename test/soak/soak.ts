/**
 * `make soak` (issue 14): checksummed transfers run through a real deployment (CA, two proxies, a gateway and an
 * infisical-connect listener, each its own process) while the CA, a proxy and the gateway are SIGKILLed and
 * restarted in turn. At the end, after a clean stop:
 *   - SQLite `PRAGMA integrity_check` is "ok" on every state database (ca.db, proxy.db ×2, gateway.db);
 *   - every transfer the client saw complete has its `gateway.stream` audit row (matched by its unique size),
 *     except one the gateway was SIGKILLed during, or before its close reached it (counted and shown apart);
 *   - every transfer either completed byte-exact both ways or failed with an error the client saw (reset,
 *     early close, timeout): none delivered different bytes, or a short count, without the client noticing.
 * It prints what it did and what it found, and exits 1 on a violation. Not part of `make test`: minutes long.
 *
 * SOAK_SECONDS (default 180) is the chaos time; SOAK_WORKERS (default 3) the concurrent transfers.
 */
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startDeployment, type TransferResult } from '../lifecycle/deploy.js';
import type { Daemon } from '../lifecycle/process.js';

const SECONDS = Number(process.env['SOAK_SECONDS'] ?? 180);
const WORKERS = Number(process.env['SOAK_WORKERS'] ?? 3);
const log = (msg: string) => console.log(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}`);

interface Done {
  size: number;
  result: TransferResult;
  startedAt: number;
  endedAt: number;
}

interface Kill {
  name: string;
  at: number;
  downMs: number;
  readyMs: number;
}

const d = await startDeployment({ proxies: 2, gateways: 1, logLevel: 'warn', keep: !!process.env['SOAK_KEEP'] });
let exitCode = 0;
try {
  log(`deployment up in ${d.dir}: ca, ${d.proxies.map((p) => p.name).join(', ')}, ${d.gateways[0]!.name}`);
  const connect = await d.connect({ args: ['--ttl', '600'] });
  const done: Done[] = [];
  const kills: Kill[] = [];
  const used = new Set<number>();
  const uniqueSize = () => {
    for (;;) {
      const size = randomInt(16 * 1024, 2 * 1024 * 1024);
      if (!used.has(size)) {
        used.add(size);
        return size;
      }
    }
  };
  const chaosUntil = Date.now() + SECONDS * 1000;
  let running = true;

  const worker = async () => {
    while (running) {
      const size = uniqueSize();
      const startedAt = Date.now();
      const result = await d.transfer(connect, size, { timeoutMs: 30_000 });
      done.push({ size, result, startedAt, endedAt: Date.now() });
      if (!result.ok) await new Promise((r) => setTimeout(r, 250));
    }
  };

  const victims: Daemon[] = [d.ca, d.proxies[0]!, d.gateways[0]!, d.proxies[1]!];
  const chaos = async () => {
    for (let i = 0; Date.now() < chaosUntil; i++) {
      await new Promise((r) => setTimeout(r, randomInt(3000, 8000)));
      if (Date.now() >= chaosUntil) break;
      const victim = victims[i % victims.length]!;
      const at = Date.now();
      await victim.kill();
      const downMs = randomInt(200, 3000);
      await new Promise((r) => setTimeout(r, downMs));
      const started = Date.now();
      await victim.start(60_000);
      kills.push({ name: victim.name, at, downMs, readyMs: Date.now() - started });
      log(`SIGKILL ${victim.name}: down ${downMs} ms, ready again ${Date.now() - started} ms after restart`);
    }
  };

  log(`${WORKERS} transfer workers, chaos for ${SECONDS} s`);
  const workers = Array.from({ length: WORKERS }, () => worker());
  await chaos();
  running = false;
  await Promise.all(workers);
  // Recovery: the gateway has its tunnels back and a fresh transfer goes through.
  await d.gateways[0]!.waitTunnels(2, 60_000);
  const finalStart = Date.now();
  const final = await d.transfer(connect, uniqueSize(), { timeoutMs: 60_000 });
  done.push({ size: final.bytes, result: final, startedAt: finalStart, endedAt: Date.now() });

  // Stop cleanly so the databases can be opened, then judge.
  for (const program of ['connect', 'gateway', 'proxy', 'ca'] as const) {
    await Promise.all(
      d
        .daemons()
        .filter((x) => x.program === program)
        .map((x) => x.stop(15_000)),
    );
  }
  const dbs = [
    join(d.ca.stateDir, 'ca.db'),
    ...d.proxies.map((p) => join(p.stateDir, 'proxy.db')),
    join(d.gateways[0]!.stateDir, 'gateway.db'),
  ];
  const integrity = dbs.map((file) => {
    const db = new Database(file, { readonly: true });
    try {
      return { file, result: String(db.pragma('integrity_check', { simple: true })) };
    } finally {
      db.close();
    }
  });
  const gw = new Database(dbs.at(-1)!, { readonly: true });
  const rows = gw.prepare("SELECT time, fields FROM audit WHERE event = 'gateway.stream'").all() as {
    time: string;
    fields: string;
  }[];
  gw.close();
  const records = rows.map((r) => JSON.parse(r.fields) as { bytesIn?: number; outcome?: string; reason?: string });
  const audited = new Set(records.map((r) => Number(r.bytesIn)));

  const completed = done.filter((x) => x.result.ok);
  const failed = done.filter((x) => !x.result.ok);
  // Silent damage: the client saw no error, yet bytes differ or are short. transfer() reports the socket's own
  // errors, closes and timeouts as such; a checksum or count mismatch without one is the violation.
  const visible = /socket error|closed after|timed out|never saw/;
  const silent = failed.filter((x) => !visible.test(x.result.error ?? ''));
  const gatewayKills = kills.filter((k) => k.name === d.gateways[0]!.name).map((k) => k.at);
  const missing = completed.filter((x) => !audited.has(x.size));
  // The gateway writes a stream's row when the stream ends there, after the client's close has travelled
  // connect → proxy → gateway; and the last bytes a client receives may still be in the proxy's and connect's
  // buffers when the gateway dies. So a gateway SIGKILL during a transfer, or before its close reached the
  // gateway, takes the row along: the kill's own instant, counted apart. A missing row is lost when no gateway
  // kill fell within the transfer and the gateway, before its next kill, began (over a second after this
  // transfer ended) and recorded another stream: it was demonstrably past this one's end and wrote nothing.
  const rowTimes = rows.map((r, i) => {
    const at = Date.parse(r.time);
    return { at, startedAt: at - Number((records[i] as { durationMs?: number }).durationMs ?? 0) };
  });
  const caughtUp = (x: Done) => {
    const nextKill = gatewayKills.find((at) => at >= x.endedAt) ?? Number.POSITIVE_INFINITY;
    return rowTimes.some((r) => r.startedAt > x.endedAt + 1000 && r.at < nextKill);
  };
  const killedDuring = (x: Done) => gatewayKills.some((at) => at >= x.startedAt && at <= x.endedAt);
  const lostToKill = missing.filter((x) => killedDuring(x) || !caughtUp(x));
  const lost = missing.filter((x) => !lostToKill.includes(x));

  const byError = new Map<string, number>();
  for (const x of failed) {
    const kind = (x.result.error ?? '?').replace(/\d+/g, 'N').slice(0, 80);
    byError.set(kind, (byError.get(kind) ?? 0) + 1);
  }
  const megabytes = completed.reduce((n, x) => n + x.size, 0) / (1 << 20);
  log('---- what it did');
  log(
    `kills: ${kills.length} (${victims.map((v) => `${v.name} ${kills.filter((k) => k.name === v.name).length}`).join(', ')})`,
  );
  log(
    `transfers: ${done.length}; completed byte-exact ${completed.length} (${megabytes.toFixed(1)} MiB), failed ${failed.length}`,
  );
  for (const [kind, n] of byError) log(`  failed ${n}×: ${kind}`);
  log(`final transfer after recovery: ${final.ok ? 'byte-exact' : `FAILED ${final.error}`}`);
  log('---- what it found');
  for (const r of integrity) log(`integrity_check ${r.file.slice(d.dir.length + 1)}: ${r.result}`);
  const outcomes = new Map<string, number>();
  for (const r of records) outcomes.set(String(r.outcome), (outcomes.get(String(r.outcome)) ?? 0) + 1);
  log(`gateway.stream outcomes: ${[...outcomes].map(([o, n]) => `${o} ${n}`).join(', ')}`);
  log(
    `gateway.stream audit rows: ${rows.length}; completed transfers with a row: ${completed.length - missing.length}/${completed.length}`,
  );
  if (lostToKill.length)
    log(
      `  ${lostToKill.length} completed while, or just before, the gateway was SIGKILLed, without a row (the kill's instant)`,
    );
  log(`lost audit rows: ${lost.length}; silent failures: ${silent.length}`);
  for (const x of [...lost, ...silent].slice(0, 10)) {
    const near = kills
      .map((k) => `${k.name} ${k.at - x.endedAt} ms`)
      .filter((_, i) => Math.abs(kills[i]!.at - x.endedAt) < 15_000);
    const when = `took ${x.endedAt - x.startedAt} ms; kills relative to its end: ${near.join(', ') || 'none within 15 s'}`;
    log(`  size ${x.size}: ${x.result.error ?? 'completed, no audit row'} (${when})`);
  }
  const unmatched = records.filter((r) => !completed.some((x) => x.size === r.bytesIn));
  // Rows of streams the client saw fail: they exist (the gateway saw the stream end), with the outcome it recorded.
  const unmatchedOutcomes = new Map<string, number>();
  for (const r of unmatched)
    unmatchedOutcomes.set(String(r.outcome), (unmatchedOutcomes.get(String(r.outcome)) ?? 0) + 1);
  log(
    `rows of streams the client saw fail or cut: ${unmatched.length} (outcome ${[...unmatchedOutcomes].map(([o, n]) => `${o} ${n}`).join(', ') || '-'})`,
  );
  const violations =
    integrity.filter((r) => r.result !== 'ok').length + lost.length + silent.length + (final.ok ? 0 : 1);
  log(violations === 0 ? 'PASS' : `FAIL: ${violations} violation(s)`);
  exitCode = violations === 0 ? 0 : 1;
} catch (err) {
  console.error(err);
  console.error(d.tails(40));
  exitCode = 1;
} finally {
  await d.close();
}
process.exit(exitCode);
