/**
 * The gateway's bound on held inner sessions (`max_held_sessions`, lib/gateway/inner.ts) through real processes:
 * CA, proxy and a gateway started through its CLI from a config file that says `max_held_sessions = 1`, and three
 * `infisical-connect tcp` processes whose relays opened ahead hold their inner sessions (`tcp+go`) when they can.
 * Rounds of streams through all three at once, every one checksummed (SHA-256 both ways):
 *   - every stream goes through byte-exact, none is refused (no error from any connect, no refusal at the gateway);
 *   - the held gauge (`infisical_gateway_sessions_held`, read from the ops port all along) never exceeds 1, and
 *     sessions were held (the gauge at 1, streams on held sessions) and declined (limit refusals counted);
 *   - one target connection per stream: a hold the gateway declined dialled nothing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { limitRefusals } from './abuse.js';
import { assertByteExact, type ConnectHandle, type GatewayHandle, startDeployment } from './deploy.js';

const KiB = 1024;
const BOUND = 1;
const CONNECTS = 3;
const ROUNDS = 5;
const HELD = 'infisical_gateway_sessions_held';

const opened = (c: ConnectHandle) => c.events().filter((e) => e['event'] === 'opened');

async function refusals(gw: GatewayHandle): Promise<number> {
  let n = 0;
  for (const line of (await gw.metrics()).split('\n')) {
    if (line.startsWith('infisical_gateway_refusals_total{')) n += Number(line.split(' ').at(-1));
  }
  return n;
}

test('max_held_sessions = 1: three infisical-connect tcp, every stream byte-exact, the held gauge never past 1, none refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'held-bound-'));
  const conf = join(dir, 'gateway.conf');
  writeFileSync(conf, `max_held_sessions = ${BOUND}\n`);
  const d = await startDeployment({ proxies: 1, gateways: 1, gatewayArgs: ['--config', conf] });
  let sampling = true;
  t.after(async () => {
    sampling = false;
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const gw = d.gateways[0]!;
  try {
    const live = await gw.metric('infisical_gateway_live_setting', { key: 'max_held_sessions', value: String(BOUND) });
    assert.equal(live, 1, 'effective config: max_held_sessions from the file');
    // Held up to 8 s: each connect's next relay waits, holding its inner session when the gateway lets it.
    const connects = await Promise.all(
      Array.from({ length: CONNECTS }, () => d.connect({ args: ['--warm-relay', '8'] })),
    );

    // The held gauge, from the ops port, all along.
    const samples: number[] = [];
    const sampler = (async () => {
      while (sampling) {
        samples.push((await gw.metric(HELD)) ?? 0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const targetBefore = d.target.connections.length;
    let streams = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const results = await Promise.all(connects.map((c) => d.transfer(c, 256 * KiB, { timeoutMs: 60_000 })));
      results.forEach((r, i) => {
        assertByteExact(r, `round ${round}, connect ${i}`);
      });
      streams += results.length;
      // Let the relays opened ahead settle (held, or declined) before the next round.
      await new Promise((r) => setTimeout(r, 300));
    }
    sampling = false;
    await sampler;

    const max = Math.max(...samples);
    assert.ok(max <= BOUND, `the held gauge never past ${BOUND}: max ${max} in ${samples.length} samples`);
    assert.ok(max === BOUND, `sessions were held (gauge at ${BOUND} in ${samples.length} samples)`);
    const held = connects.flatMap((c) => opened(c).filter((e) => e['held'] === true));
    assert.ok(held.length > 0, 'streams ran on held sessions');
    assert.ok(
      (await limitRefusals(gw, { limit: 'max_held_sessions' })) > 0,
      'the bound declined holds (limit refusals counted)',
    );
    const errors = connects.flatMap((c) => c.events().filter((e) => e['event'] === 'error'));
    assert.deepEqual(errors, [], 'no stream refused or failed');
    assert.equal(await refusals(gw), 0, 'the gateway refused nothing');
    assert.equal(
      d.target.connections.length - targetBefore,
      streams,
      'one target connection per stream: a declined hold dialled nothing',
    );
    t.diagnostic(
      `${streams} streams, ${held.length} on held sessions, ` +
        `${await limitRefusals(gw, { limit: 'max_held_sessions' })} sessions not held, held gauge max ${max}`,
    );
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
