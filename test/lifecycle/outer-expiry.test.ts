/**
 * Issue 11 item 5, with real processes: outer certificates expire at the edge. A proxy's TLS listener accepts
 * a platform client certificate iff now <= notAfter + cert_skew (default 5 s; `--cert-skew 0s` is exact), and a
 * refusal carries no `{"ok":true}`. One 10 s grant (the CA's minimum) from the real CA, dialled from the test
 * process at two proxies, proxy-1 with the default skew and proxy-2 with `--cert-skew 0s`:
 *   (a) while valid, both answer `{"ok":true}`;
 *   (c) 1.5 s past notAfter, proxy-2 refuses with E_CERT_EXPIRED (proxy-1, still inside its 5 s, admits);
 *   (b) 6 s past notAfter, proxy-1 refuses with E_CERT_EXPIRED too.
 * Meanwhile (d) a live stream through `infisical-connect tcp --ttl 10` is cut by notAfter + skew (+ a generous
 * 10 s), byte-exact up to the cut, and the next stream gets a fresh grant and is byte-exact.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type Deployment, type ProxyHandle, startDeployment } from './deploy.js';
import { assertAdmitted, assertRefusedExpired, dialOuter, grantFromCa, sleepUntil } from './helpers5.js';
import { liveStream } from './probes.js';

const TTL_SEC = 10; // the CA's minimum grant lifetime
const DEFAULT_SKEW_MS = 5000;
const MARGIN_MS = 10_000;

type Diagnostic = (message: string) => void;

const expiredRefusals = async (p: ProxyHandle) =>
  (await p.metric('infisical_proxy_refusals_total', { listener: 'tls', code: 'E_CERT_EXPIRED' })) ?? 0;

/** (a), (c), (b) on one grant, dialled from the test process. */
async function edge(d: Deployment, lenient: ProxyHandle, exact: ProxyHandle, diag: Diagnostic): Promise<void> {
  const grant = await grantFromCa(d, { gatewayId: 'gw-1', ttlSeconds: TTL_SEC });
  const notAfter = grant.outerNotAfterMs;
  assert.ok(notAfter - Date.now() <= (TTL_SEC + 1) * 1000, `the outer cert lives at most ${TTL_SEC} s`);
  diag(`grant ${grant.grantId}: outer notAfter ${new Date(notAfter).toISOString()}`);

  // (a) Valid: both proxies admit it.
  assertAdmitted(await dialOuter(lenient.tlsPort, grant), `${lenient.name} while valid`);
  assertAdmitted(await dialOuter(exact.tlsPort, grant), `${exact.name} (skew 0) while valid`);

  // (c) 1.5 s past notAfter: exact expiry refuses.
  await sleepUntil(notAfter + 1500);
  const exactLate = await dialOuter(exact.tlsPort, grant);
  diag(`${exact.name} (skew 0) ${Date.now() - notAfter} ms past notAfter: ${shown(exactLate)}`);
  assertRefusedExpired(exactLate, `${exact.name} (skew 0) 1.5 s past notAfter`);
  // The control: the same cert, still inside the default skew, is admitted by proxy-1 (only judged while the
  // dial certainly ended before notAfter + skew: a slow machine skips it, it never fails on timing).
  const lenientLate = await dialOuter(lenient.tlsPort, grant);
  const controlAt = Date.now() - notAfter;
  if (controlAt < DEFAULT_SKEW_MS - 500) assertAdmitted(lenientLate, `${lenient.name} ${controlAt} ms past notAfter`);
  else diag(`control skipped: the dial to ${lenient.name} ended ${controlAt} ms past notAfter`);

  // (b) Past notAfter + the default skew: refused, not one success byte.
  await sleepUntil(notAfter + DEFAULT_SKEW_MS + 1000);
  const lenientExpired = await dialOuter(lenient.tlsPort, grant);
  diag(`${lenient.name} (skew 5 s) ${Date.now() - notAfter} ms past notAfter: ${shown(lenientExpired)}`);
  assertRefusedExpired(lenientExpired, `${lenient.name} 6 s past notAfter`);

  assert.equal(await expiredRefusals(exact), 1, `${exact.name} counted one E_CERT_EXPIRED refusal`);
  assert.equal(await expiredRefusals(lenient), 1, `${lenient.name} counted one E_CERT_EXPIRED refusal`);
}

/** (d) A live stream on a short grant through infisical-connect is cut in time; the next one gets a new grant. */
async function liveCut(d: Deployment, diag: Diagnostic): Promise<void> {
  const c = await d.connect({ args: ['--ttl', String(TTL_SEC)] });
  const grants = () => c.events().filter((e) => e['event'] === 'grant');
  const s = await liveStream(c.port, d.target);
  let cutAt = Number.NaN;
  void s.whenClosed.then(() => {
    cutAt = Date.now();
  });
  const first = await s.exchange(4096);
  assert.ok(first.ok, `the first exchange is byte-exact: ${first.error}`);
  // The stream's grant: the newest one connect got before it opened (with a TTL under connect's 30 s refresh
  // margin, each new stream asks for one).
  const opened = c.events().findIndex((e) => e['event'] === 'opened');
  assert.ok(opened >= 0, 'connect reports the stream opened');
  const streamGrant = c
    .events()
    .slice(0, opened)
    .filter((e) => e['event'] === 'grant')
    .at(-1);
  assert.ok(streamGrant, 'a grant event before the stream opened');
  const notAfter = Date.parse(String(streamGrant['expiresAt']));
  const deadline = notAfter + DEFAULT_SKEW_MS + MARGIN_MS;

  // Exchanges every 250 ms until the cut: each one that finished with the stream open is byte-exact; the one
  // the cut interrupts may come back short, never different.
  let exchanges = 1;
  while (!s.closed && Date.now() < deadline) {
    const r = await s.exchange(16 * 1024, 5000);
    if (!r.ok) {
      assert.ok(s.closed, `exchange ${exchanges + 1} failed with the stream open: ${r.error}`);
      assert.doesNotMatch(r.error ?? '', /different|other bytes/, 'the bytes before the cut are exact');
      break;
    }
    exchanges++;
    await new Promise((wake) => setTimeout(wake, 250));
  }
  await Promise.race([s.whenClosed, sleepUntil(deadline)]);
  if (!s.closed) {
    s.close();
    assert.fail(`the stream outlived its grant: open ${Date.now() - notAfter} ms past notAfter`);
  }
  const past = cutAt - notAfter;
  const cutBy = d.proxies.flatMap((p) =>
    p
      .logLines()
      .filter((l) => l['event'] === 'stream.closed' && Number(l['bytesUp']) > 64 * 1024)
      .map((l) => `${p.proxyId} ${l['end']}: ${l['reason']}`),
  );
  diag(
    `live stream (grant ${streamGrant['grantId']}) cut ${past} ms past notAfter after ${exchanges} exact exchanges (${cutBy.join('; ')})`,
  );
  assert.ok(past <= DEFAULT_SKEW_MS + MARGIN_MS, `cut ${past} ms past notAfter`);
  assert.ok(past >= -1000, `not cut before its certificate ended (${past} ms)`);

  // The next stream: a fresh grant, byte-exact.
  const before = grants().length;
  assertByteExact(await d.transfer(c, 256 * 1024), 'the next stream');
  const fresh = grants().slice(before);
  assert.equal(fresh.length, 1, `one new grant for the next stream: ${JSON.stringify(fresh)}`);
  assert.notEqual(fresh[0]!['grantId'], streamGrant['grantId'], 'a new grant id');
  assert.ok(Date.parse(String(fresh[0]!['expiresAt'])) > cutAt, 'the new grant ends after the cut');
}

function shown(r: Awaited<ReturnType<typeof dialOuter>>): string {
  return r.bytes.length ? JSON.stringify(r.bytes.toString()) : `no bytes, ${r.error ?? 'closed'}`;
}

test('outer certificates expire at notAfter + cert_skew at a real proxy; live streams are cut, then re-granted', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 1 });
  try {
    const [lenient, exact] = d.proxies as [ProxyHandle, ProxyHandle];
    exact.args.push('--cert-skew', '0s');
    await exact.restart();
    await d.gateways[0]!.waitTunnels(2);
    const diag: Diagnostic = (m) => t.diagnostic(m);
    // Both wait on a 10 s grant: run them side by side.
    const results = await Promise.allSettled([edge(d, lenient, exact, diag), liveCut(d, diag)]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
});
