/**
 * Gateway replicas (issue 17), real processes throughout: two `infisical-gateway` processes serve one gateway id,
 * each enrolled on its own (`enroll --replica a|b`, its own token and keys) and started through its CLI. The
 * proxy spreads new streams over both (each replica's /metrics counts streams it carried, checksummed); the CA's
 * `gateway list` shows each replica. Then replica a is SIGKILLed under load: every new stream afterwards succeeds
 * (through b), and the streams a carried fail with an error the client sees. Last, one replica's renewal leaves
 * the other working, a replica stopping (SIGTERM, drain) costs no new stream, and enrolling the gateway without
 * --replica retires both.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type Deployment, type GatewayHandle, startDeployment, waitFor } from './deploy.js';
import { type PacedResult, pacedTransfer, proxyTunnels, runProgram } from './helpers2.js';

const MiB = 1024 * 1024;
const GW = 'gw-r';

const carried = async (g: GatewayHandle): Promise<number> => (await g.metric('infisical_gateway_streams_total')) ?? 0;
const active = async (g: GatewayHandle): Promise<number> => (await g.metric('infisical_gateway_streams_active')) ?? 0;

interface ListedReplica {
  replica: string;
  currentSerial: string | null;
  notAfter: string | null;
  lastSeenAt: string | null;
}

/** Replicas a and b of GW, enrolled with --replica and started through the CLI, each with its tunnel up. */
async function twoReplicas(d: Deployment) {
  const replicas = await Promise.all([
    d.addGateway(undefined, { id: GW, replica: 'a' }),
    d.addGateway(undefined, { id: GW, replica: 'b' }),
  ]);
  await Promise.all(replicas.map((r) => r.waitTunnels(1)));
  return replicas;
}

test('two replicas of one gateway id: streams spread over both; SIGKILL of one leaves every new stream working', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 0 });
  t.after(() => d.close());
  try {
    const [a, b] = await twoReplicas(d);
    assert.deepEqual(await proxyTunnels(d.proxies[0]!), { tunnels: 2, gateways: 1 }, 'one gateway, two tunnels');

    // The CA lists both replicas: one line each with its serial, expiry and last feed read.
    const listed = await waitFor(
      async () => {
        const gws = (await d.ca.cli(['gateway', 'list', d.org])) as unknown as {
          gatewayId: string;
          replicas?: ListedReplica[];
        }[];
        const reps = gws.find((g) => g.gatewayId === GW)?.replicas ?? [];
        return reps.length === 2 && reps.every((r) => r.lastSeenAt !== null) ? reps : undefined;
      },
      { what: 'gateway list to show both replicas, seen', timeoutMs: 20_000 },
    );
    assert.deepEqual(
      listed.map((r) => r.replica),
      ['a', 'b'],
    );
    assert.notEqual(listed[0]!.currentSerial, listed[1]!.currentSerial, 'each its own certificate');
    const text = await runProgram('ca', ['gateway', 'list', d.org, '--state-dir', d.ca.stateDir]);
    assert.equal(text.code, 0, text.stderr);
    for (const r of listed) {
      const line = text.stdout.split('\n').find((l) => l.startsWith(`${GW}\t${r.replica}\t`));
      assert.ok(line, `a line for replica ${r.replica}:\n${text.stdout}`);
      assert.ok(line.includes(r.currentSerial!) && line.includes(r.notAfter!) && line.includes(r.lastSeenAt!), line);
    }
    t.diagnostic(`gateway list:\n${text.stdout}`);

    // New streams spread over both replicas, each transfer checksummed.
    const c = await d.connect({ gateway: GW });
    let transfers = 0;
    while (transfers < 4 || (await carried(a)) === 0 || (await carried(b)) === 0) {
      assert.ok(
        transfers < 16,
        `16 streams and still not both replicas used: a ${await carried(a)}, b ${await carried(b)}`,
      );
      assertByteExact(await d.transfer(c, MiB), `transfer ${++transfers}`);
    }
    t.diagnostic(`after ${transfers} transfers: replica a carried ${await carried(a)}, b ${await carried(b)}`);

    // Long streams through both, then replica a dies (no drain, no goodbye).
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const running: Promise<PacedResult>[] = [];
    for (let i = 0; i < 4; i++) {
      running.push(
        pacedTransfer({
          port: c.port,
          target: d.target,
          rate: MiB,
          until: released,
          maxBytes: 64 * MiB,
          timeoutMs: 90_000,
        }),
      );
      // One at a time, so the proxy sees each one's stream count when it picks the next.
      await waitFor(async () => (await active(a)) + (await active(b)) >= i + 1, {
        what: `long stream ${i + 1} to be carried`,
        timeoutMs: 20_000,
      });
    }
    const onA = await active(a);
    assert.ok(onA >= 1 && (await active(b)) >= 1, `both replicas carry long streams (a ${onA})`);
    await a.kill();
    await waitFor(async () => (await proxyTunnels(d.proxies[0]!)).tunnels === 1, {
      what: 'the proxy to drop the killed replica',
      timeoutMs: 10_000,
    });

    // Every new stream succeeds, through b: the same connect, and a new one.
    const before = await carried(b);
    for (let i = 0; i < 8; i++) assertByteExact(await d.transfer(c, MiB / 2), `new stream ${i + 1} after the kill`);
    const c2 = await d.connect({ gateway: GW });
    for (let i = 0; i < 4; i++) assertByteExact(await d.transfer(c2, MiB / 2), `new connect, stream ${i + 1}`);
    await waitFor(async () => (await carried(b)) >= before + 12, { what: 'b to count the 12 new streams' });

    release();
    const results = await Promise.all(running);
    const failed = results.filter((r) => !r.ok);
    for (const r of results.filter((x) => x.ok)) assertByteExact(r, 'a long stream through b');
    t.diagnostic(`long streams: ${failed.length} failed (${failed.map((r) => r.error).join('; ')})`);
    assert.equal(failed.length, onA, 'exactly the streams replica a carried failed, and the client saw it');
    // A reset, not an orderly end: the application cannot take a cut stream for a complete one.
    for (const r of failed) assert.match(r.error ?? '', /ECONNRESET/, 'a failure the client sees');
  } catch (err) {
    process.stderr.write(`\n${d.tails(40)}\n`);
    throw err;
  }
});

test('replicas renew on their own and drain on SIGTERM; enrolling the gateway without --replica retires both', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 0, caArgs: ['--supersede-grace', '3s'] });
  t.after(() => d.close());
  try {
    const [a, b] = await twoReplicas(d);
    const status = await runProgram('gateway', ['status', '--state-dir', a.stateDir, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout) as { id: string; extra?: { replica?: string } };
    assert.deepEqual([report.id, report.extra?.replica], [GW, 'a'], '`status` names the gateway and the replica');
    const renewed = await runProgram('gateway', ['renew', '--state-dir', a.stateDir, '--json']);
    assert.equal(renewed.code, 0, `renew a: ${renewed.stdout}${renewed.stderr}`);
    await waitFor(() => /gateway:gw-r\/a"[^\n]*certificate\.retire/.test(d.ca.log()), {
      what: "the CA to retire a's predecessor",
      timeoutMs: 20_000,
      detail: () => d.ca.tail(),
    });
    assert.doesNotMatch(d.ca.log(), /gateway:gw-r\/b/, 'b untouched');
    // b keeps its tunnel and carries streams, as a does after its renewal.
    await Promise.all([a.waitTunnels(1), b.waitTunnels(1)]);
    const c = await d.connect({ gateway: GW });
    for (let i = 0; i < 4; i++) assertByteExact(await d.transfer(c, MiB / 2), `transfer ${i + 1} after a's renewal`);
    const renewedB = await runProgram('gateway', ['renew', '--state-dir', b.stateDir, '--json']);
    assert.equal(renewedB.code, 0, `renew b after a: ${renewedB.stdout}${renewedB.stderr}`);

    // A replica that drains (SIGTERM: it cancels its forward first) takes no new streams: every stream opened
    // while it stops, and after, succeeds (through a).
    let stopped = false;
    const stopping = b.stop().then(() => (stopped = true));
    let during = 0;
    while (!stopped || during < 4) assertByteExact(await d.transfer(c, MiB / 4), `stream ${++during} while b stops`);
    await stopping;
    t.diagnostic(`${during} streams while b drained and stopped`);
    await b.start();
    await b.waitTunnels(1);

    // The gateway enrolled again without a replica: a third process replaces both.
    const whole = await d.addGateway(undefined, { id: GW });
    await whole.waitTunnels(1);
    for (const [g, name] of [
      [a, 'a'],
      [b, 'b'],
    ] as const) {
      await waitFor(async () => (await g.tunnelsUp()) === 0, {
        what: `replica ${name} to lose its tunnel (its certificates retired)`,
        timeoutMs: 20_000,
        detail: () => g.tail(),
      });
    }
    const again = await runProgram('gateway', ['renew', '--state-dir', b.stateDir, '--json']);
    assert.notEqual(again.code, 0);
    assert.match(`${again.stdout}${again.stderr}`, /E_CERT_SUPERSEDED/);
    const gws = (await d.ca.cli(['gateway', 'list', d.org])) as unknown as {
      gatewayId: string;
      replicas?: unknown[];
    }[];
    assert.deepEqual(gws.find((g) => g.gatewayId === GW)?.replicas, [], 'no replicas left');
    assertByteExact(await d.transfer(c, MiB), 'a transfer through the gateway enrolled anew');
  } catch (err) {
    process.stderr.write(`\n${d.tails(40)}\n`);
    throw err;
  }
});
