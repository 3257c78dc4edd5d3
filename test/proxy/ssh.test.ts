/**
 * The SSH listener over real sockets: gateways with World certs, each refusal of SPEC §6 that applies to the
 * tunnel side, and the refused channel kinds. Every refusal is checked by its stable code in the proxy's
 * refusal counters, so removing the check turns the test red (the login would succeed or count another code).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ProxyServer } from '../../lib/proxy/proxy.js';
import { World } from '../helpers/world.js';
import { closed, connectGateway, eventually, startProxy } from './harness.js';

const world = new World();

function refusals(proxy: ProxyServer, code: string): number {
  return proxy.refusals().get(`ssh:${code}`) ?? 0;
}

async function refusedLogin(proxy: ProxyServer, run: () => Promise<unknown>, code: string): Promise<void> {
  const before = refusals(proxy, code);
  await assert.rejects(run, (err: Error & { code?: string }) => err.code === 'E_SSH_AUTH');
  assert.ok(refusals(proxy, code) > before, `expected a refusal with ${code}, got ${[...proxy.refusals()]}`);
  assert.equal(proxy.table.size, 0);
}

describe('SSH listener: instance proxy', () => {
  let proxy: ProxyServer;
  before(async () => {
    proxy = await startProxy(world, { scope: 'instance' });
  });
  after(() => proxy.stop());

  it('accepts a gateway cert of the instance SSH client CA and registers its forward', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    assert.ok(gw.port > 0);
    assert.equal(proxy.table.size, 1);
    const [t] = proxy.table.all();
    assert.equal(t?.gateway.orgId, 'org-a');
    assert.equal(t?.gateway.gatewayId, 'gw-1');
    gw.close();
    await eventually(() => proxy.table.size === 0);
  });

  it('refuses a cert of another CA', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'instance',
          ssh: world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', ca: world.stray.sshClient }),
        }),
      'E_CERT_UNTRUSTED',
    ));

  it('refuses a host certificate used as a user certificate', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'instance',
          ssh: world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', type: 'host' }),
        }),
      'E_CERT_WRONG_TYPE',
    ));

  it('refuses an expired cert (by the injected clock)', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'instance',
          ssh: world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', expired: true }),
        }),
      'E_CERT_EXPIRED',
    ));

  it('refuses a user name other than the principal', () =>
    refusedLogin(
      proxy,
      () => connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', username: 'gw-2' }),
      'E_CERT_WRONG_PRINCIPAL',
    ));

  it('refuses a key id that names another gateway than the principal', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'instance',
          ssh: world.gatewaySsh({
            orgId: 'org-a',
            gatewayId: 'gw-1',
            scope: 'instance',
            keyId: world.gatewayUri('org-a', 'gw-2'),
          }),
        }),
      'E_CERT_IDENTITY',
    ));

  it('refuses a cert without permit-port-forwarding', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'instance',
          ssh: world.gatewaySsh({
            orgId: 'org-a',
            gatewayId: 'gw-1',
            scope: 'instance',
            extensions: { 'permit-pty': '' },
          }),
        }),
      'E_CERT_USAGE',
    ));

  it('refuses a revoked gateway at login, and closes its live tunnel on revocation', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-9', scope: 'instance' });
    assert.equal(proxy.table.size, 1);
    const hit = proxy.revoke({ kind: 'gateway', orgId: 'org-a', subject: 'gw-9' });
    assert.deepEqual(hit, { tunnels: 1, streams: 0 });
    await closed(gw.client as unknown as import('node:stream').Duplex).catch(() => {});
    await eventually(() => proxy.table.size === 0);
    await refusedLogin(
      proxy,
      () => connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-9', scope: 'instance' }),
      'E_CERT_REVOKED',
    );
    // The same name in another org is a different gateway: not revoked
    const other = await connectGateway(world, proxy, { orgId: 'org-b', gatewayId: 'gw-9', scope: 'instance' });
    other.close();
    await eventually(() => proxy.table.size === 0);
  });

  it("refuses tcpip-forward for another gateway's name", async () => {
    const before = refusals(proxy, 'E_CERT_WRONG_PRINCIPAL');
    await assert.rejects(
      connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', bindAddr: 'gw-2' }),
    );
    assert.equal(refusals(proxy, 'E_CERT_WRONG_PRINCIPAL'), before + 1);
    assert.equal(proxy.table.size, 0);
  });

  it('refuses sessions (shell, exec), direct-tcpip and other global requests', async () => {
    const gw = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      bindAddr: null,
    });
    const before = refusals(proxy, 'E_ROUTE_FORBIDDEN');
    await assert.rejects(
      new Promise((resolve, reject) => gw.client.exec('id', (e, s) => (e ? reject(e) : resolve(s)))),
    );
    await assert.rejects(new Promise((resolve, reject) => gw.client.shell((e, s) => (e ? reject(e) : resolve(s)))));
    await assert.rejects(
      new Promise((resolve, reject) =>
        gw.client.forwardOut('127.0.0.1', 1, '127.0.0.1', 22, (e, s) => (e ? reject(e) : resolve(s))),
      ),
    );
    await assert.rejects(
      new Promise((resolve, reject) =>
        gw.client.openssh_forwardInStreamLocal('/tmp/x.sock', (e) => (e ? reject(e) : resolve(undefined))),
      ),
    );
    assert.equal(refusals(proxy, 'E_ROUTE_FORBIDDEN'), before + 4);
    assert.equal(proxy.table.size, 0);
    gw.close();
  });

  it('closes a tunnel when its certificate expires', async () => {
    // A cert whose validBefore is ~2 s away: the tunnel must go at that second, not at the next login.
    const ssh = world.gatewaySsh({
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      lifetimeSec: 3600,
      at: new Date(world.nowMs() - 3600_000 + 2000),
    });
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', ssh });
    assert.equal(proxy.table.size, 1);
    await eventually(() => proxy.table.size === 0, 15_000);
    gw.close();
  });
});

describe('SSH listener: org proxy trusts its org CA alone', () => {
  let proxy: ProxyServer;
  before(async () => {
    proxy = await startProxy(world, { scope: 'org', orgId: 'org-a' });
  });
  after(() => proxy.stop());

  it('accepts a gateway of its org with an org cert', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'org' });
    assert.equal(proxy.table.size, 1);
    gw.close();
    await eventually(() => proxy.table.size === 0);
  });

  it('refuses an instance cert', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'org',
          ssh: world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
        }),
      'E_CERT_UNTRUSTED',
    ));

  it("refuses another org's cert (another root)", () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'org',
          ssh: world.gatewaySsh({ orgId: 'org-b', gatewayId: 'gw-1', scope: 'org' }),
        }),
      'E_CERT_UNTRUSTED',
    ));

  it('refuses a cert of its own CA whose key id names another org', () =>
    refusedLogin(
      proxy,
      () =>
        connectGateway(world, proxy, {
          orgId: 'org-a',
          gatewayId: 'gw-1',
          scope: 'org',
          ssh: world.gatewaySsh({
            orgId: 'org-a',
            gatewayId: 'gw-1',
            scope: 'org',
            keyId: world.gatewayUri('org-b', 'gw-1'),
          }),
        }),
      'E_ORG_MISMATCH',
    ));
});
