/**
 * Half-close through the real programs (CA, two proxies, a gateway, `infisical-connect tcp`, each a process
 * started through its CLI): a client sends a request and shuts down its write side (`nc -N`, a protocol that
 * sends a request then its FIN); the private target reads until EOF, only then writes a large reply, and
 * closes. Every reply must arrive whole (SHA-256), the target must have read the whole request, and the
 * gateway's audit record must count both directions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withDeployment } from './deploy.js';
import { waitFor } from './process.js';
import { halfCloseExchange, startReplyTarget } from './transfer.js';

const KiB = 1024;
const MiB = 1024 * KiB;

test('a client that shuts down its write side gets the whole reply through every hop', async (t) => {
  const target = await startReplyTarget(16 * MiB);
  t.after(() => target.close());
  await withDeployment(
    { proxies: 2, gateways: 1, allowPorts: [target.port], policyTargets: [target.address] },
    async (d) => {
      const c = await d.connect({ target: target.address });
      const gw = d.gateways[0]!;
      // One at a time, then three at once reading slowly (every hop still holds reply bytes at the close).
      const results = [await halfCloseExchange({ port: c.port, requestBytes: 512 * KiB })];
      results.push(
        ...(await Promise.all(
          [1, 2, 3].map(() => halfCloseExchange({ port: c.port, requestBytes: 64 * KiB, slowReader: true })),
        )),
      );
      for (const [i, r] of results.entries()) {
        assert.equal(r.error, undefined, `exchange ${i}: ${r.error}`);
        assert.equal(r.replyBytes, target.reply.length, `exchange ${i}: every reply byte came back`);
        assert.equal(r.replySha256, target.replySha256, `exchange ${i}: the reply is unaltered (sha256)`);
        assert.ok(r.endedCleanly, `exchange ${i}: ended with a FIN after the reply`);
        const x = target.exchanges.find((e) => e.requestSha256 === r.requestSha256);
        assert.ok(x, `exchange ${i}: the target read the whole request (sha256) before the EOF`);
      }

      // The audit trail: one gateway.stream record per exchange, each direction counted.
      const records = await waitFor(
        () => {
          const rs = gw.logLines().filter((l) => l['event'] === 'gateway.stream');
          return rs.length >= results.length && rs;
        },
        { what: 'an audit record for every exchange', detail: () => gw.tail() },
      );
      const counts = records.map((r) => [r['bytesIn'], r['bytesOut'], r['outcome']]);
      assert.deepEqual(counts, [
        [512 * KiB, 16 * MiB, 'ok'],
        [64 * KiB, 16 * MiB, 'ok'],
        [64 * KiB, 16 * MiB, 'ok'],
        [64 * KiB, 16 * MiB, 'ok'],
      ]);
    },
  );
});
