/**
 * End to end on 127.0.0.1: platform (lib/client) → real proxy (lib/proxy) → SSH tunnel → real Gateway
 * (lib/gateway) → PostgreSQL 15 queried by psql through a local forwarder, and an HTTP server in http mode.
 * Faults: a proxy killed and restarted (the gateway is back within seconds), and with two proxies one dies
 * while streams keep flowing through the other.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { dialViaProxy } from '../../lib/client/dial.js';
import type { Gateway } from '../../lib/gateway/gateway.js';
import type { StreamRecord } from '../../lib/gateway/streams.js';
import { type Postgres, psql, startPostgres } from '../helpers/postgres.js';
import { World } from '../helpers/world.js';
import {
  gatewayState,
  killProxy,
  localForwarder,
  platformGrant,
  type RunningProxy,
  settings,
  startGateway,
  startRealProxy,
} from './deploy.js';
import { echoServer, httpServer, waitFor } from './harness.js';

const world = new World();
let pg: Postgres;
let web: Awaited<ReturnType<typeof httpServer>>;
let echo: Awaited<ReturnType<typeof echoServer>>;
let p1: RunningProxy;
let p2: RunningProxy;
let gateway: Gateway;
let records: StreamRecord[];
const cleanups: (() => Promise<unknown> | unknown)[] = [];

before(async () => {
  [pg, web, echo] = await Promise.all([startPostgres(), httpServer(), echoServer()]);
  p1 = await startRealProxy(world, 'p1');
  p2 = await startRealProxy(world, 'p2');
  ({ gateway, records } = startGateway(world, gatewayState(world, [p1, p2]), settings([pg.port, web.port, echo.port])));
  await gateway.pool.whenUp(10_000, 2);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await gateway?.close();
  await Promise.all([p1?.server.stop(), p2?.server.stop()]);
  await Promise.all([pg?.stop(), web?.close(), echo?.close()]);
});

describe('gateway end to end', () => {
  it('psql reaches PostgreSQL through proxy, tunnel and gateway', async () => {
    const grant = await platformGrant(world, [p1, p2], { host: '127.0.0.1', port: pg.port }, 'tcp');
    const fwd = await localForwarder(grant);
    cleanups.push(() => fwd.close());
    assert.equal(await psql(fwd.port, 'select 41 + 1'), '42');
    const rows = await psql(
      fwd.port,
      'create table t (n int); insert into t select generate_series(1, 5000); select count(*), sum(n) from t',
    );
    assert.equal(rows.split('\n').at(-1), '5000|12502500');
    await waitFor(() => records.filter((r) => r.grantId === grant.grantId).length >= 2, 5000, 'audit records');
    const rec = records.find((r) => r.grantId === grant.grantId)!;
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.mode, 'tcp');
    assert.equal(rec.target, `127.0.0.1:${pg.port}`);
    assert.ok(rec.bytesIn > 0 && rec.bytesOut > 0);
  });

  it('http mode: a request reaches the HTTP server behind the gateway', async () => {
    const grant = await platformGrant(world, [p1], { host: '127.0.0.1', port: web.port }, 'http');
    const { socket } = await dialViaProxy(grant, grant.proxies[0]!, 'http');
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ createConnection: () => socket, path: '/via/gateway', method: 'GET' }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(JSON.parse(body).url, '/via/gateway');
    socket.destroy();
  });

  it('with two proxies, one dying leaves streams flowing through the other', async () => {
    const grant = await platformGrant(world, [p1, p2], { host: '127.0.0.1', port: echo.port }, 'tcp');
    const via2 = grant.proxies.find((p) => p.proxyId === 'p2')!;
    const { socket } = await dialViaProxy(grant, via2, 'tcp');
    let got = 0;
    socket.on('data', (d: Buffer) => {
      got += d.length;
    });
    socket.write('a'.repeat(1000));
    await waitFor(() => got === 1000, 5000, 'echo before');
    await killProxy(p1);
    await waitFor(() => gateway.pool.status().up === 1, 10_000, 'p1 tunnel down');
    socket.write('b'.repeat(1000));
    await waitFor(() => got === 2000, 5000, 'echo after p1 died');
    socket.destroy();
    // a new client session fails over to p2
    const pgGrant = await platformGrant(world, [p1, p2], { host: '127.0.0.1', port: pg.port }, 'tcp');
    const fwd = await localForwarder(pgGrant);
    cleanups.push(() => fwd.close());
    assert.equal(await psql(fwd.port, 'select 7'), '7');
    // bring p1 back on the same ports for the next test
    p1 = await startRealProxy(world, 'p1', { ssh: p1.sshPort, tls: p1.tlsPort });
    await gateway.pool.whenUp(10_000, 2);
  });

  it('a killed and restarted proxy has the gateway back within seconds', async () => {
    await killProxy(p1);
    await killProxy(p2);
    await waitFor(() => gateway.pool.status().up === 0, 10_000, 'tunnels down');
    const restarted = Date.now();
    p1 = await startRealProxy(world, 'p1', { ssh: p1.sshPort, tls: p1.tlsPort });
    await gateway.pool.whenUp(15_000, 1);
    const tookMs = Date.now() - restarted;
    console.log(`# gateway back ${tookMs} ms after the proxy restarted`);
    const grant = await platformGrant(world, [p1], { host: '127.0.0.1', port: pg.port }, 'tcp');
    const fwd = await localForwarder(grant);
    cleanups.push(() => fwd.close());
    assert.equal(await psql(fwd.port, "select 'back'"), 'back');
    p2 = await startRealProxy(world, 'p2', { ssh: p2.sshPort, tls: p2.tlsPort });
  });
});
