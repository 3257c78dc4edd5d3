/**
 * Renewal retires the certificate it replaces (issue 11, the stolen-copy defence), real processes throughout:
 * a copy of gw-2's whole state directory (sealing.key included) is taken while it is stopped; gw-2 serves
 * again and `infisical-gateway renew` runs beside it. The running serve picks the renewal up without a
 * restart, and a transfer that started before the renewal runs across it byte-exact (make-before-break). The
 * CA lists the new serial. The copy can neither renew (E_CERT_SUPERSEDED) nor, once the grace is over, hold a
 * tunnel at any proxy; the real gw-2 carries on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../helpers/openssh.js';
import { assertByteExact, Daemon, startDeployment, waitFor } from './deploy.js';
import { pacedTransfer, proxyTunnels, runProgram } from './helpers2.js';

const MiB = 1024 * 1024;

test('renewal beside a running gateway: make-before-break, and the copied state directory is shut out', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2, caArgs: ['--supersede-grace', '5s'] });
  let copy: Daemon | undefined;
  t.after(async () => {
    await copy?.stop(10_000);
    await d.close();
  });
  try {
    const gw2 = d.gateways[1]!;
    // The copy is taken the way a thief (or a careless backup restore) would: the whole directory, at rest.
    await gw2.stop();
    const copyDir = join(d.dir, 'gw-2-copy');
    execFileSync('cp', ['-a', gw2.stateDir, copyDir]);
    assert.ok(existsSync(join(copyDir, 'sealing.key')), 'the copy holds the sealing key');
    await gw2.start();
    await gw2.waitTunnels(2);
    const pid = gw2.pid;

    const before = await Promise.all(d.proxies.map(proxyTunnels));
    for (const b of before) assert.deepEqual(b, { tunnels: 2, gateways: 2 });

    // A stream through gw-2 started before the renewal, running until the renewal has fully landed.
    const c = await d.connect({ gateway: gw2 });
    let landed!: () => void;
    const renewalLanded = new Promise<void>((r) => (landed = r));
    const running = pacedTransfer({
      port: c.port,
      target: d.target,
      rate: 3 * MiB,
      until: renewalLanded,
      minBytes: 30 * MiB,
      maxBytes: 120 * MiB,
      timeoutMs: 150_000,
    });
    await waitFor(() => d.target.connections.some((x) => x.bytes >= MiB && !x.closed), {
      what: 'the long transfer to be flowing',
      timeoutMs: 20_000,
    });

    const renewed = await runProgram('gateway', ['renew', '--state-dir', gw2.stateDir, '--json']);
    assert.equal(renewed.code, 0, `renew: ${renewed.stdout}${renewed.stderr}`);
    const r = JSON.parse(renewed.stdout) as { serial: string; previousSerial: string };
    assert.match(r.serial, /^[0-9a-f]+$/);
    assert.notEqual(r.serial, r.previousSerial, 'renew printed a new serial');

    const listed = (await d.ca.cli(['gateway', 'list', d.org])) as unknown as {
      gatewayId: string;
      currentSerial: string;
      revoked: boolean;
    }[];
    const row = listed.find((g) => g.gatewayId === 'gw-2');
    assert.equal(row?.currentSerial?.toLowerCase(), r.serial, `gateway list: ${JSON.stringify(listed)}`);
    assert.equal(row?.revoked, false);

    // The running serve reloads (generation watch) and the CA retires the predecessor (first use or grace).
    await waitFor(() => gw2.logLines().some((l) => l['msg'] === 'reloaded'), {
      what: 'gw-2 to reload the renewed certificates',
      timeoutMs: 20_000,
      detail: () => gw2.tail(),
    });
    await waitFor(
      () => /certificate\.retire[^\n]*gateway:gw-2|gateway:gw-2[^\n]*certificate\.retire/.test(d.ca.log()),
      {
        what: 'the CA to retire the certificates gw-2 renewed',
        timeoutMs: 20_000,
        detail: () => d.ca.tail(),
      },
    );
    await gw2.waitTunnels(2);
    // Both proxies apply the retirement (certificate revocations) from the feed while the stream still runs.
    for (const p of d.proxies) {
      await waitFor(
        async () => ((await p.metric('infisical_proxy_revocations_total', { kind: 'certificate' })) ?? 0) > 0,
        {
          what: `${p.name} to apply the retirement of gw-2's certificates`,
          timeoutMs: 20_000,
        },
      );
    }
    await new Promise((res) => setTimeout(res, 1000));
    landed();
    const across = await running;
    assertByteExact(across, 'the transfer running across the renewal');
    assert.ok(across.spanned, 'the transfer was still sending when the renewal had landed');
    t.diagnostic(`transfer across the renewal: ${(across.bytes / MiB).toFixed(1)} MiB in ${across.ms} ms`);
    assert.equal(gw2.pid, pid, 'gw-2 picked the renewal up without a restart');
    assert.ok(gw2.running);

    // The copy cannot renew: its certificate was renewed by the real gw-2 already.
    const stolen = await runProgram('gateway', ['renew', '--state-dir', copyDir, '--json']);
    assert.notEqual(stolen.code, 0, `renewing the copy must fail: ${stolen.stdout}`);
    assert.match(`${stolen.stdout}${stolen.stderr}`, /E_CERT_SUPERSEDED/);

    // Nor serve: a second gw-2 on the copy, its own ops port.
    const opsPort = await freePort();
    const args = gw2.args.map((a) => (a === gw2.stateDir ? copyDir : a));
    const opsAt = args.indexOf('--ops-listen');
    args[opsAt + 1] = `127.0.0.1:${opsPort}`;
    copy = new Daemon({
      name: 'gateway gw-2 (copy)',
      program: 'gateway',
      stateDir: copyDir,
      opsPort,
      logFile: join(d.dir, 'logs', 'gw-2-copy.log'),
      args,
    });
    const proxyLogFrom = d.proxies.map((p) => p.log().length);
    const proxyLogsSince = () => d.proxies.map((p, i) => p.log().slice(proxyLogFrom[i])).join('\n');
    copy.spawn();
    let maxTunnels = 0;
    const sample = async () => {
      for (const p of d.proxies) maxTunnels = Math.max(maxTunnels, (await proxyTunnels(p)).tunnels);
    };
    // Both proxies refuse its SSH certificate (retired in the feed), and the CA its feed read; it stays unready.
    const refused = await waitFor(
      async () => {
        await sample();
        const refusals = proxyLogsSince().match(/"code":"E_CERT_REVOKED"[^\n]*"user":"gw-2"/g) ?? [];
        const ready = await copy!.readyz().catch(() => undefined);
        return ready?.status === 503 && refusals.length >= 2 && /E_CERT_SUPERSEDED/.test(copy!.log())
          ? ready
          : undefined;
      },
      {
        what: 'both proxies and the CA to refuse the copy',
        timeoutMs: 15_000,
        detail: () => `${copy!.tail()}\n${proxyLogsSince()}`,
      },
    );
    t.diagnostic(`copy /readyz: ${refused.status} ${refused.text.trim()}`);
    assert.match(refused.text, /revoked|superseded|no tunnel up/i);
    // Keep watching a little: the copy must never get a tunnel in.
    const watchUntil = Date.now() + 3000;
    while (Date.now() < watchUntil) {
      await sample();
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(maxTunnels, 2, 'no proxy ever held more tunnels than gw-1 and the real gw-2');
    const after = await Promise.all(d.proxies.map(proxyTunnels));
    assert.deepEqual(after, before, 'each proxy holds the same gateway tunnels as before the copy started');
    assert.ok(copy.running, 'the copy keeps running, unready, saying why');
    assert.equal((await copy.readyz()).status, 503);

    // The real gw-2 still carries new streams, byte-exact.
    assertByteExact(await d.transfer(c, 8 * MiB), 'a new transfer through the real gw-2');
    const c2 = await d.connect({ gateway: gw2 });
    assertByteExact(await d.transfer(c2, 4 * MiB), 'a transfer through a new connect to the real gw-2');
    assert.equal(gw2.pid, pid);
    assert.equal(await gw2.tunnelsUp(), 2);
  } catch (err) {
    process.stderr.write(`\n${d.tails(40)}\n${copy?.tail(40) ?? ''}\n`);
    throw err;
  }
});
