import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { GatewayError } from '../../lib/errors/codes.js';
import { DaemonMetrics } from '../../lib/runtime/metrics.js';
import { isLoopbackHost, type Readiness, startOpsServer } from '../../lib/runtime/ops.js';

function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d) => {
      out += d;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(out));
    socket.write(text);
  });
}

test('livez, readyz (200/503 with a reason), metrics, 404, 405', async (t) => {
  const metrics = new DaemonMetrics('proxy', { processMetrics: false });
  const refusals = metrics.counter('infisical_proxy_refusals_total', 'Refused connections by code.', ['code']);
  let readiness: Readiness = { ready: false, reason: 'no tunnel up', detail: { tunnelsUp: 0 } };
  const ops = await startOpsServer({ listen: '127.0.0.1:0', metrics, readiness: () => readiness });
  t.after(() => ops.close());

  const live = await fetch(`${ops.url}/livez`);
  assert.equal(live.status, 200);
  assert.deepEqual(await live.json(), { status: 'live' });

  const notReady = await fetch(`${ops.url}/readyz`);
  assert.equal(notReady.status, 503);
  assert.deepEqual(await notReady.json(), { status: 'not ready', reason: 'no tunnel up', detail: { tunnelsUp: 0 } });
  readiness = { ready: true };
  const ready = await fetch(`${ops.url}/readyz?verbose`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready' });

  refusals.inc({ code: 'E_CERT_EXPIRED' });
  const scrape = await fetch(`${ops.url}/metrics`);
  assert.equal(scrape.status, 200);
  assert.match(scrape.headers.get('content-type') ?? '', /^text\/plain/);
  assert.match(await scrape.text(), /^infisical_proxy_refusals_total\{code="E_CERT_EXPIRED"\} 1$/m);

  const missing = await fetch(`${ops.url}/admin`);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  const post = await fetch(`${ops.url}/livez`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  await post.body?.cancel();
});

test('a throwing or hanging readiness check answers 503 with the reason', async (t) => {
  const metrics = new DaemonMetrics('gateway', { processMetrics: false });
  let mode: 'throw' | 'hang' = 'throw';
  const ops = await startOpsServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics,
    readinessTimeoutMs: 50,
    readiness: () => {
      if (mode === 'throw') throw new Error('store closed');
      return new Promise<Readiness>(() => {});
    },
  });
  t.after(() => ops.close());
  const thrown = await fetch(`${ops.url}/readyz`);
  assert.equal(thrown.status, 503);
  assert.deepEqual(await thrown.json(), { status: 'not ready', reason: 'readiness check failed: store closed' });
  mode = 'hang';
  const hung = await fetch(`${ops.url}/readyz`);
  assert.equal(hung.status, 503);
  assert.deepEqual(await hung.json(), { status: 'not ready', reason: 'readiness check timed out' });
});

test('non-loopback addresses are refused unless explicitly allowed', async () => {
  const metrics = new DaemonMetrics('ca', { processMetrics: false });
  for (const listen of ['0.0.0.0:0', '10.1.2.3:9464', '[::]:0', 'ops.example:9464']) {
    await assert.rejects(
      startOpsServer({ listen, metrics, readiness: () => ({ ready: true }) }),
      (err: unknown) =>
        err instanceof GatewayError && err.code === 'E_CONFIG_INVALID' && /not loopback/.test(err.message),
      listen,
    );
  }
  await assert.rejects(
    startOpsServer({ listen: 'nonsense', metrics, readiness: () => ({ ready: true }) }),
    /not host:port/,
  );
  const open = await startOpsServer({
    listen: '0.0.0.0:0',
    allowNonLoopback: true,
    metrics,
    readiness: () => ({ ready: true }),
  });
  assert.equal(open.address.host, '0.0.0.0');
  await open.close();
  const local = await startOpsServer({ listen: 'localhost:0', metrics, readiness: () => ({ ready: true }) });
  assert.equal(local.address.host, '127.0.0.1');
  await local.close();
  assert.ok(isLoopbackHost('127.8.9.10') && isLoopbackHost('::1') && isLoopbackHost('::ffff:127.0.0.1'));
  assert.ok(!isLoopbackHost('::ffff:10.0.0.1') && !isLoopbackHost('128.0.0.1') && !isLoopbackHost('::'));
});

test('oversized headers get 431; a client that never finishes its headers is cut off', {
  timeout: 30_000,
}, async (t) => {
  const metrics = new DaemonMetrics('proxy', { processMetrics: false });
  const ops = await startOpsServer({
    listen: '127.0.0.1:0',
    metrics,
    readiness: () => ({ ready: true }),
    maxHeaderBytes: 1024,
    headersTimeoutMs: 200,
    requestTimeoutMs: 400,
  });
  t.after(() => ops.close());
  const big = await rawRequest(
    ops.address.port,
    `GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`,
  );
  assert.match(big, /^HTTP\/1\.1 431 /);
  // Headers never completed: the server closes the socket (the test waits for the close, whatever it takes).
  const slow = await rawRequest(ops.address.port, 'GET /livez HTTP/1.1\r\nHost: x\r\n');
  assert.doesNotMatch(slow, /200 OK/);
});

test('metrics live in a per-daemon registry, never the global one; names are checked', async () => {
  const a = new DaemonMetrics('proxy');
  const b = new DaemonMetrics('proxy');
  a.counter('infisical_proxy_streams_total', 'Streams carried.');
  b.counter('infisical_proxy_streams_total', 'Streams carried.'); // no clash: separate registries
  a.gauge('infisical_proxy_tunnels', 'Tunnels up.', [], (g) => g.set(3));
  assert.equal(globalRegistry.getSingleMetric('infisical_proxy_streams_total'), undefined);
  const text = await a.text();
  assert.match(text, /^infisical_proxy_tunnels 3$/m);
  assert.match(text, /^process_resident_memory_bytes \d+/m);
  assert.throws(() => a.counter('infisical_proxy_refusals', 'x'), /_total/);
  assert.throws(() => a.counter('infisical_gateway_x_total', 'x'), /starting with infisical_proxy_/);
  assert.throws(() => a.gauge('infisical_proxy_Bad', 'x'), /snake_case/);
  assert.throws(() => a.histogram('infisical_proxy_latency_seconds', 'x', ['Bad-Label']), /bad label/);
  const h = a.histogram('infisical_proxy_dial_seconds', 'Dial time.', ['mode'], [0.01, 0.1, 1]);
  h.observe({ mode: 'tcp' }, 0.05);
  assert.match(await a.text(), /^infisical_proxy_dial_seconds_bucket\{le="0.1",mode="tcp"\} 1$/m);
});
