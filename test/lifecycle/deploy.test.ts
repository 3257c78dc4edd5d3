/**
 * The baseline of the "trust over time" suite: the whole deployment, every component a real process started
 * through its own CLI (CA, two proxies, two gateways each tunnelled to both proxies, infisical-connect), comes
 * up; both gateways say ready with two tunnels; 4 MiB through each gateway arrives and comes back byte-exact;
 * and close() leaves no process behind.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { assertByteExact, startDeployment } from './deploy.js';
import { pidAlive } from './process.js';

const MiB = 1024 * 1024;

/** pids of processes whose command line names this folder (every daemon's does: its state dir is in it). */
function processesUnder(dir: string): string {
  try {
    return execFileSync('pgrep', ['-af', dir], { encoding: 'utf8' }).trim();
  } catch {
    return ''; // pgrep exits 1 when nothing matches
  }
}

test('the whole deployment comes up from the CLIs and carries byte-exact data through each gateway', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2 });
  t.after(() => d.close());
  try {
    assert.equal(d.proxies.length, 2);
    assert.equal(d.gateways.length, 2);
    assert.equal((await d.ca.readyz()).status, 200);
    for (const p of d.proxies) {
      const r = await p.readyz();
      assert.equal(r.status, 200, `${p.name}: ${r.text}`);
    }
    for (const g of d.gateways) {
      const r = await g.readyz();
      assert.equal(r.status, 200, `${g.name}: ${r.text}`);
      const detail = r.json?.['detail'] as { tunnelsUp?: number; tunnelsTotal?: number } | undefined;
      assert.equal(detail?.tunnelsUp, 2, `${g.name}: ${r.text}`);
      assert.equal(detail?.tunnelsTotal, 2, `${g.name}: ${r.text}`);
    }
    // Each proxy holds one tunnel from each gateway.
    for (const p of d.proxies) {
      const detail = (await p.readyz()).json?.['detail'] as { tunnels?: number; gateways?: number } | undefined;
      assert.equal(detail?.gateways, 2, `${p.name}: ${JSON.stringify(detail)}`);
      assert.equal(detail?.tunnels, 2, `${p.name}: ${JSON.stringify(detail)}`);
    }
    assert.match(await d.gateways[0]!.metrics(), /^# (HELP|TYPE) /m);

    for (const g of d.gateways) {
      const c = await d.connect({ gateway: g });
      assert.ok(c.port > 0, `${c.name} listens`);
      const r = await d.transfer(c, 4 * MiB);
      assertByteExact(r, `4 MiB through ${g.name}`);
      assert.equal(r.targetBytes, 4 * MiB);
      assert.equal(r.echoedBytes, 4 * MiB);
    }
    // Two transfers, two target connections, each from a different gateway's stream.
    assert.equal(d.target.connections.length, 2);

    const pids = d.daemons().flatMap((x) => x.pids);
    // CA serve; enroll + serve for each proxy and gateway; two connects (the CA's admin CLI runs are not daemons).
    assert.equal(pids.length, 1 + 2 * 2 + 2 * 2 + 2, 'every daemon and enroll was a process of its own');
    assert.notEqual(processesUnder(d.dir), '', 'the daemons run while the deployment is up');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
  assert.deepEqual(d.alivePids(), [], 'no process of the deployment is left');
  assert.equal(processesUnder(d.dir), '', 'pgrep finds nothing under the deployment folder');
  for (const x of d.daemons()) assert.ok(!x.running && x.pids.every((p) => !pidAlive(p)), `${x.name} is gone`);
});
