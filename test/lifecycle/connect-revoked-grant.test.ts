/**
 * Issue 11 item 7: infisical-connect drops a revoked grant. Under one running connect, `revoke grant` of the
 * grant it holds: the next streams still get through, byte-exact, on a NEW grant (one grant-dropped event names
 * the old one and the gateway's E_CERT_REVOKED). With the policy rule deleted and the new grant revoked, the
 * next stream fails and connect says E_POLICY_DENIED at hop ca.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type ConnectHandle, startDeployment, type TransferResult, waitFor } from './deploy.js';

const FEED = ['--revocation-poll', '1s'];

function grantIds(c: ConnectHandle): string[] {
  return c
    .events()
    .filter((e) => e['event'] === 'grant')
    .map((e) => String(e['grantId']));
}

test('a revoked grant is replaced under a running connect; with the policy gone, E_POLICY_DENIED at hop ca', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 1, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  try {
    const c = await d.connect();
    assertByteExact(await d.transfer(c, 256 * 1024), 'on the first grant');
    const [first] = grantIds(c);
    assert.ok(first, 'a grant event names the first grant');

    await d.revoke('grant', first);
    const revokedAt = Date.now();
    // Streams go on until one has gone through, byte-exact, on a new grant. A stream that was already running on
    // the revoked grant when the revocation reached the gateway is cut (that is the revocation working), and the
    // client sees it; every other stream is byte-exact. (waitFor takes a throw for "not yet", so results are
    // collected and checked after.)
    const results: TransferResult[] = [];
    await waitFor(
      async () => {
        const r = await d.transfer(c, 128 * 1024, { timeoutMs: 10_000 });
        results.push(r);
        return r.ok && grantIds(c).length > 1;
      },
      { timeoutMs: 15_000, intervalMs: 300, what: 'a stream on a new grant', detail: () => c.tail(20) },
    );
    const cut = results.filter((r) => !r.ok);
    assert.ok(cut.length <= 1, `at most the one stream running when the revocation landed is cut: ${cut.length}`);
    for (const [i, r] of results.entries()) {
      if (r.ok) assertByteExact(r, `stream ${i + 1} after the revocation`);
      else {
        // Cut short, never corrupted: fewer bytes came back than were sent.
        assert.ok(r.echoedBytes < r.bytes, `stream ${i + 1} failed without being cut short: ${r.error ?? ''}`);
      }
    }
    const transfers = results.length;
    t.diagnostic(
      `a new grant ${Date.now() - revokedAt} ms after the revocation, ${transfers} streams, ${cut.length} cut mid-way`,
    );
    const ids = grantIds(c);
    assert.equal(ids.length, 2, `exactly one new grant: ${ids.join(', ')}`);
    const second = ids[1]!;
    assert.notEqual(second, first, 'the new grant has a new id');
    const dropped = c.events().filter((e) => e['event'] === 'grant-dropped');
    assert.equal(dropped.length, 1, `one grant-dropped event: ${JSON.stringify(dropped)}`);
    assert.equal(dropped[0]!['grantId'], first);
    assert.equal(dropped[0]!['code'], 'E_CERT_REVOKED');
    assert.equal(dropped[0]!['hop'], 'gateway');
    assert.equal(c.events().filter((e) => e['event'] === 'error').length, 0, 'no error so far');
    assertByteExact(await d.transfer(c, 1024 * 1024), '1 MiB on the new grant');
    assert.equal(grantIds(c).length, 2, 'the new grant is reused');

    // The policy goes, then the new grant: no third grant, and connect says why.
    const rules = (await d.ca.cli(['policy', 'list', d.org])) as unknown as { id: string; subject: string }[];
    const rule = rules.find((r) => r.subject === 'identity:app');
    assert.ok(rule, `the rule for identity app: ${JSON.stringify(rules)}`);
    await d.ca.cli(['policy', 'delete', d.org, rule.id]);
    await d.revoke('grant', second);
    // Streams until connect reports the CA's refusal: before the gateway reads the revocation the grant still
    // holds; a stream open when it does is cut (E_CERT_REVOKED mid-stream); the next is refused, the grant dropped,
    // and the CA, asked for a new one, refuses.
    let last: TransferResult | undefined;
    const policyDenied = () => c.events().find((e) => e['event'] === 'error' && e['code'] === 'E_POLICY_DENIED');
    const error = await waitFor(
      async () => {
        last = await d.transfer(c, 64 * 1024, { timeoutMs: 10_000 });
        return policyDenied();
      },
      { timeoutMs: 15_000, intervalMs: 300, what: 'an error event with E_POLICY_DENIED', detail: () => c.tail(20) },
    );
    assert.equal(last?.ok, false, 'the stream that met the refusal failed');
    t.diagnostic(`the stream failed: ${last?.error}; connect said ${error['code']} at hop ${error['hop']}`);
    const after = await d.transfer(c, 64 * 1024, { timeoutMs: 10_000 });
    assert.equal(after.ok, false, 'and the next one fails too');
    assert.equal(error['hop'], 'ca', `at hop ca: ${JSON.stringify(error)}`);
    assert.match(String(error['message']), new RegExp(second), 'naming the revoked grant');
    assert.equal(grantIds(c).length, 2, 'no third grant');
    assert.ok(c.running, 'connect keeps running');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
});
