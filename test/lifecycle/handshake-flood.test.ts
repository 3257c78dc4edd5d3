/**
 * Issue 13, memory under abuse: a real `infisical-proxy serve` process takes N unauthenticated TLS handshakes
 * (no client certificate) on its platform listener, many at once from one source, and afterwards holds nothing
 * for them: its /metrics show no platform connection, none in handshake and an empty per-source table, and
 * every handshake was refused with a code. The proxy's RSS over a 20,000-handshake flood is a `make bench` row
 * (BENCH=scale); this test checks the state that must be released, not time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unauthenticatedHandshakes } from './abuse.js';
import { startDeployment, waitFor } from './deploy.js';
import { metricValue } from './process.js';

const HANDSHAKES = 400;

test('unauthenticated TLS handshakes leave no per-connection state in the proxy', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 0, waitTunnels: false });
  t.after(() => d.close());
  const proxy = d.proxies[0]!;
  const tlsRefusals = async () => {
    const text = await proxy.metrics();
    let n = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('infisical_proxy_refusals_total{') && line.includes('listener="tls"')) {
        n += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return n;
  };
  const before = await tlsRefusals();

  const secured = await unauthenticatedHandshakes(proxy.tlsPort, HANDSHAKES, 48);
  assert.equal(secured, HANDSHAKES, 'every client completed its TLS handshake (then was refused)');

  const gauges = async () => {
    const text = await proxy.metrics();
    return {
      connections: metricValue(text, 'infisical_proxy_tls_connections'),
      unauthenticated: metricValue(text, 'infisical_proxy_tls_unauthenticated_connections'),
      sources: metricValue(text, 'infisical_proxy_tls_unauthenticated_sources'),
    };
  };
  await waitFor(
    async () => {
      const g = await gauges();
      return g.connections === 0 && g.unauthenticated === 0 && g.sources === 0 ? g : undefined;
    },
    {
      what: 'the proxy to hold no platform connection, none in handshake, no source',
      timeoutMs: 30_000,
      detail: () => d.tails(),
    },
  );
  assert.ok((await tlsRefusals()) - before >= HANDSHAKES, 'every handshake was refused with a code');
});
